"""Cross-model alignment and activation communication, with the seed's Python names.

    from actlab.xmodel import ProcrustesAlignment, LoRAAdapter, CKA, run_procrustes_experiment
    m = ProcrustesAlignment(use_affine=True).fit(xa, yb); yb_hat = m.transform(xa_test)
    res = run_procrustes_experiment("tiny", "tiny-b", layers=[0, 1, 2])

    from actlab.xmodel import ExtractConfig, AlignConfig, CommunicateConfig, train, evaluate
    from actlab.xmodel.verbs import extract                            # (align, communicate, run_all, demo too)
    pairs = extract(ExtractConfig("tiny", "tiny-b", "out/pairs"))      # paired activations
    map_dir = train(AlignConfig(pairs=str(pairs), out="out/map"))     # fit the map: returns its directory
    res = evaluate(CommunicateConfig("tiny", "tiny-b", map="out/map"))  # activation communication

Each name is the implementation the CLI uses (``actlab xmodel ...``), not a copy: the maps live in
:mod:`actlab.xmodel.align`, the metrics in :mod:`actlab.xmodel.metrics`, the experiments in
:mod:`actlab.xmodel.experiments`, the verbs in :mod:`actlab.xmodel.verbs`. Imported lazily, so
``import actlab.xmodel.config`` stays cheap.
"""

from __future__ import annotations

from pathlib import Path

from actlab.core.lazy import lazy_exports


def train(cfg) -> Path:
    """``actlab xmodel align``: fit and save the map of ``cfg`` (an :class:`AlignConfig`); returns its directory
    (``cfg.out``, with ``scores.json``). :func:`actlab.xmodel.verbs.align` returns the scores instead."""
    from actlab.xmodel.verbs import align

    align(cfg)
    return Path(cfg.out)


def evaluate(cfg) -> dict:
    """``actlab xmodel communicate`` (a :class:`CommunicateConfig`): see :func:`actlab.xmodel.verbs.communicate`."""
    from actlab.xmodel.verbs import communicate

    return communicate(cfg)


__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "XModelConfig": "config",
        "ExtractConfig": "config",
        "AlignConfig": "config",
        "CommunicateConfig": "config",
        "RunAllConfig": "config",
        "XModelDemoConfig": "config",
        "ProcrustesAlignment": "align",
        "LinearAdapter": "align",
        "AffineAdapter": "align",
        "LoRAAdapter": "align",
        "LearnedProjection": "align",
        "LinearMap": "align",
        "fit_map": "align",
        "load_map": "align",
        "TrainConfig": "align",
        "InfoNCE": "metrics",
        "CKA": "metrics",
        "AlignmentUniformity": "metrics",
        "mean_pooling": "metrics",
        "linear_cka": "metrics",
        "train_learned_projection": "experiments",
        "run_procrustes_experiment": "experiments",
        "run_activation_communication_experiment": "experiments",
        "run_lora_adapter_experiment": "experiments",
        "run_linear_adapter_experiment": "experiments",
        "run_affine_adapter_experiment": "experiments",
        "run_all": "experiments",
        "text_similarity": "communicate",
    },
    globals(),
)
