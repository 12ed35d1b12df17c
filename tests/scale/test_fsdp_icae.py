"""ICAE pretrain / finetune under FSDP2 on 2 CPU processes (gloo) give the one-process result of the same global batch.

FSDP is switched on as users do: ``ACTLAB_FSDP=1`` under torchrun, and accelerate's config file
``configs/accelerate/fsdp.yaml`` (``distributed_type: FSDP``). Each rank then holds half of every decoder layer; the
saved weights, ``metrics.jsonl`` and the checkpoints are those of one process, and a checkpoint resumes across the
two (FSDP → one process, one process → FSDP).
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.scale.conftest import free_port, launch_cmd, launch_env
from tests.scale.test_icae_multiproc import _cfg, _flags, _same_run, _weights

pytestmark = [pytest.mark.multiproc, pytest.mark.slow]  # .ci/run runs them: -m multiproc tests/scale

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "accelerate" / "fsdp.yaml"
KEYS = ("train/loss", "train/ae_loss", "train/lm_loss", "train/grad_norm", "train/lr")


def fsdp_accelerate_cmd(nproc: int, *args: str) -> list[str]:
    """``accelerate launch --config_file configs/accelerate/fsdp.yaml`` on ``nproc`` CPU processes."""
    return [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(CONFIG),
        "--num_processes",
        str(nproc),
        "--mixed_precision",
        "no",
        "--main_process_port",
        str(free_port()),
        "-m",
        "actlab.cli.main",
        *map(str, args),
    ]


def _run(cmd: list[str], **env: str) -> subprocess.CompletedProcess:
    r = subprocess.run(cmd, env=launch_env(**env), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "2 processes (fsdp, cpu)" in r.stderr and "decoder layers" in r.stderr  # FSDP really was on
    return r


def test_pretrain_and_finetune_fsdp_match_one_process(micro_dir, tmp_path):
    """Pretraining (torchrun), QA fine-tuning (accelerate's config file) and the SimpleLLM baseline (torchrun)."""
    from actlab.icae import data, trainer

    d = tmp_path / "data"
    data.prepare_pretrain(_cfg(micro_dir, d, tmp_path / "one"))
    one = trainer.train(_cfg(micro_dir, d, tmp_path / "one", per_device_train_batch_size=4))
    flags = _flags(micro_dir, d, tmp_path / "two", per_device_train_batch_size=2)
    _run(launch_cmd("torchrun", 2, "icae", "pretrain", *flags), ACTLAB_FSDP="1")
    _same_run(one, tmp_path / "two" / "pretrain", "icae.safetensors", KEYS)
    # fine-tuning QA through accelerate's launcher and the documented config file
    ft = dict(task="qa", checkpoint_path=str(one / "icae.safetensors"), num_train_samples=12)
    one_ft = trainer.train(_cfg(micro_dir, d, tmp_path / "one", per_device_train_batch_size=4, **ft))
    flags = _flags(micro_dir, d, tmp_path / "two", per_device_train_batch_size=2, **ft)
    _run(fsdp_accelerate_cmd(2, "icae", "finetune", *flags))
    _same_run(one_ft, tmp_path / "two" / "finetune_qa", "icae.safetensors", ("train/loss", "train/grad_norm"))
    pre, post = _weights(one / "icae.safetensors"), _weights(one_ft / "icae.safetensors")
    assert any(not torch.allclose(pre[k], post[k]) for k in pre)
    # the full-context baseline (a LoRA on the decoder itself) under torchrun
    llm = dict(task="qa", model_type="llm", num_train_samples=12)
    one_llm = trainer.train(_cfg(micro_dir, d, tmp_path / "one", per_device_train_batch_size=4, **llm))
    flags = _flags(micro_dir, d, tmp_path / "two", per_device_train_batch_size=2, **llm)
    _run(launch_cmd("torchrun", 2, "icae", "finetune", *flags), ACTLAB_FSDP="1")
    _same_run(one_llm, tmp_path / "two" / "finetune_qa_llm", "llm.safetensors", ("train/loss", "train/grad_norm"))


def _assert_weights(a: Path, b: Path) -> None:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys() and wa
    for k in wa:
        torch.testing.assert_close(wb[k], wa[k], rtol=1e-4, atol=1e-5, msg=k)


def _per_device_batch(run: Path, bs: int) -> None:
    """Record another ``per_device_train_batch_size`` in a started run: 1 × 4 and 2 × 2 are the same global batch,
    so the checkpoint goes on with the same numbers (the per-process size is part of a run's config)."""
    rec = run / "config.json"
    rec.write_text(json.dumps({**json.loads(rec.read_text()), "per_device_train_batch_size": bs}))


def test_checkpoints_resume_across_fsdp_and_one_process(micro_dir, tmp_path, monkeypatch, caplog):
    """A one-process checkpoint resumes under FSDP, an FSDP checkpoint (weights and AdamW moments gathered whole)
    resumes in one process; both with the same global batch end with the weights of the uninterrupted run."""
    import psutil
    from safetensors import safe_open

    from actlab.icae import data, trainer

    d, steps = tmp_path / "data", 12
    opts = dict(max_steps=steps, save_steps=4, logging_steps=4)
    data.prepare_pretrain(_cfg(micro_dir, d, tmp_path / "ref"))
    ref = trainer.train(_cfg(micro_dir, d, tmp_path / "ref", per_device_train_batch_size=4, **opts))

    # one process, stopped after its last checkpoint (step 8), resumed under FSDP
    def killed(run, info):
        raise KeyboardInterrupt

    with monkeypatch.context() as m, pytest.raises(KeyboardInterrupt):
        m.setattr(trainer, "_finish", killed)
        trainer.train(_cfg(micro_dir, d, tmp_path / "a", per_device_train_batch_size=4, **opts))
    assert (tmp_path / "a" / "pretrain" / trainer.CKPT).exists()
    _per_device_batch(tmp_path / "a" / "pretrain", 2)
    r = _run(
        launch_cmd(
            "torchrun",
            2,
            "icae",
            "pretrain",
            *_flags(micro_dir, d, tmp_path / "a", per_device_train_batch_size=2, **opts),
        ),
        ACTLAB_FSDP="1",
    )
    assert "from step 8" in r.stderr
    _assert_weights(ref / "icae.safetensors", tmp_path / "a" / "pretrain" / "icae.safetensors")

    # FSDP, killed once it wrote a checkpoint, resumed in one process
    cmd = launch_cmd(
        "torchrun", 2, "icae", "pretrain", *_flags(micro_dir, d, tmp_path / "b", per_device_train_batch_size=2, **opts)
    )
    ck = tmp_path / "b" / "pretrain" / trainer.CKPT
    p = subprocess.Popen(cmd, env=launch_env(ACTLAB_FSDP="1"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while p.poll() is None and not ck.exists():
            time.sleep(0.01)
    finally:
        procs = [psutil.Process(p.pid), *psutil.Process(p.pid).children(recursive=True)]
        for q in procs:
            q.kill()
        psutil.wait_procs(procs, timeout=30)
        p.wait()
    assert ck.exists() and not (tmp_path / "b" / "pretrain" / "COMPLETE").exists(), "the run ended before the kill"
    with safe_open(str(ck), "pt") as f:
        killed_at = int(f.metadata()["step"])
        assert any(k.startswith("opt.") for k in f.keys())  # AdamW's moments, whole
    assert 0 < killed_at < steps
    _per_device_batch(tmp_path / "b" / "pretrain", 4)
    with caplog.at_level(logging.INFO, logger="actlab.icae.trainer"):
        trainer.train(_cfg(micro_dir, d, tmp_path / "b", per_device_train_batch_size=4, **opts))
    assert f"from step {killed_at}" in caplog.text  # resumed, not started over (that would also match)
    _assert_weights(ref / "icae.safetensors", tmp_path / "b" / "pretrain" / "icae.safetensors")
