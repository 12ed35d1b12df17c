"""Cross-model alignment and activation communication, with the seed's Python names.

    from actlab.xmodel import ProcrustesAlignment, LoRAAdapter, CKA, run_procrustes_experiment
    m = ProcrustesAlignment(use_affine=True).fit(xa, yb); yb_hat = m.transform(xa_test)
    res = run_procrustes_experiment("tiny", "tiny-b", layers=[0, 1, 2])

Each name is the implementation the CLI uses (``actlab xmodel ...``), not a copy: the maps live in
:mod:`actlab.xmodel.align`, the metrics in :mod:`actlab.xmodel.metrics`, the experiments in
:mod:`actlab.xmodel.experiments`. Imported lazily, so ``import actlab.xmodel.config`` stays cheap.
"""

from __future__ import annotations

import importlib

_WHERE = {
    "ProcrustesAlignment": "align", "LinearAdapter": "align", "AffineAdapter": "align", "LoRAAdapter": "align",
    "LearnedProjection": "align", "LinearMap": "align", "fit_map": "align", "load_map": "align",
    "TrainConfig": "align",
    "InfoNCE": "metrics", "CKA": "metrics", "AlignmentUniformity": "metrics", "mean_pooling": "metrics",
    "linear_cka": "metrics",
    "train_learned_projection": "experiments", "run_procrustes_experiment": "experiments",
    "run_activation_communication_experiment": "experiments", "run_lora_adapter_experiment": "experiments",
    "run_linear_adapter_experiment": "experiments", "run_affine_adapter_experiment": "experiments",
    "run_all": "experiments",
    "text_similarity": "communicate",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(f"actlab.xmodel.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'actlab.xmodel' has no attribute {name!r}")


def __dir__():
    return __all__
