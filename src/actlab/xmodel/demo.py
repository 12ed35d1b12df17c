"""``actlab xmodel demo``: the whole pipeline on the zoo pair ``tiny`` (A, 4 layers, d = 128) → ``tiny-b`` (B, 3
layers, d = 96), small enough for a laptop CPU. Prints the CKA heatmap, the held-out map table and the
communication table with compute; everything lands in the run directory (see :mod:`actlab.xmodel.experiments`)."""

from __future__ import annotations

from pathlib import Path

from actlab.xmodel.config import XModelConfig
from actlab.xmodel.experiments import format_results, run_all

DEMO = dict(n_texts=600, heldout=0.25, n_eval=100, n_dev=40, epochs=100, task="syn_countries", max_new_tokens=12,
            message_tokens=12)


def demo(out_dir: str | Path, **overrides) -> str:
    """Run the demo into ``out_dir`` (resumable) and return the markdown tables (``overrides``: config fields)."""
    cfg = XModelConfig(**{"model_a": "tiny", "model_b": "tiny-b", **DEMO, **overrides})
    res = run_all(cfg, out_dir)
    return format_results(res)
