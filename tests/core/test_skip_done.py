"""Skip-done by fingerprint: a finished run is returned only for the same config; another config is an error listing
the fields that differ (nothing written), ``overwrite`` redoes it, fields that do not change results never count."""

import json

import pytest

from actlab.core.io import ConfigMismatch, read_jsonl

DS = "syn_sst2_remap"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from actlab.core.testing import micro_model, micro_tokenizer
    from actlab.data import make_train, prepare

    root = tmp_path_factory.mktemp("skip")
    tok = micro_tokenizer()
    micro_model("llama", tok).save_pretrained(root / "llama")
    tok.save_pretrained(root / "llama")
    prepare("syn_sst2", root / "data", num_train_samples=20, num_val_samples=4, label_template="remap")
    make_train(DS, root / "data", num_train_examples=[4], num_runs=1, max_icl_demos=2)
    return root


def _snapshot(path):
    return {p.name: p.stat().st_mtime_ns for p in path.iterdir()}


def test_ia2_finished_run_of_another_config(world, tmp_path):
    from actlab.ia2 import IA2TrainConfig
    from actlab.ia2.trainer import train

    def cfg(**kw):
        base = dict(
            dataset=DS,
            model_id=str(world / "llama"),
            data_dir=str(world / "data"),
            output_dir=str(tmp_path),
            num_train_examples=4,
            max_steps=2,
            lr=1e-2,
            lora_r=4,
            lora_alpha=8,
        )
        return IA2TrainConfig("act", **{**base, **kw})

    path = train(cfg())
    before = _snapshot(path)
    assert train(cfg(checkpoint_every=1, micro_batch_size=2)) == path and _snapshot(path) == before  # same result
    with pytest.raises(
        ConfigMismatch,
        match=r"holds a finished run with another config \(patience: 5 -> 2; "
        r"max_steps: 2 -> 3\); use --overwrite",
    ):
        train(cfg(max_steps=3, patience=2))  # same run name, other budget: never returned as if it were the one
    assert _snapshot(path) == before  # nothing written
    train(cfg(max_steps=3, overwrite=True))
    assert [r["step"] for r in read_jsonl(path / "metrics.jsonl")] == [1, 2, 3]
    assert json.loads((path / "config.json").read_text())["max_steps"] == 3
    before = _snapshot(path)
    assert train(cfg(max_steps=3, overwrite=True)) == path and _snapshot(path) == before  # same config: kept
    train(cfg(max_steps=3, force=True))  # --force always retrains
    assert _snapshot(path)["COMPLETE"] != before["COMPLETE"]


def test_icae_finished_run_of_another_config(world, tmp_path):
    from actlab.icae import data, trainer
    from actlab.icae.config import ICAEConfig

    def cfg(**kw):
        base = dict(
            model_name=str(world / "llama"),
            output_dir=str(tmp_path),
            fixed_mem_size=4,
            mean_compression_rate=2,
            lora_r=4,
            max_seq_len=64,
            num_train_samples=8,
            max_steps=2,
            save_steps=1,
            logging_steps=1,
            per_device_train_batch_size=2,
            warmup_steps=1,
            device="cpu",
        )
        return ICAEConfig(**{**base, **kw})

    data.prepare_pretrain(cfg())
    trainer.pretrain(cfg())
    assert trainer.pretrain(cfg(logging_steps=2, task="qa"))["skipped"]  # logging cadence, task: not pretraining's
    with pytest.raises(ConfigMismatch, match=r"learning_rate: 0.001 -> 0.01"):
        trainer.pretrain(cfg(learning_rate=1e-2))
    info = trainer.pretrain(cfg(learning_rate=1e-2, overwrite=True))
    assert not info.get("skipped") and info["step"] == 2


def test_iav_finished_run_of_another_config(world, tmp_path):
    from actlab.iav.config import LossConfig, TrainConfig
    from actlab.iav.trainer import train

    def cfg(**kw):
        base = dict(
            model_name_or_path=str(world / "llama"),
            output_dir=str(tmp_path / "run"),
            num_train_samples=8,
            num_val_samples=0,
            batch_size=4,
            seq_length=48,
            max_prompt_length=24,
            max_steps=2,
            device="cpu",
        )
        return TrainConfig(**{**base, **kw})

    out = train(cfg())
    before = _snapshot(out)
    assert train(cfg(save_steps=1, eval_steps=1)) == out and _snapshot(out) == before
    with pytest.raises(ConfigMismatch, match=r"loss.beta: 0.1 -> 0.5"):
        train(cfg(loss=LossConfig(beta=0.5)))
    train(cfg(loss=LossConfig(beta=0.5), overwrite=True))
    assert json.loads((out / "config.json").read_text())["loss"]["beta"] == 0.5


def test_trained_runs_are_readable_under_the_umask(world, tmp_path):
    """Every file of a trained IA2 run and of a zoo build is 0644 under umask 022 (safetensors alone writes 0600)."""
    import os
    import stat

    from actlab.ia2 import IA2TrainConfig
    from actlab.ia2.trainer import train
    from actlab.zoo.build import build
    from tests.core.kill_driver import zoo_spec

    old = os.umask(0o022)
    try:
        run = train(
            IA2TrainConfig(
                "act",
                dataset=DS,
                model_id=str(world / "llama"),
                data_dir=str(world / "data"),
                output_dir=str(tmp_path),
                num_train_examples=4,
                max_steps=1,
            )
        )
        zoo = build(zoo_spec(), tmp_path / "models" / "micro")
    finally:
        os.umask(old)
    files = [p for d in (run, zoo) for p in d.iterdir() if p.is_file()]
    assert any(p.name == "adapter_model.safetensors" for p in files) and any(
        p.name == "model.safetensors" for p in files
    )
    assert {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in files} == {p.name: "0o644" for p in files}
