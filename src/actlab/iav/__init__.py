"""IAV (Inference-time Alignment Vectors): configs, the dual-head model, training, decoding, evaluation.

    from actlab.iav import TrainConfig, IAVModel, EvalConfig, train, evaluate
    run_dir = train(TrainConfig(model_name_or_path="tiny", dataset="syn_hh", ...))
    iav = IAVModel.from_pretrained(run_dir / "heads"); iav.generate(["..."], alpha=1.0)
    results = evaluate(EvalConfig(heads=str(run_dir)))

Imported lazily, so ``import actlab.iav.config`` stays cheap. ``evaluate`` is the :mod:`actlab.iav.evaluate` module,
callable as its :func:`~actlab.iav.evaluate.evaluate`; ``actlab iav evaluate`` (with baseline training) is
:func:`actlab.iav.verbs.evaluate` of an :class:`IAVEvaluateConfig`.
"""

from __future__ import annotations

from actlab.core.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "TrainConfig": "config",
        "LossConfig": "config",
        "CacheConfig": "config",
        "IAVGenerateConfig": "config",
        "IAVDemoConfig": "config",
        "EvalConfig": "evaluate",
        "IAVEvaluateConfig": "verbs",
        "IAVModel": "model",
        "train": "trainer",
        "evaluate": "evaluate",
        "generate_iav": "generate",
    },
    globals(),
)
