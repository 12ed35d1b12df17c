"""ICAE (In-Context AutoEncoder): config, the model (and the full-context SimpleLLM baseline), training, inference.

    from actlab.icae import ICAEConfig, ICAE, train, evaluate
    run_dir = train(ICAEConfig(task="ae", ...))        # task ae: AE + LM pretraining -> <output_dir>/pretrain
    run_dir = train(ICAEConfig(task="qa", checkpoint_path=str(run_dir / "icae.safetensors"), ...))  # fine-tuning
    summary = evaluate(ICAEConfig(task="qa", checkpoint_path=...))   # = actlab icae infer

Imported lazily, so ``import actlab.icae.config`` stays cheap.
"""

from __future__ import annotations

from pathlib import Path

from actlab.core.lazy import lazy_exports


def train(cfg) -> Path:
    """Train the stage ``cfg.task`` names and return its run directory: ``ae`` is the AE + LM pretraining
    (:func:`actlab.icae.trainer.pretrain`, ``<output_dir>/pretrain``); ``qa``, ``repoqa`` and ``trajectories`` are
    fine-tuning (:func:`actlab.icae.trainer.finetune`, ``<output_dir>/finetune_<task>[_llm]``). A finished run of the
    same config is returned as it is."""
    from actlab.icae.trainer import finetune, finetune_subdir, pretrain

    if cfg.task == "ae":
        pretrain(cfg)
        return Path(cfg.output_dir) / "pretrain"
    finetune(cfg)
    return Path(cfg.output_dir) / finetune_subdir(cfg)


def evaluate(cfg) -> dict:
    """``actlab icae infer``: run ``cfg.task`` and write predictions and metrics; see
    :func:`actlab.icae.infer.run_infer`."""
    from actlab.icae.infer import run_infer

    return run_infer(cfg)


__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "ICAEConfig": "config",
        "ICAEDemoConfig": "config",
        "ICAE": "model",
        "SimpleLLM": "model",
        "pretrain": "trainer",
        "finetune": "trainer",
    },
    globals(),
)
