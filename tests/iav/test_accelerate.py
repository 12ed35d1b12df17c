"""Data-parallel training through `accelerate launch` with two CPU processes.

On a machine without GPUs, ``accelerate launch --multi_gpu --num_processes 2`` starts two torchrun workers that
Accelerate runs as MULTI_CPU (gloo); ``--cpu`` alone would start a single process.
"""

import json
import os
import subprocess
import sys

import pytest
from safetensors.torch import load_file


@pytest.mark.slow
def test_accelerate_two_cpu_processes(tmp_path, micro_dir):
    out = tmp_path / "run"
    env = {**os.environ, "ACTLAB_QUIET": "1", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "-m",
        "actlab.cli.main",
        "iav",
        "train",
        "--model_name_or_path",
        micro_dir,
        "--output_dir",
        str(out),
        "--num_train_samples",
        "16",
        "--num_val_samples",
        "4",
        "--batch_size",
        "2",
        "--seq_length",
        "48",
        "--max_prompt_length",
        "24",
        "--max_steps",
        "3",
        "--save_steps",
        "2",
        "--eval_steps",
        "2",
        "--device",
        "cpu",
        "--lambda_kl",
        "0",
        "--lambda_l2",
        "0",
    ]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert (out / "COMPLETE").exists()
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["world_size"] == 2
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in rows] == [1, 2, 3]  # one writer, no duplicated rows
    heads = load_file(out / "heads" / "iav_heads.safetensors")
    assert heads["align_head.weight"].abs().sum() > 0
    # DDP averages the two ranks' gradients: the same as one process on the union of their batches
    from actlab.iav.config import LossConfig, TrainConfig
    from actlab.iav.trainer import train

    one = train(
        TrainConfig(
            model_name_or_path=micro_dir,
            output_dir=str(tmp_path / "one"),
            num_train_samples=16,
            num_val_samples=4,
            batch_size=4,
            seq_length=48,
            max_prompt_length=24,
            max_steps=3,
            save_steps=2,
            eval_steps=2,
            device="cpu",
            loss=LossConfig(lambda_kl=0.0, lambda_l2=0.0),
        )
    )
    ref = load_file(one / "heads" / "iav_heads.safetensors")
    for k in ref:
        assert (ref[k] - heads[k]).abs().max() < 1e-4, k


@pytest.mark.slow
def test_sigkill_then_resume(tmp_path, micro_dir):
    """A real `kill -9` mid-run: the rerun resumes from the last checkpoint and ends like an uninterrupted run."""
    import signal
    import time

    env = {**os.environ, "ACTLAB_QUIET": "1", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}

    def cmd(out, steps):
        return [
            sys.executable,
            "-m",
            "actlab.cli.main",
            "iav",
            "train",
            "--model_name_or_path",
            micro_dir,
            "--output_dir",
            str(out),
            "--num_train_samples",
            "32",
            "--num_val_samples",
            "0",
            "--batch_size",
            "2",
            "--seq_length",
            "48",
            "--max_prompt_length",
            "24",
            "--max_steps",
            str(steps),
            "--save_steps",
            "2",
            "--device",
            "cpu",
        ]

    p = subprocess.Popen(cmd(tmp_path / "killed", 120), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    from actlab.iav.trainer import latest_checkpoint

    first = tmp_path / "killed" / "checkpoint-2" / "checkpoint.safetensors"
    t0 = time.time()
    while not first.exists() and time.time() - t0 < 120:
        time.sleep(0.2)
    time.sleep(0.5)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    state = latest_checkpoint(tmp_path / "killed") / "checkpoint.safetensors"
    assert not (tmp_path / "killed" / "COMPLETE").exists()
    from safetensors import safe_open

    with safe_open(str(state), "pt") as f:
        done = int(f.metadata()["step"])
    assert 2 <= done < 120
    # resume with the same settings: must finish; compare with an uninterrupted run of the same length
    r = subprocess.run(cmd(tmp_path / "killed", 120), env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and "resuming" in r.stderr, r.stderr[-1000:]
    r = subprocess.run(cmd(tmp_path / "full", 120), env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0
    a = load_file(tmp_path / "full" / "heads" / "iav_heads.safetensors")
    b = load_file(tmp_path / "killed" / "heads" / "iav_heads.safetensors")
    for k in a:
        assert (a[k] - b[k]).abs().max() < 1e-5, k
    steps = [json.loads(x)["step"] for x in (tmp_path / "killed" / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 121))
