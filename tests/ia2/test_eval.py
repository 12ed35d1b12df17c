"""Batched + prefix-cached scoring equals one-by-one scoring; run discovery, filters and bad input."""

import json

import pytest
import torch

from actlab.core.errors import ActlabError
from actlab.core.models import next_token_logits
from actlab.ia2.evaluate import common_prefix_len, shared_prefix_next_token_logits

DEMOS = "the cat is red\nlabel:1\n\nthe dog is blue\nlabel:0\n\nthe fox is good\nlabel:1\n\n"
QUERIES = [
    "one two three",
    "apple",
    "the bird is bad and the tree is green",
    "red",
    "alice has two dogs",
    "what is this",
    "bob",
    "carol and dave have more books than eve",
]


def _one_by_one(model, tok, prompts):
    return torch.cat([next_token_logits(model, tok, [p], batch_size=1) for p in prompts])


def _same_argmax(got, ref, margin=1e-3):
    """The predicted tokens agree wherever the reference's top-2 gap is above float noise (ties may flip with the
    CPU's kernels)."""
    top2 = ref.topk(2, dim=-1).values
    clear = (top2[:, 0] - top2[:, 1]) > margin
    assert clear.any()
    assert torch.equal(got.argmax(-1)[clear], ref.argmax(-1)[clear])


@pytest.mark.parametrize("arch", ["llama", "qwen3", "gpt2"])
def test_prefix_cached_batched_equals_one_by_one(arch, micro_tok, request):
    model = request.getfixturevalue(f"micro_{arch}")
    prompts = [f"{DEMOS}{q}\nlabel:" for q in QUERIES]
    ref = _one_by_one(model, micro_tok, prompts)
    got = shared_prefix_next_token_logits(model, micro_tok, prompts, batch_size=3)
    assert got.shape == ref.shape
    _same_argmax(got, ref)
    torch.testing.assert_close(got, ref, atol=2e-4, rtol=1e-4)
    assert common_prefix_len([micro_tok(p)["input_ids"] for p in prompts]) > 20  # the cache path was taken


def test_prefix_cache_under_lora_equals_one_by_one(micro_llama, micro_tok):
    import copy

    from peft import LoraConfig, get_peft_model

    model = get_peft_model(
        copy.deepcopy(micro_llama),
        LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "o_proj"], init_lora_weights=False),
    ).eval()
    prompts = [f"{DEMOS}{q}\nlabel:" for q in QUERIES[:5]]
    ref = _one_by_one(model, micro_tok, prompts)
    got = shared_prefix_next_token_logits(model, micro_tok, prompts, batch_size=4)
    _same_argmax(got, ref)
    torch.testing.assert_close(got, ref, atol=2e-4, rtol=1e-4)


def test_no_shared_prefix_falls_back(micro_llama, micro_tok):
    prompts = ["red", "blue cat", "one two"]
    got = shared_prefix_next_token_logits(micro_llama, micro_tok, prompts, batch_size=2)
    torch.testing.assert_close(got, _one_by_one(micro_llama, micro_tok, prompts), atol=2e-4, rtol=1e-4)


# ------------------------------------------------------------------------------------------------ discovery
def _fake_run(root, method, dataset, N, lr, run_idx, **extra):
    d = root / method / dataset / f"tiny_{N}_{lr}_{run_idx}"
    d.mkdir(parents=True)
    cfg = dict(
        method=method,
        dataset=dataset,
        model_id="tiny",
        lora_type="qko",
        lora_r=8,
        lora_alpha=8,
        num_generated_tokens=1,
        num_train_examples=N,
        lr=lr,
        run_idx=run_idx,
        label_type="ground_truth",
        ce_loss_weight=0.02,
        **extra,
    )
    (d / "config.json").write_text(json.dumps(cfg))
    (d / "COMPLETE").write_text("")
    return d


def test_discover_and_filter(tmp_path):
    from actlab.ia2.evaluate import EvalConfig, discover_runs, filter_runs, plan

    out = tmp_path / "outputs"
    _fake_run(out, "tok", "syn_sst2", 4, 1e-3, 0)
    _fake_run(out, "act", "syn_sst2", 4, 1e-3, 1)
    _fake_run(out, "act", "syn_sst2", 8, 1e-4, 0)
    incomplete = _fake_run(out, "tna", "syn_sst2", 4, 1e-3, 0)
    (incomplete / "COMPLETE").unlink()
    runs = discover_runs(out)
    assert sorted(r["method"] for r in runs) == ["act", "act", "tok"]
    cfg = EvalConfig(model_types=["act"], lrs=[0.001], outputs_dir=str(out))
    assert [r["run_idx"] for r in filter_runs(runs, cfg)] == [1]
    cfg = EvalConfig(model_types=["tna", "a2t"], trained_datasets=["syn_sst2"], outputs_dir=str(out))
    with pytest.raises(ActlabError) as e:
        plan(cfg)
    msg = str(e.value)
    assert "model_types=tna a2t" in msg and "trained_datasets=syn_sst2" in msg and "act/syn_sst2 N=4" in msg
    assert "\n" not in msg


def test_bad_config_values():
    from actlab.ia2.evaluate import EvalConfig

    with pytest.raises(ActlabError, match="unknown model type 'sft'"):
        EvalConfig(model_types=["sft"])
    with pytest.raises(ActlabError, match="icl_max_demos"):
        EvalConfig(icl_max_demos=-1)
