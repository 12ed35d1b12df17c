"""ICAE pretrain / finetune on 2 CPU processes (gloo) give the one-process result of the same global batch.

``per_device_train_batch_size`` is per process (as in HF Trainer): 2 processes × 2 samples are the global batch of
one process with 4. The one-process runs are in this process, the two-process ones go through the launchers exactly
as docs/scale.md writes them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from actlab.core.io import read_jsonl

# dropout off: a rank draws its own masks for its slice (as under DDP), the one thing that would differ
OPTS = dict(
    fixed_mem_size=8,
    mean_compression_rate=4,
    lora_r=4,
    lora_dropout=0.0,
    max_seq_len=64,
    num_train_samples=24,
    num_eval_samples=2,
    max_steps=3,
    logging_steps=1,
    save_steps=2,
    warmup_steps=1,
    learning_rate=5e-3,
    seed=3,
)


def _cfg(model: str, data: Path, out: Path, **kw):
    from actlab.icae.config import ICAEConfig

    return ICAEConfig(model_name=model, data_dir=str(data), output_dir=str(out), device="cpu", **{**OPTS, **kw})


def _flags(model: str, data: Path, out: Path, **kw) -> list[str]:
    args = ["--model_name", model, "--data_dir", str(data), "--output_dir", str(out), "--device", "cpu"]
    for k, v in {**OPTS, **kw}.items():
        args += [f"--{k}", str(v)]
    return args


def _weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))


def _same_run(one: Path, two: Path, weights: str, keys: tuple[str, ...]) -> None:
    a, b = _weights(one / weights), _weights(two / weights)
    assert a.keys() == b.keys() and a
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=1e-5, msg=k)
    ra, rb = read_jsonl(one / "metrics.jsonl"), read_jsonl(two / "metrics.jsonl")
    assert [r["step"] for r in rb] == [1, 2, 3]  # each step once: only rank 0 writes
    for x, y in zip(ra, rb):
        assert set(y) == set(x) and "train/loss" in x  # a part's loss only when the step's global batch had it
        for k in set(keys) & set(x):
            assert y[k] == pytest.approx(x[k], rel=1e-4, abs=1e-6), k
    assert json.loads((one / "config.json").read_text())["world_size"] == 1
    assert json.loads((two / "config.json").read_text())["world_size"] == 2
    assert (two / "COMPLETE").exists() and not (two / "checkpoint.safetensors").exists()


@pytest.mark.multiproc
@pytest.mark.slow  # a launch: .ci/run runs -m multiproc tests/scale
def test_pretrain_and_finetune_two_processes(micro_dir, launch, tmp_path):
    from actlab.icae import data, trainer

    d = tmp_path / "data"
    data.prepare_pretrain(_cfg(micro_dir, d, tmp_path / "one"))
    one = trainer.train(_cfg(micro_dir, d, tmp_path / "one", per_device_train_batch_size=4))
    assert one == tmp_path / "one" / "pretrain"
    r = launch(
        "torchrun", 2, "icae", "pretrain", *_flags(micro_dir, d, tmp_path / "two", per_device_train_batch_size=2)
    )
    assert r.returncode == 0, r.stderr[-3000:]
    _same_run(
        one,
        tmp_path / "two" / "pretrain",
        "icae.safetensors",
        ("train/loss", "train/ae_loss", "train/lm_loss", "train/grad_norm", "train/lr"),
    )
    # fine-tuning QA from the pretrained weights, through accelerate's launcher this time
    ft = dict(task="qa", checkpoint_path=str(one / "icae.safetensors"), num_train_samples=12)
    one_ft = trainer.train(_cfg(micro_dir, d, tmp_path / "one", per_device_train_batch_size=4, **ft))
    assert one_ft == tmp_path / "one" / "finetune_qa"
    r = launch(
        "accelerate",
        2,
        "icae",
        "finetune",
        *_flags(micro_dir, d, tmp_path / "two", per_device_train_batch_size=2, **ft),
    )
    assert r.returncode == 0, r.stderr[-3000:]
    _same_run(one_ft, tmp_path / "two" / "finetune_qa", "icae.safetensors", ("train/loss", "train/grad_norm"))
    # fine-tuning really moved the weights (two runs that did nothing would also be equal)
    pre, post = _weights(one / "icae.safetensors"), _weights(one_ft / "icae.safetensors")
    assert any(not torch.allclose(pre[k], post[k]) for k in pre)


def test_trajectories_refused_under_a_launcher(monkeypatch, tmp_path):
    from actlab.core.distributed import Dist
    from actlab.core.errors import ActlabError
    from actlab.icae import trainer

    monkeypatch.setattr(trainer, "start", lambda device, verb: Dist(rank=0, world=2))
    with pytest.raises(ActlabError, match="trajectories .* one process"):
        trainer.finetune(_cfg("unused", tmp_path, tmp_path / "x", task="trajectories"))


@pytest.mark.slow  # kills a launch mid-run and resumes it (not in .ci/run's multiproc set)
def test_killed_two_process_run_resumes_like_an_uninterrupted_one(micro_dir, tmp_path):
    """Every rank reads rank 0's checkpoint on resume: a rank that started over would train other weights and the
    summed gradients would pull the run away from the uninterrupted one."""
    import subprocess
    import time

    import psutil
    from safetensors import safe_open

    from actlab.icae import data, trainer
    from tests.scale.conftest import launch_cmd, launch_env

    d, steps = tmp_path / "data", 60
    data.prepare_pretrain(_cfg(micro_dir, d, tmp_path / "one"))
    one = trainer.train(
        _cfg(
            micro_dir,
            d,
            tmp_path / "one",
            per_device_train_batch_size=4,
            max_steps=steps,
            save_steps=4,
            logging_steps=4,
        )
    )
    cmd = launch_cmd(
        "torchrun",
        2,
        "icae",
        "pretrain",
        *_flags(
            micro_dir,
            d,
            tmp_path / "two",
            max_steps=steps,
            save_steps=4,
            logging_steps=4,
            per_device_train_batch_size=2,
        ),
    )
    ck = tmp_path / "two" / "pretrain" / "checkpoint.safetensors"
    p = subprocess.Popen(cmd, env=launch_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while p.poll() is None and not ck.exists():
            time.sleep(0.02)
    finally:  # the workers too: torchrun starts them in their own sessions
        procs = [psutil.Process(p.pid), *psutil.Process(p.pid).children(recursive=True)]
        for q in procs:
            q.kill()
        psutil.wait_procs(procs, timeout=30)
        p.wait()
    assert ck.exists() and not (tmp_path / "two" / "pretrain" / "COMPLETE").exists(), "the run ended before the kill"
    with safe_open(str(ck), "pt") as f:
        killed_at = int(f.metadata()["step"])
    assert 0 < killed_at < steps
    r = subprocess.run(cmd, env=launch_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"from step {killed_at}" in r.stderr  # resumed, not found complete or started over
    two = tmp_path / "two" / "pretrain"
    a, b = _weights(one / "icae.safetensors"), _weights(two / "icae.safetensors")
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=1e-5, msg=k)
    assert [row["step"] for row in read_jsonl(two / "metrics.jsonl")] == list(range(4, steps + 1, 4))


def test_resume_on_another_process_count_warns(micro_dir, tmp_path, monkeypatch, caplog):
    """A run resumed on another number of processes goes on with another global batch: said, not silent."""
    import logging

    from actlab.icae import data, trainer

    d, out = tmp_path / "data", tmp_path / "run"
    cfg = _cfg(micro_dir, d, out, per_device_train_batch_size=2)
    data.prepare_pretrain(cfg)

    def killed(run, info):
        raise KeyboardInterrupt

    with monkeypatch.context() as m, pytest.raises(KeyboardInterrupt):
        m.setattr(trainer, "_finish", killed)
        trainer.pretrain(cfg)
    rec = out / "pretrain" / "config.json"
    assert (out / "pretrain" / "checkpoint.safetensors").exists()
    rec.write_text(json.dumps({**json.loads(rec.read_text()), "world_size": 2}))  # as a 2-process run wrote it
    with caplog.at_level(logging.WARNING, logger="actlab.icae.trainer"):
        assert trainer.train(cfg) == out / "pretrain"
    assert "started on 2 processes with 1: the global batch changes from 4 to 2" in caplog.text
    assert json.loads(rec.read_text())["world_size"] == 1 and (out / "pretrain" / "COMPLETE").exists()
