"""Evaluation: metrics, prompt-set schemas, judge export formats, an end-to-end sweep on a micro model."""

import json

import numpy as np
import pytest
import torch
from scipy import stats as sps

from actlab.core.errors import ActlabError
from actlab.iav.evaluate import EvalConfig, distinct_n, evaluate, load_prompts, mean_kl_to_ref, record_prompt, win_rate


def test_metrics_by_hand():
    assert distinct_n(["a b a b", "a c"], 1) == pytest.approx(3 / 6)
    assert distinct_n(["a b a b", "a c"], 2) == pytest.approx(3 / 4)  # ab, ba, ab | ac → 3 distinct of 4
    assert win_rate([1.0, 0.0, 2.0], [0.0, 0.0, 3.0]) == pytest.approx(0.5)


def test_prompt_schemas():
    assert (
        record_prompt({"instruction": "Say hi", "dataset": "x"}, "alpaca_eval")["prompt"]
        == "\n\nHuman: Say hi\n\nAssistant:"
    )
    r = record_prompt({"question_id": "q1", "turns": [{"content": "Why?"}]}, "arena_hard")
    assert r["id"] == "q1" and r["question"] == "Why?"
    hh = "\n\nHuman: hi\n\nAssistant:"
    assert record_prompt({"prompt": hh}, "hh_rlhf")["prompt"] == hh
    with pytest.raises(ActlabError, match="none of"):
        record_prompt({"foo": 1}, "alpaca_eval")
    with pytest.raises(ActlabError, match="prompts_file"):
        load_prompts("arena_hard", 3)
    with pytest.raises(ActlabError, match="did you mean"):
        EvalConfig(prompt_set="alpaca")
    with pytest.raises(ActlabError, match="alpha"):
        EvalConfig(alphas=[0.0, -1.0])


def test_kl_to_ref_is_zero_for_the_reference(micro_tok, micro_llama):
    prompts = ["the cat is", "one two"]
    gens = [[5, 6, 7], [8]]
    same = mean_kl_to_ref(
        lambda i, m: torch.log_softmax(micro_llama(input_ids=i, attention_mask=m).logits, -1),
        micro_llama,
        micro_tok,
        prompts,
        gens,
    )
    assert same == pytest.approx(0.0, abs=1e-6)
    flat = mean_kl_to_ref(
        lambda i, m: torch.full((*i.shape, len(micro_tok)), -torch.log(torch.tensor(float(len(micro_tok))))),
        micro_llama,
        micro_tok,
        prompts,
        gens,
    )
    assert flat > 0.01


@pytest.mark.parametrize("prompt_set", ["syn_hh", "alpaca_eval", "arena_hard"])
def test_evaluate_end_to_end_and_exports(tmp_path, micro_dir, micro_dir_b, prompt_set):
    from actlab.core.models import load
    from actlab.iav.model import IAVModel

    lm, tok = load(micro_dir)
    iav = IAVModel(lm, tokenizer=tok, backbone_id=micro_dir)
    with torch.no_grad():
        iav.align_head.weight.normal_(0, 1.0)
    iav.save_pretrained(tmp_path / "heads")
    pfile, fb = None, None
    if prompt_set == "syn_hh":  # also the frozen-base-head ablation, on the same backbone
        fbm = IAVModel(lm, freeze_base_head=True, tokenizer=tok, backbone_id=micro_dir)
        with torch.no_grad():
            fbm.align_head.weight.normal_(0, 1.0)
        fb = str(fbm.save_pretrained(tmp_path / "heads_fb"))
    if prompt_set == "alpaca_eval":
        pfile = tmp_path / "alpaca.json"
        pfile.write_text(
            json.dumps(
                [{"instruction": "the cat", "dataset": "helpful_base"}, {"instruction": "one two", "dataset": "oasst"}]
            )
        )
    elif prompt_set == "arena_hard":
        pfile = tmp_path / "question.jsonl"
        pfile.write_text(
            "\n".join(
                json.dumps({"question_id": f"q{i}", "turns": [{"content": t}]})
                for i, t in enumerate(["the cat", "a dog"])
            )
            + "\n"
        )
    cfg = EvalConfig(
        heads=str(tmp_path / "heads"),
        heads_frozen_base=fb,
        arm_model=micro_dir_b,
        dpo_model=micro_dir_b,
        prompt_set=prompt_set,
        prompts_file=str(pfile) if pfile else None,
        num_prompts=3,
        alphas=[0.0, 1.0, 2.0],
        max_new_tokens=4,
        output_dir=str(tmp_path / "eval"),
    )
    s = evaluate(cfg)
    names = [m["method"] for m in s["methods"]]
    fb_names = ["iav-fb@0", "iav-fb@1", "iav-fb@2"] if fb else []
    assert names == ["base", "iav@0", "iav@1", "iav@2", *fb_names, "genarm@1", "dpo"]
    if fb:
        assert "reward_rises_with_alpha_frozen_base" in s
    by = {m["method"]: m for m in s["methods"]}
    assert by["iav@0"]["kl_ref"] == pytest.approx(0.0, abs=1e-6)  # untrained base head = reference
    assert by["iav@2"]["kl_ref"] > by["iav@1"]["kl_ref"] > 0
    for m in s["methods"]:
        assert m["ms_per_token"] > 0 and 0 <= m["win_rate_vs_base"] <= 1
    out = tmp_path / "eval"
    # reward CI over prompts and the difference to base paired by prompt, as their definitions (scipy's t intervals)
    base_r = [g["reward"] for g in json.loads((out / "generations" / "base.json").read_text())]
    for name in ("iav@2", "dpo"):
        r = [g["reward"] for g in json.loads((out / "generations" / f"{name}.json").read_text())]
        assert by[name]["reward_diff_vs_base"] == pytest.approx(np.mean(np.subtract(r, base_r)), abs=1e-9)
        if np.std(r) > 0:
            lo, hi = sps.ttest_1samp(r, 0).confidence_interval(0.95)
            assert by[name]["reward_ci95"] == pytest.approx((hi - lo) / 2)
        if np.std(np.subtract(r, base_r)) > 0:
            lo, hi = sps.ttest_rel(r, base_r).confidence_interval(0.95)
            assert by[name]["reward_diff_vs_base_ci95"] == pytest.approx((hi - lo) / 2)
    assert (out / "reward_vs_alpha.png").stat().st_size > 1000
    assert "| iav@1 |" in (out / "table.md").read_text()
    if prompt_set == "alpaca_eval":
        rows = json.loads((out / "exports" / "iav@1.alpaca_eval.json").read_text())
        assert set(rows[0]) == {"instruction", "output", "generator", "dataset"} and rows[0]["generator"] == "iav@1"
    elif prompt_set == "arena_hard":
        rows = [json.loads(x) for x in (out / "exports" / "dpo.arena_hard.jsonl").read_text().splitlines()]
        assert rows[1]["question_id"] == "q1" and rows[1]["model_id"] == "dpo"
        assert isinstance(rows[1]["choices"][0]["turns"][0]["content"], str)
    else:
        rows = json.loads((out / "exports" / "base.hh_rlhf.json").read_text())
        assert rows[0]["result"].startswith(rows[0]["prompt"]) and len(rows) == 3
