"""The SimpleLLM baseline fine-tuned (``model_type: llm``): a decoder LoRA on the full context, same loss positions."""

import torch

from actlab.core.io import read_jsonl
from actlab.icae import infer, trainer
from actlab.icae.model import SimpleLLM
from tests.icae.test_pipeline import _cfg


def _llm(micro_tok, cfg, seed=0):
    from actlab.core.testing import micro_model

    return SimpleLLM(micro_model("llama", micro_tok, seed=seed), micro_tok, cfg)


def test_llm_rows_score_the_target_tokens_only(micro_tok, tmp_path):
    cfg = _cfg(tmp_path, model_type="llm")
    llm = _llm(micro_tok, cfg)
    tgt = micro_tok(" rome", add_special_tokens=False)["input_ids"] + [micro_tok.eos_token_id]
    pre = llm.rows(
        ["bob is in rome", "the cat is red and the dog is blue"], ["\nQuestion: where ?\nAnswer:"] * 2, [tgt, tgt]
    )
    for i in range(2):
        lab = pre.labels[i]
        assert lab[lab != -100].tolist() == tgt and lab[-len(tgt) :].tolist() == tgt
    # the loss is the mean CE over those positions (against a hand computation)
    with torch.no_grad():
        logits = llm.model(inputs_embeds=pre.embeds, attention_mask=pre.mask, position_ids=pre.pids).logits
        lp = logits.float().log_softmax(-1)
        n = pre.labels.shape[1]
        nll = [-lp[i, j - 1, pre.labels[i, j]] for i in range(2) for j in range(1, n) if pre.labels[i, j] != -100]
        assert torch.allclose(llm.loss(pre), torch.stack(nll).mean(), atol=1e-5)


def test_llm_finetune_qa_and_trajectories_then_infer(micro_tok, tmp_path):
    for task in ("qa", "trajectories"):
        cfg = _cfg(tmp_path, task=task, model_type="llm", max_steps=3, learning_rate=1e-2)
        llm = _llm(micro_tok, cfg)
        info = trainer.finetune(cfg, llm)
        run = tmp_path / "run" / f"finetune_{task}_llm"
        assert (run / "COMPLETE").exists() and info["weights"] == str(run / "llm.safetensors")
        logged = read_jsonl(run / "metrics.jsonl")
        assert logged[-1]["step"] == 3 and logged[-1]["train/grad_norm"] > 0
        assert trainer.finetune(cfg, _llm(micro_tok, cfg))["skipped"]
        # the saved LoRA changes the model: a fresh base + the checkpoint predicts like the trained one
        fresh = _llm(micro_tok, cfg).load(run)
        trained_out = llm.eval().generate(["bob is in rome"], ["\nQuestion: where is bob ?\nAnswer:"], 6)
        assert fresh.eval().generate(["bob is in rome"], ["\nQuestion: where is bob ?\nAnswer:"], 6) == trained_out
        lora_b = [v for k, v in fresh.trainable_state().items() if "lora_B" in k]
        assert lora_b and any(float(v.abs().max()) > 0 for v in lora_b)  # lora_B starts at 0: it trained
    s = infer.run_infer(_cfg(tmp_path, task="qa", model_type="llm"), fresh)
    assert "qa/em" in s


def test_llm_checkpoint_path_is_checked(micro_tok, tmp_path):
    import pytest

    from actlab.core.errors import ActlabError

    cfg = _cfg(tmp_path, task="qa", model_type="llm", max_steps=1)
    trainer.finetune(cfg, _llm(micro_tok, cfg))
    from actlab.icae.model import ICAE

    icae = ICAE(_llm(micro_tok, cfg).model, micro_tok, _cfg(tmp_path, lora_r=4))
    icae.save(tmp_path / "icae.safetensors")
    # an ICAE config switched to --model_type llm: accepted, and the baseline starts from the base model
    switched = _cfg(tmp_path, task="qa", model_type="llm", checkpoint_path=str(tmp_path / "icae.safetensors"))
    switched.check_inputs()
    assert not trainer._is_llm_checkpoint(switched.checkpoint_path)
    assert trainer._is_llm_checkpoint(str(tmp_path / "run" / "finetune_qa_llm"))
    from actlab.core.io import save_tensors

    save_tensors(tmp_path / "junk.safetensors", {"w": torch.zeros(2)})
    bad = _cfg(tmp_path, task="qa", model_type="llm", checkpoint_path=str(tmp_path / "junk.safetensors"))
    with pytest.raises(ActlabError, match="neither a fine-tuned SimpleLLM"):
        bad.check_inputs()


def test_infer_writes_the_seed_layout(micro_tok, tmp_path, monkeypatch):
    """``predictions_dir: data/predictions`` + ``metrics_dir: data/metrics`` (the seed's paths), through the CLI."""
    import json

    from actlab.cli.main import main

    monkeypatch.chdir(tmp_path)
    cfg = _cfg(tmp_path, task="qa", model_type="llm")
    monkeypatch.setattr(trainer, "build_model", lambda c: _llm(micro_tok, c))
    rc = main(
        [
            "icae",
            "infer",
            "--config_path",
            _write(cfg, tmp_path),
            "--predictions_dir",
            "data/predictions",
            "--metrics_dir",
            "data/metrics",
        ]
    )
    assert rc == 0
    rows = read_jsonl(tmp_path / "data" / "predictions" / "qa_llm.jsonl")
    met = read_jsonl(tmp_path / "data" / "metrics" / "qa_llm.metrics.jsonl")
    assert len(rows) == 4 and met[0]["task"] == "qa" and met[0]["n"] == 4
    assert not (tmp_path / "data" / "predictions" / "qa_llm.metrics.jsonl").exists()
    assert json.loads(json.dumps(met[0]))["model_type"] == "llm"


def _write(cfg, tmp_path):
    p = tmp_path / "cfg.yaml"
    cfg.to_yaml(p)
    return str(p)


def test_icae_config_switched_to_llm_on_the_command_line(micro_tok, tmp_path, monkeypatch, capsys):
    """``actlab icae finetune --config_path <ICAE config> --model_type llm``: the ICAE checkpoint_path is set aside
    (a notice), the baseline fine-tunes from the base model into ``finetune_qa_llm``."""
    from actlab.cli.main import main
    from actlab.core import models
    from actlab.core.testing import micro_model
    from actlab.icae.model import ICAE

    monkeypatch.setattr(models, "load", lambda *a, **k: (micro_model("llama", micro_tok), micro_tok))
    icae = ICAE(micro_model("llama", micro_tok), micro_tok, _cfg(tmp_path))
    icae.save(tmp_path / "icae.safetensors")
    cfg = _cfg(tmp_path, task="qa", max_steps=2, checkpoint_path=str(tmp_path / "icae.safetensors"))
    assert main(["icae", "finetune", "--config_path", _write(cfg, tmp_path), "--model_type", "llm"]) == 0
    assert "holds ICAE weights; model_type llm starts from the base model" in capsys.readouterr().err
    assert (tmp_path / "run" / "finetune_qa_llm" / "llm.safetensors").exists()
