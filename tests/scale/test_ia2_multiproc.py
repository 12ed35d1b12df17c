"""``ia2 train`` on two CPU processes (gloo) gives the one-process run, up to float noise.

The batches are uneven on purpose (8 examples, ``--batch_size 3``: global batches of 3, 3, 2, so the ranks' shards
are 1+2 and 1+1 examples) and each rank runs its shard in micro-batches of one: the gradients only sum to the
one-process gradient if every micro-batch's loss is weighted by its share of the *global* batch.
"""

import json
from pathlib import Path

import pytest
from safetensors.torch import load_file

from actlab.cli.main import main
from tests.scale.conftest import DS

pytestmark = [pytest.mark.multiproc, pytest.mark.slow]  # .ci/run runs them: -m multiproc tests/scale


def _args(micro_dir, data, out, method):
    label = ["--label_type", "ground_truth"] if method == "tok" else []
    return [
        "ia2",
        "train",
        "--training_method",
        method,
        *label,
        "--dataset",
        DS,
        "--model_id",
        micro_dir,
        "--data_dir",
        str(data),
        "--num_train_examples",
        "8",
        "--output_dir",
        str(out),
        "--lr",
        "1e-2",
        "--batch_size",
        "3",
        "--micro_batch_size",
        "1",
        "--max_steps",
        "5",
        "--dev_eval_steps",
        "2",
        "--checkpoint_every",
        "2",
        "--device",
        "cpu",
    ]


def _run_dir(out: Path, method: str) -> Path:
    (d,) = (out / method / DS).iterdir()
    return d


def _rows(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("method,kind", [("act", "torchrun"), ("tok", "accelerate")])
def test_two_processes_equal_one(method, kind, micro_dir, ia2_data, tmp_path, launch, capsys):
    r = launch(kind, 2, *_args(micro_dir, ia2_data, tmp_path / "two", method))
    assert r.returncode == 0, r.stderr[-3000:]
    two = _run_dir(tmp_path / "two", method)
    assert main(_args(micro_dir, ia2_data, tmp_path / "one", method)) == 0
    one = _run_dir(tmp_path / "one", method)
    assert one.name == two.name and (two / "COMPLETE").exists() and not (two / "checkpoint").exists()
    assert "ia2 train: 2 processes (multi_cpu, cpu)" in r.stderr  # one group, announced once by rank 0
    assert r.stderr.count("2 processes (multi_cpu") == 1
    assert r.stdout.split() == [str(two)]  # the run's path, printed once

    cfg, summary = json.loads((two / "config.json").read_text()), json.loads((two / "train_summary.json").read_text())
    assert cfg["world_size"] == 2 and summary["world_size"] == 2
    assert json.loads((one / "config.json").read_text())["world_size"] == 1
    # rank 0 alone wrote metrics.jsonl: each step once, with the same (summed) numbers as one process
    a, b = _rows(one), _rows(two)
    assert [x["step"] for x in b] == [1, 2, 3, 4, 5] == [x["step"] for x in a]
    for ra, rb in zip(a, b, strict=True):
        assert ra.keys() == rb.keys()
        for k in ra:
            assert rb[k] == pytest.approx(ra[k], rel=1e-4, abs=1e-7), (ra["step"], k)
    assert "dev/loss" in b[1] and b[1]["dev/loss"] > 0  # the sharded dev evaluation summed over ranks
    assert b[-1]["train/loss"] != pytest.approx(b[0]["train/loss"], rel=1e-3)  # it trained (numbers can differ)

    wa, wb = load_file(one / "adapter_model.safetensors"), load_file(two / "adapter_model.safetensors")
    assert wa.keys() == wb.keys()
    for k in wa:
        scale = float(wa[k].abs().max())
        assert float((wa[k] - wb[k]).abs().max()) <= 1e-4 * scale + 1e-6, k
    assert max(float(v.abs().max()) for k, v in wb.items() if "lora_B" in k) > 0  # trained (B starts at zero)

    if method == "act":  # the ICL targets: built by rank 0 into one cache file (nothing partial left), then read
        caches = [p.name for p in Path(summary["target_cache"]).parent.iterdir()]
        assert caches == [Path(summary["target_cache"]).name] or sorted(caches) == sorted(
            [Path(summary["target_cache"]).name, Path(summary["target_cache"]).name + ".lock"]
        )
        assert not summary["targets_from_cache"]
        assert json.loads((one / "train_summary.json").read_text())["targets_from_cache"]

    # the process count is not part of the fingerprint: one process skips the run two processes finished
    capsys.readouterr()
    assert main(_args(micro_dir, ia2_data, tmp_path / "two", method)) == 0
    assert "complete; skipped" in capsys.readouterr().err


def test_two_processes_resume_a_killed_run(micro_dir, ia2_data, tmp_path, launch, monkeypatch, capsys):
    """A run killed right after its step-2 checkpoint, resumed on two processes: every rank loads rank 0's
    checkpoint, the metrics hold each step once and the adapter is the uninterrupted run's."""
    from actlab.ia2 import trainer

    assert main(_args(micro_dir, ia2_data, tmp_path / "ref", "act")) == 0
    real = trainer.save_checkpoint

    def save_then_die(*a, **k):
        real(*a, **k)
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer, "save_checkpoint", save_then_die)
    assert main(_args(micro_dir, ia2_data, tmp_path / "run", "act")) == 130
    run = _run_dir(tmp_path / "run", "act")
    assert (run / "checkpoint" / "state.safetensors").exists() and [x["step"] for x in _rows(run)] == [1, 2]

    r = launch("torchrun", 2, *_args(micro_dir, ia2_data, tmp_path / "run", "act"))
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stderr.count(f"ia2: resuming {run.name} from step 2") == 1  # said once, by rank 0
    assert [x["step"] for x in _rows(run)] == [1, 2, 3, 4, 5] and (run / "COMPLETE").exists()
    ref = _run_dir(tmp_path / "ref", "act")
    for ra, rb in zip(_rows(ref), _rows(run), strict=True):
        assert rb["train/loss"] == pytest.approx(ra["train/loss"], rel=1e-4, abs=1e-7)
    wa, wb = load_file(ref / "adapter_model.safetensors"), load_file(run / "adapter_model.safetensors")
    for k in wa:
        assert float((wa[k] - wb[k]).abs().max()) <= 1e-4 * float(wa[k].abs().max()) + 1e-6, k
    assert json.loads((run / "config.json").read_text())["world_size"] == 2
