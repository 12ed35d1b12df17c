"""Checkpoints written by older actlab versions (before ``actlab.core.checkpoint``) still resume to the weights of an
uninterrupted run: each test rewrites a fresh checkpoint into the older layout, then resumes from it."""

import json
import shutil

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from actlab.core.io import atomic_write_json, save_tensors


def _read(path):
    with safe_open(str(path), "pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata())


def _same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)


def test_zoo_two_file_checkpoint(tmp_path):
    """The zoo's older checkpoint: tensors in checkpoint.safetensors, the step in checkpoint.json."""
    from actlab.zoo.build import build
    from tests.core.kill_driver import zoo_spec

    final = tmp_path / "micro"
    assert build(zoo_spec(), final, stop_after=2) is None
    part = final.with_name("micro.partial")
    tensors, meta = _read(part / "checkpoint.safetensors")
    extra = json.loads(meta["extra"])
    save_tensors(
        part / "checkpoint.safetensors",
        {k: v for k, v in tensors.items() if not k.startswith("rng.")},
        {"optimizer": meta["optimizer"]},
    )
    atomic_write_json(part / "checkpoint.json", {"step": 2, "log": extra["log"], "elapsed_s": 1.0})
    build(zoo_spec(), final)
    assert json.loads((final / "manifest.json").read_text())["train"]["resumed_from_step"] == 2
    ref = build(zoo_spec(), tmp_path / "ref" / "micro")
    _same(load_file(final / "model.safetensors"), load_file(ref / "model.safetensors"))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from actlab.core.testing import micro_model, micro_tokenizer
    from actlab.data import make_train, prepare

    root = tmp_path_factory.mktemp("legacy")
    tok = micro_tokenizer()
    micro_model("llama", tok).save_pretrained(root / "llama")
    tok.save_pretrained(root / "llama")
    prepare("syn_sst2", root / "data", num_train_samples=20, num_val_samples=4, label_template="remap")
    make_train("syn_sst2_remap", root / "data", num_train_examples=[4], num_runs=1, max_icl_demos=2)
    return root


def test_ia2_single_file_checkpoint_with_counters_in_metadata(world, tmp_path, monkeypatch, caplog):
    from actlab.ia2 import IA2TrainConfig, losses
    from actlab.ia2.trainer import train

    def cfg(out):
        return IA2TrainConfig(
            "act",
            dataset="syn_sst2_remap",
            model_id=str(world / "llama"),
            data_dir=str(world / "data"),
            output_dir=str(out),
            num_train_examples=4,
            max_steps=4,
            checkpoint_every=2,
            lr=1e-2,
            lora_r=4,
            lora_alpha=8,
            patience=100,
        )

    real, calls = losses.compute_losses, []

    def dying(*a, **k):
        calls.append(1)
        if len(calls) > 5:  # a train and a dev call per step: dies in step 3
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(losses, "compute_losses", dying)
    with pytest.raises(KeyboardInterrupt):
        train(cfg(tmp_path / "run"))
    monkeypatch.undo()
    from actlab.ia2.naming import run_dir

    path = run_dir(cfg(tmp_path / "run"))
    ck = path / "checkpoint" / "state.safetensors"
    tensors, meta = _read(ck)
    counters = json.loads(meta["extra"])["counters"]
    save_tensors(
        ck,
        {k: v for k, v in tensors.items() if not k.startswith("rng.")},
        {"counters": json.dumps(counters), "optimizer": meta["optimizer"]},
    )
    caplog.set_level("INFO", logger="actlab")
    train(cfg(tmp_path / "run"))
    assert "from step 2" in caplog.text
    ref = train(cfg(tmp_path / "ref"))
    _same(load_file(path / "adapter_model.safetensors"), load_file(ref / "adapter_model.safetensors"))
    assert [json.loads(x)["step"] for x in (path / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3, 4]


def test_iav_checkpoint_directory(world, tmp_path, caplog):
    """IAV's older ``checkpoint/`` directory: heads, optimizer (safetensors) and state.json with the scheduler."""
    from actlab.iav.config import TrainConfig
    from actlab.iav.trainer import train

    def cfg(out):
        return TrainConfig(
            model_name_or_path=str(world / "llama"),
            output_dir=str(out),
            num_train_samples=16,
            num_val_samples=0,
            batch_size=2,
            seq_length=48,
            max_prompt_length=24,
            save_steps=2,
            device="cpu",
            learning_rate=1e-2,
            max_steps=4,
        )

    with pytest.raises(KeyboardInterrupt):
        train(cfg(tmp_path / "run"), kill_after_steps=3)
    run = tmp_path / "run"
    tensors, meta = _read(run / "checkpoint-2" / "checkpoint.safetensors")
    shutil.rmtree(run / "checkpoint-2")
    d = run / "checkpoint"
    d.mkdir()
    save_tensors(d / "heads.safetensors", {k: v for k, v in tensors.items() if not k.startswith(("opt.", "rng."))})
    save_tensors(
        d / "optimizer.safetensors",
        {k: v for k, v in tensors.items() if k.startswith("opt.")},
        {"optimizer": meta["optimizer"]},
    )
    atomic_write_json(d / "state.json", {**json.loads(meta["extra"]), "scheduler": json.loads(meta["scheduler"])})
    caplog.set_level("INFO", logger="actlab")
    train(cfg(run))
    assert "from step 2" in caplog.text
    ref = train(cfg(tmp_path / "ref"))
    _same(load_file(run / "heads" / "iav_heads.safetensors"), load_file(ref / "heads" / "iav_heads.safetensors"))
    assert [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3, 4]
    assert not d.exists()
