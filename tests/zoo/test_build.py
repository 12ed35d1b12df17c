import json

import pytest
import torch

from actlab.cli.main import main
from actlab.core.errors import ActlabError
from actlab.zoo import build as zb
from actlab.zoo.specs import ZOO, CorpusSpec, ModelSpec, TrainSpec, ZooSpec
from actlab.zoo.tokenizer import TokenizerSpec

MICRO = ZooSpec(
    name="micro",
    description="test-only micro entry",
    corpus=CorpusSpec(
        {"icl": 0.5, "passages": 0.25, "arithmetic": 0.25},
        max_len=96,
        warmup_mix={"icl_copy": 1.0},
        warmup_steps=4,
        warmup_batch=6,
    ),  # the resume crosses phases
    model=ModelSpec(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
    ),
    train=TrainSpec(steps=6, batch_size=4, warmup=2, threads=1, ckpt_every=2, eval_tasks=4),
    tokenizer=TokenizerSpec(vocab_size=600, n_docs=150),
    seed=0,
)


@pytest.fixture
def micro(monkeypatch):
    monkeypatch.setitem(ZOO, "micro", MICRO)
    return "micro"


def _weights(d):
    from safetensors.torch import load_file

    return load_file(str(d / "model.safetensors"))


def test_micro_build_loads_with_auto_classes(micro):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    d = zb.ensure_built(micro)
    assert d == zb.model_dir(micro) and d.is_dir() and not zb._partial_dir(d).exists()
    model = AutoModelForCausalLM.from_pretrained(d)
    tok = AutoTokenizer.from_pretrained(d)
    assert model.config.model_type == "llama" and model.config.vocab_size == len(tok)
    assert tok.pad_token == "<pad>" and tok.padding_side == "left" and tok.model_max_length == 512
    assert tok.chat_template and "<|im_start|>" in tok.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    )
    enc = tok(["Text:a\nLabel:", "Text:the great film\nLabel:"], return_tensors="pt", padding=True)
    out = model.generate(**enc, max_new_tokens=2, do_sample=False, pad_token_id=tok.pad_token_id)
    assert out.shape == (2, enc.input_ids.shape[1] + 2)
    man = zb.read_manifest(micro)
    for key in (
        "name",
        "seed",
        "spec",
        "n_params",
        "versions",
        "icl_accuracy",
        "build_seconds",
        "weights_sha256",
        "train",
        "vocab_size",
        "threads",
    ):
        assert key in man, key
    assert man["spec"]["corpus"]["mix"] == MICRO.corpus.mix and man["seed"] == 0
    assert set(man["icl_accuracy"]["held_out_tasks"]) == {"0", "1", "2", "4", "8"}
    assert man["n_params"] == sum(p.numel() for p in model.parameters())
    # cached: a second call does not rebuild
    mtime = (d / "model.safetensors").stat().st_mtime_ns
    assert zb.ensure_built(micro) == d and (d / "model.safetensors").stat().st_mtime_ns == mtime


def _ckpt_step(part):
    from safetensors import safe_open

    with safe_open(str(part / "checkpoint.safetensors"), "pt") as f:
        return int(f.metadata()["step"])  # weights and step in one file (one atomic write)


def test_resume_after_interrupt_gives_same_weights(micro, tmp_path):
    part = zb._partial_dir(zb.model_dir(micro))
    assert zb.build(MICRO, zb.model_dir(micro), stop_after=3) is None  # "killed" after step 3
    assert _ckpt_step(part) == 3
    assert not zb.model_dir(micro).exists()
    d = zb.ensure_built(micro)  # resumes
    assert zb.read_manifest(micro)["train"]["resumed_from_step"] == 3
    resumed = _weights(d)
    d2 = zb.ensure_built(micro, force=True)  # uninterrupted rebuild, same seed
    assert zb.read_manifest(micro)["train"]["resumed_from_step"] == 0
    fresh = _weights(d2)
    assert resumed.keys() == fresh.keys()
    for k in fresh:
        torch.testing.assert_close(resumed[k], fresh[k], rtol=1e-5, atol=1e-6)


def test_partial_of_other_spec_is_discarded(micro):
    import dataclasses

    zb.build(MICRO, zb.model_dir(micro), stop_after=2)
    other = dataclasses.replace(MICRO, seed=5)
    d = zb.build(other, zb.model_dir(micro))
    assert json.loads((d / "manifest.json").read_text())["train"]["resumed_from_step"] == 0


def test_corrupt_cache_is_detected(micro, capsys):
    d = zb.ensure_built(micro)
    (d / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(ActlabError, match=r"corrupt.*actlab zoo build micro --force"):
        zb.ensure_built(micro)
    capsys.readouterr()
    assert main(["zoo", "build", "micro"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--force" in err and "Traceback" not in err
    (d / "tokenizer.json").unlink()
    with pytest.raises(ActlabError, match="missing tokenizer.json"):
        zb.validate(micro)
    assert main(["zoo", "build", "micro", "--force"]) == 0
    zb.validate(micro)
    (d / "manifest.json").write_text("{not json")
    with pytest.raises(ActlabError, match="manifest"):
        zb.read_manifest(micro)


def test_unknown_name_one_line(capsys):
    assert main(["zoo", "build", "tinyy"]) == 2
    err = capsys.readouterr().err.strip()
    assert "'tinyy'" in err and "tiny-b" in err and "\n" not in err
    with pytest.raises(ActlabError, match="valid: tiny"):
        zb.ensure_built("nope")
    assert not zb.is_zoo_name("nope") and zb.is_zoo_name("tiny")


def test_zoo_list_and_seed_dir(micro, capsys):
    assert main(["zoo", "list"]) == 0
    out = capsys.readouterr().out
    assert "tiny" in out and "micro" in out
    assert zb.model_dir("tiny", seed=7).name == "tiny-seed7" and zb.model_dir("tiny", seed=0).name == "tiny"
    with pytest.raises(SystemExit) as e:
        main(["zoo", "build", "tiny", "--seed", "-1"])
    assert e.value.code == 2


def test_stale_spec_is_detected_and_rebuilt(micro, monkeypatch):
    import dataclasses

    d = zb.ensure_built(micro)
    old_sha = zb.read_manifest(micro)["weights_sha256"]
    new = dataclasses.replace(MICRO, corpus=dataclasses.replace(MICRO.corpus, mix={"passages": 1.0}))
    monkeypatch.setitem(ZOO, "micro", new)
    with pytest.raises(
        zb.StaleZooCache, match=r"stale.*rebuilt on its next load, or now with `actlab zoo build micro`"
    ):
        zb.validate(micro)
    assert not zb.is_built(micro)
    assert zb.ensure_built(micro) == d  # the old build is replaced, not reused
    man = zb.read_manifest(micro)
    assert man["spec_identity"] == new.identity() and man["weights_sha256"] != old_sha
    assert not zb._partial_dir(d).exists() and not list(d.parent.glob("micro.old-*"))
