"""checkpoint-<step>/ directories with a save limit, from_pretrained on a run or a checkpoint directory, and
--gradient_checkpointing (the backbone's own switch on, the heads trained the same)."""

import pytest
import torch
from safetensors.torch import load_file

from actlab.core.errors import ActlabError
from actlab.iav.config import TrainConfig
from actlab.iav.model import IAVModel
from actlab.iav.trainer import latest_checkpoint, train


def _cfg(micro_dir, out, **kw):
    base = dict(
        model_name_or_path=micro_dir,
        output_dir=str(out),
        num_train_samples=16,
        num_val_samples=0,
        batch_size=4,
        seq_length=48,
        max_prompt_length=24,
        save_steps=1,
        device="cpu",
        learning_rate=1e-2,
        warmup_ratio=0.0,
        max_steps=4,
    )
    base.update(kw)
    return TrainConfig(**base)


def _logits(iav, micro_dir, alpha=1.0):
    ids = torch.tensor([[3, 5, 7, 9, 11, 4]])
    with torch.no_grad():
        return iav(ids, torch.ones_like(ids), alpha=alpha)["z_final"]


def test_save_total_limit_keeps_the_newest(tmp_path, micro_dir):
    out = train(_cfg(micro_dir, tmp_path / "run", save_total_limit=2))
    names = sorted(p.name for p in out.iterdir() if p.name.startswith("checkpoint"))
    assert names == ["checkpoint-3", "checkpoint-4"]
    assert latest_checkpoint(out) == out / "checkpoint-4"
    for d in names:
        assert (out / d / "checkpoint.safetensors").exists() and (out / d / "iav_heads.safetensors").exists()
    # no limit: every save_steps-th step stays
    out2 = train(_cfg(micro_dir, tmp_path / "all", save_steps=2))
    assert sorted(p.name for p in out2.iterdir() if p.name.startswith("checkpoint")) == [
        "checkpoint-2",
        "checkpoint-4",
    ]


def test_save_total_limit_must_be_positive(tmp_path, micro_dir):
    with pytest.raises(ActlabError, match="save_total_limit"):
        _cfg(micro_dir, tmp_path / "bad", save_total_limit=0)


def test_from_pretrained_run_dir_and_checkpoint_dir(tmp_path, micro_dir):
    out = train(_cfg(micro_dir, tmp_path / "run", save_steps=2))
    final = IAVModel.from_pretrained(out / "heads")
    run = IAVModel.from_pretrained(out)  # a finished run: its final heads
    assert torch.equal(_logits(run, micro_dir), _logits(final, micro_dir))
    ck2 = IAVModel.from_pretrained(out / "checkpoint-2")
    saved = load_file(out / "checkpoint-2" / "checkpoint.safetensors")  # the resumable state of step 2
    for k, v in ck2.head_state().items():
        assert torch.equal(v, saved[k]), k
    assert not torch.allclose(_logits(ck2, micro_dir), _logits(final, micro_dir))  # step 2 is not the end
    # the heads at step 4 (the last checkpoint) are the final heads
    assert torch.allclose(
        _logits(IAVModel.from_pretrained(out / "checkpoint-4"), micro_dir), _logits(final, micro_dir), atol=1e-6
    )
    # an unfinished run: its newest complete checkpoint
    (out / "heads" / "iav_heads.safetensors").unlink()
    assert torch.equal(
        _logits(IAVModel.from_pretrained(out), micro_dir),
        _logits(IAVModel.from_pretrained(out / "checkpoint-4"), micro_dir),
    )
    with pytest.raises(ActlabError, match="no IAV heads"):
        IAVModel.from_pretrained(tmp_path / "nothing")


def test_gradient_checkpointing_is_on_and_trains_the_same(tmp_path, micro_dir, monkeypatch):
    from actlab.core import models

    seen = []
    real = models.load

    def load(*a, **k):
        lm, tok = real(*a, **k)
        seen.append(lm)
        return lm, tok

    monkeypatch.setattr(models, "load", load)
    plain = train(_cfg(micro_dir, tmp_path / "plain", max_steps=2))
    assert not seen[-1].is_gradient_checkpointing
    ckpt = train(_cfg(micro_dir, tmp_path / "gc", max_steps=2, gradient_checkpointing=True))
    lm = seen[-1]
    assert lm.is_gradient_checkpointing
    assert all(layer.gradient_checkpointing for layer in lm.model.layers)
    a = load_file(plain / "heads" / "iav_heads.safetensors")
    b = load_file(ckpt / "heads" / "iav_heads.safetensors")
    assert set(a) == set(b)
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-6), k
    assert not torch.equal(a["align_head.weight"], torch.zeros_like(a["align_head.weight"]))


def test_previous_single_file_checkpoint_still_resumes(tmp_path, micro_dir, caplog):
    """The layout before checkpoint-<step>/: one checkpoint.safetensors at the top of the run."""
    import shutil

    cfg = _cfg(micro_dir, tmp_path / "run", save_steps=2)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, kill_after_steps=3)
    run = tmp_path / "run"
    shutil.move(run / "checkpoint-2" / "checkpoint.safetensors", run / "checkpoint.safetensors")
    shutil.rmtree(run / "checkpoint-2")
    caplog.set_level("INFO", logger="actlab")
    train(cfg)
    assert "from step 2" in caplog.text
    assert not (run / "checkpoint.safetensors").exists()  # replaced by checkpoint-<step>/ at the next save
    ref = train(_cfg(micro_dir, tmp_path / "ref", save_steps=2))
    a, b = load_file(run / "heads" / "iav_heads.safetensors"), load_file(ref / "heads" / "iav_heads.safetensors")
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-6), k
