"""IA2 (ICL Activation Alignment): configs, training, sweeps, evaluation.

    from actlab.ia2 import IA2TrainConfig, EvalConfig, train, evaluate, sweep
    run_dir = train(IA2TrainConfig(training_method="act", dataset="syn_sst2", model_id="tiny", ...))
    result_paths = evaluate(EvalConfig(model_types=["base", "act"]))

IA2 has no model class of its own: an adapter is a PEFT model (LoRA, IA3, prompt or prefix tuning) on the base LM.
Imported lazily, so ``import actlab.ia2.config`` stays cheap. ``evaluate`` is the :mod:`actlab.ia2.evaluate` module,
callable as its :func:`~actlab.ia2.evaluate.evaluate`.
"""

from __future__ import annotations

from actlab.core.lazy import lazy_exports


def train(cfg, model=None, tok=None, return_model: bool = False):
    """Train one run and return its directory: see :func:`actlab.ia2.trainer.train`."""
    from actlab.ia2.trainer import train as _train

    return _train(cfg, model=model, tok=tok, return_model=return_model)


def sweep(cfg):
    """See :func:`actlab.ia2.sweep.sweep`."""
    from actlab.ia2.sweep import sweep as _sweep

    return _sweep(cfg)


__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "METHODS": "config",
        "SEED_METHODS": "config",
        "IA2TrainConfig": "config",
        "EvalConfig": "evaluate",
        "evaluate": "evaluate",
        "PlotConfig": "verbs",
        "plot": "verbs",
    },
    globals(),
)
