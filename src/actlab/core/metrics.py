"""Metrics shared by the families: calibration (ECE, reliability bins), label-set accuracy, entropy, mean ± std.

>>> round(ece([0.9, 0.8, 0.6, 0.3], [1, 1, 0, 0], n_bins=2), 3)
0.3

ECE uses **equal-count** bins over the examples sorted by confidence, ``ECE = Σ_b (|b| / n) · |acc_b − conf_b|``.
Two binnings are offered (``binning=``):

* ``"ia2"`` (default; the IA2 reference's rule): ``n // n_bins`` examples per bin, the remainder in the last bin;
  with fewer than ``n_bins`` examples a single bin holds them all. For n = 500 and 15 bins: 14 bins of 33 and one of
  38.
* ``"array_split"``: ``numpy.array_split`` (the first ``n % n_bins`` bins get one extra example; fewer examples than
  bins give one example per bin).

The two agree whenever ``n % n_bins == 0``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _arr(x) -> np.ndarray:
    return np.asarray(list(x) if not isinstance(x, np.ndarray) else x, dtype=np.float64)


BINNINGS = ("ia2", "array_split")


def _chunks(order: np.ndarray, n_bins: int, binning: str) -> list[np.ndarray]:
    if binning == "array_split":
        return np.array_split(order, n_bins)
    if binning != "ia2":
        raise ValueError(f"binning must be one of {', '.join(BINNINGS)}; got {binning!r}")
    size = order.size // n_bins
    if size == 0:
        return [order]
    return [order[i * size : (i + 1) * size] for i in range(n_bins - 1)] + [order[(n_bins - 1) * size :]]


def calibration_bins(
    confidences: Sequence[float], correct: Sequence[float | bool], n_bins: int = 15, binning: str = "ia2"
) -> list[dict]:
    """Equal-count bins over the sorted confidences: ``[{"count", "confidence", "accuracy", "lo", "hi"}]``.

    ``binning``: ``"ia2"`` (``n // n_bins`` per bin, remainder in the last, one bin below ``n_bins`` examples) or
    ``"array_split"`` (see the module docstring). Empty bins are dropped. Ties in confidence keep the original order
    (stable sort).
    """
    conf, corr = _arr(confidences), _arr(correct)
    if conf.shape != corr.shape:
        raise ValueError(f"{conf.size} confidences but {corr.size} correctness values")
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    order = np.argsort(conf, kind="stable")
    bins = []
    for chunk in _chunks(order, n_bins, binning):
        if chunk.size == 0:
            continue
        c = conf[chunk]
        bins.append(
            {
                "count": int(chunk.size),
                "confidence": float(c.mean()),
                "accuracy": float(corr[chunk].mean()),
                "lo": float(c.min()),
                "hi": float(c.max()),
            }
        )
    return bins


def ece(
    confidences: Sequence[float], correct: Sequence[float | bool], n_bins: int = 15, binning: str = "ia2"
) -> float:
    """Expected calibration error with ``n_bins`` equal-count bins (NaN for no examples); ``binning`` as above."""
    bins = calibration_bins(confidences, correct, n_bins, binning)
    n = sum(b["count"] for b in bins)
    if n == 0:
        return float("nan")
    return float(sum(b["count"] / n * abs(b["accuracy"] - b["confidence"]) for b in bins))


def label_set_accuracy(label_probs: Sequence[Sequence[float]], gold: Sequence[int]) -> float:
    """Share of examples whose gold label has the highest probability among the label set.

    ``label_probs[i][j]`` is the probability of label ``j``'s first token for example ``i``. As in the IA2 reference,
    the gold label counts as correct when its probability is ≥ every other label's, so a tie at the top counts as
    correct for every tied label.
    """
    p = _arr([list(r) for r in label_probs]) if len(label_probs) else np.zeros((0, 0))
    g = np.asarray(list(gold), dtype=np.int64)
    if p.shape[0] != g.shape[0]:
        raise ValueError(f"{p.shape[0]} probability rows but {g.shape[0]} gold labels")
    if g.size == 0:
        return float("nan")
    if g.min() < 0 or g.max() >= p.shape[1]:
        raise ValueError(f"gold labels must lie in [0, {p.shape[1]}); got {g.min()}..{g.max()}")
    gold_p = p[np.arange(g.size), g]
    return float((gold_p >= p.max(axis=1)).mean())


def entropy(probs: Sequence[float], renormalize: bool = True) -> float:
    """Shannon entropy (nats) of ``probs`` (renormalised to sum 1 first by default); zeros contribute 0."""
    p = _arr(probs)
    s = p.sum()
    if renormalize and s > 0:
        p = p / s
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def accuracy(flags: Sequence[bool | float]) -> float:
    a = _arr(flags)
    return float(a.mean()) if a.size else float("nan")
