"""The TRL-trained baselines (DPO with ``trl.DPOTrainer``, GenARM's ARM with TRL's CPO trainer) on a micro model:
a couple of steps, weights saved as a loadable safetensors model, a rerun skips."""

import json

import pytest
import torch
from safetensors.torch import load_file


@pytest.mark.parametrize("method", ["dpo", "arm"])
def test_trl_baseline_trains_saves_and_skips_rerun(tmp_path, micro_dir, method, monkeypatch, capsys, caplog):
    import logging

    monkeypatch.setenv("ACTLAB_QUIET", "1")
    from actlab.core.models import load
    from actlab.iav.baselines import train_arm, train_dpo
    from actlab.iav.data import load_rows

    rows = load_rows("syn_hh", "train", 8)
    fn = train_dpo if method == "dpo" else train_arm
    capsys.readouterr()
    with caplog.at_level(logging.INFO, logger="actlab"):
        out = fn(micro_dir, rows, tmp_path / method, max_steps=2, batch_size=4, learning_rate=1e-2, max_length=48)
    assert out == tmp_path / method
    # the trainer's log dicts are info lines of actlab's logger, not prints on stdout (which carries results)
    assert "train_loss" not in capsys.readouterr().out
    lines = [r.getMessage() for r in caplog.records if r.name == "actlab.iav.baselines"]
    assert any(m.startswith(f"{info_name(method)} step 2: ") and "train_loss" in m for m in lines), lines
    assert (out / "model.safetensors").exists() and (out / "config.json").exists()
    assert not (tmp_path / f"{method}.tmp").exists() and not (tmp_path / f"{method}.trl").exists()
    info = json.loads((out / "actlab_baseline.json").read_text())
    assert info["method"] == info_name(method) and info["max_steps"] == 2
    # the whole model was trained: its weights moved off the initial model's
    lm0, _ = load(micro_dir)
    trained = load_file(out / "model.safetensors")
    moved = [n for n, p in lm0.named_parameters() if n in trained and not torch.equal(trained[n], p.detach())]
    assert len(moved) >= len(trained) // 2, f"only {len(moved)} of {len(trained)} tensors changed"
    lm, tok = load(str(out))  # a plain HF model directory that actlab loads
    assert lm.get_output_embeddings().weight.shape[0] == len(tok)
    # a rerun finds the saved model and does not train again
    stamp = (out / "model.safetensors").stat().st_mtime_ns
    assert fn(micro_dir, rows, out, max_steps=2, batch_size=4, max_length=48) == out
    assert (out / "model.safetensors").stat().st_mtime_ns == stamp


def info_name(method: str) -> str:
    return "dpo" if method == "dpo" else "genarm_arm"
