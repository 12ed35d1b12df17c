"""``iav train`` on two CPU processes: one gloo group (DDP through accelerate), the one-process result.

The launch is the one a new user types on a machine without GPUs — ``accelerate launch --multi_gpu`` and no
``--device``. Before the launch check, accelerate's state saw no GPU and made each process a group of one: two
independent trainings into one run directory. Now the processes form one gloo group.
"""

import json

import pytest
from safetensors.torch import load_file

pytestmark = [pytest.mark.multiproc, pytest.mark.slow]  # .ci/run runs them: -m multiproc tests/scale

ARGS = [
    "--num_train_samples",
    "16",
    "--num_val_samples",
    "4",
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
    "--lambda_kl",
    "0",
    "--lambda_l2",
    "0",
]


def test_accelerate_two_cpu_processes_are_one_group(micro_dir, tmp_path, launch):
    out = tmp_path / "two"
    r = launch(
        "accelerate",
        2,
        "iav",
        "train",
        "--model_name_or_path",
        micro_dir,
        "--output_dir",
        out,
        "--batch_size",
        "2",
        *ARGS,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert "iav train: 2 processes (multi_cpu, cpu)" in r.stderr
    assert json.loads((out / "config.json").read_text())["world_size"] == 2
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in rows] == [1, 2, 3]  # one writer, each step once
    assert "eval/loss/total" in rows[1] and (out / "COMPLETE").exists()

    # DDP averages the ranks' gradients: one process on the union of their batches (2 x 2 pairs) is the same
    from actlab.cli.main import main

    one = tmp_path / "one"
    assert (
        main(
            [
                "iav",
                "train",
                "--model_name_or_path",
                micro_dir,
                "--output_dir",
                str(one),
                "--batch_size",
                "4",
                "--device",
                "cpu",
                *ARGS,
            ]
        )
        == 0
    )
    ref, got = load_file(one / "heads" / "iav_heads.safetensors"), load_file(out / "heads" / "iav_heads.safetensors")
    assert ref.keys() == got.keys() and got["align_head.weight"].abs().sum() > 0
    for k in ref:
        assert (ref[k] - got[k]).abs().max() < 1e-4, k
    a = [json.loads(x) for x in (one / "metrics.jsonl").read_text().splitlines()]
    for ra, rb in zip(a, rows, strict=True):
        assert rb["loss/total"] == pytest.approx(ra["loss/total"], rel=1e-4, abs=1e-6)
