"""Trajectory fine-tuning when turns bring fewer new tokens than ``fixed_mem_size`` (they stay raw, uncompressed)."""

import torch

from actlab.core.io import read_jsonl
from actlab.icae import data, infer, trainer
from tests.icae.test_pipeline import _cfg

LONG = "\nthe cat is red and the dog is blue . alice has a book in paris and bob is in rome with a car"
SHORT = "\nbob is in rome"


def _traj(tool: str) -> list[dict]:
    return [
        {"role": "tool", "content": tool},
        {"role": "user", "content": "\nQuestion: where is bob ?\nAnswer:"},
        {"role": "assistant", "content": " rome"},
    ]


def _state(icae):
    return {k: v.detach().clone() for k, v in icae.trainable_state().items()}


def test_chunks_follow_the_fixed_mem_size_rule(make_icae):
    icae = make_icae(perturb=False, fixed_mem_size=16, mean_compression_rate=2)
    kinds = [c["kind"] for c in trainer.trajectory_chunks(icae, _traj(LONG) + _traj(SHORT))]
    assert kinds == ["mem", "raw", "target", "raw", "raw", "target"]


def test_only_short_turns_train_nothing_and_do_not_crash(make_icae, tmp_path, monkeypatch):
    """No message reaches fixed_mem_size: no memory, no trainable path; the run completes and logs the loss."""
    icae = make_icae(perturb=False, fixed_mem_size=64, mean_compression_rate=4)
    monkeypatch.setattr(data, "trajectories", lambda cfg, split, n, turns=3: [_traj(SHORT) * 2] * 3)
    before = _state(icae)
    cfg = _cfg(tmp_path, task="trajectories", fixed_mem_size=64, max_steps=2)
    trainer.finetune(cfg, icae)
    logged = read_jsonl(tmp_path / "run" / "finetune_trajectories" / "metrics.jsonl")
    assert logged[-1]["train/turns"] == 2 and logged[-1]["train/trained_turns"] == 0
    assert logged[-1]["train/loss"] > 0
    after = _state(icae)
    assert all(torch.equal(before[k], after[k]) for k in before)
    s = infer.run_infer(cfg, icae)  # inference on the same short turns: nothing compressed, no crash
    assert s["compression/rate"] == 1.0


def test_mixed_short_and_long_turns_train_the_long_ones(make_icae, tmp_path, monkeypatch):
    icae = make_icae(perturb=False, fixed_mem_size=16, mean_compression_rate=2)
    monkeypatch.setattr(data, "trajectories", lambda cfg, split, n, turns=3: [_traj(SHORT) + _traj(LONG)] * 3)
    before = _state(icae)
    trainer.finetune(
        _cfg(tmp_path, task="trajectories", fixed_mem_size=16, mean_compression_rate=2, max_steps=2), icae
    )
    logged = read_jsonl(tmp_path / "run" / "finetune_trajectories" / "metrics.jsonl")
    assert logged[-1]["train/turns"] == 2 and logged[-1]["train/trained_turns"] == 1
    after = _state(icae)
    assert any(not torch.equal(before[k], after[k]) for k in before)
