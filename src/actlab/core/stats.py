"""Statistics over runs: mean ± 95 % confidence interval (Student t) and paired differences between methods.

Every table that compares methods reports, for each cell, the mean over runs ± the half-width of the two-sided
t-interval, ``t_{0.975, n−1} · s / √n`` with ``s`` the sample standard deviation (``ddof=1``). Two methods evaluated on
the same runs (same seeds, same data) are compared by the **paired** difference ``a_r − b_r`` over runs ``r`` and its
t-interval, which removes the run-to-run variation both share.

>>> ci = mean_ci([0.70, 0.74, 0.72])
>>> round(ci.mean, 3), round(ci.half, 4), ci.n
(0.72, 0.0497, 3)
>>> fmt_ci([0.70, 0.74, 0.72], scale=100)
'72.0 ± 5.0'
>>> fmt_diff([0.80, 0.83, 0.81], [0.70, 0.74, 0.72], scale=100)
'+9.3 ± 1.4'

Non-finite values and ``None`` are dropped (a pair is dropped when either side is missing). With one value the
interval is undefined: the half-width is NaN and formatting shows ``(n=1)`` instead of a ± part.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

LEVEL = 0.95


@dataclass(frozen=True)
class CI:
    """A mean and its two-sided confidence interval ``[lo, hi] = mean ∓ half`` over ``n`` values."""

    mean: float
    half: float
    n: int
    level: float = LEVEL

    @property
    def lo(self) -> float:
        return self.mean - self.half

    @property
    def hi(self) -> float:
        return self.mean + self.half

    def excludes_zero(self) -> bool:
        """True when the interval lies entirely on one side of 0 (a paired difference that is significant)."""
        return math.isfinite(self.half) and (self.lo > 0 or self.hi < 0)

    def as_dict(self, scale: float = 1.0) -> dict:
        return {"mean": self.mean * scale, "ci95": self.half * scale, "n": self.n}


def _finite(values: Sequence[float | None]) -> list[float]:
    out = []
    for v in values:
        if v is None:
            continue
        f = float(v)
        if math.isfinite(f):
            out.append(f)
    return out


def t_quantile(n: int, level: float = LEVEL) -> float:
    """``t_{(1+level)/2, n−1}`` (NaN for n < 2)."""
    if n < 2:
        return float("nan")
    from scipy.stats import t

    return float(t.ppf((1 + level) / 2, n - 1))


def mean_ci(values: Sequence[float | None], level: float = LEVEL) -> CI:
    """Mean ± t-interval half-width over the finite values (``CI(nan, nan, 0)`` for none)."""
    v = _finite(values)
    if not v:
        return CI(float("nan"), float("nan"), 0, level)
    a = np.asarray(v)
    if len(v) < 2:
        return CI(float(a.mean()), float("nan"), 1, level)
    half = t_quantile(len(v), level) * float(a.std(ddof=1)) / math.sqrt(len(v))
    return CI(float(a.mean()), half, len(v), level)


def paired(a: Sequence[float | None], b: Sequence[float | None]) -> tuple[list[float], list[float]]:
    """The pairs ``(a_r, b_r)`` where both are finite (``a`` and ``b`` indexed by the same runs)."""
    if len(a) != len(b):
        raise ValueError(f"paired values need the same runs; got {len(a)} and {len(b)} values")
    keep = [(float(x), float(y)) for x, y in zip(a, b) if _finite([x]) and _finite([y])]
    return [x for x, _ in keep], [y for _, y in keep]


def paired_diff(a: Sequence[float | None], b: Sequence[float | None], level: float = LEVEL) -> CI:
    """Mean of ``a_r − b_r`` over the runs where both exist, with its t-interval."""
    x, y = paired(a, b)
    return mean_ci([p - q for p, q in zip(x, y)], level)


def fmt(ci: CI, scale: float = 1.0, digits: int = 1, sign: bool = False) -> str:
    """``"72.3 ± 4.1"``; ``"72.3 (n=1)"`` with one value; ``"—"`` with none; ``sign=True`` writes ``+3.2 ± 1.0``."""
    if ci.n == 0:
        return "—"
    m = f"{ci.mean * scale:+.{digits}f}" if sign else f"{ci.mean * scale:.{digits}f}"
    if not math.isfinite(ci.half):
        return f"{m} (n={ci.n})"
    return f"{m} ± {ci.half * scale:.{digits}f}"


def fmt_ci(values: Sequence[float | None], scale: float = 1.0, digits: int = 1, level: float = LEVEL) -> str:
    """:func:`mean_ci` formatted by :func:`fmt`."""
    return fmt(mean_ci(values, level), scale, digits)


def fmt_diff(
    a: Sequence[float | None], b: Sequence[float | None], scale: float = 1.0, digits: int = 1, level: float = LEVEL
) -> str:
    """:func:`paired_diff` formatted with a sign (``"+9.3 ± 1.4"``)."""
    return fmt(paired_diff(a, b, level), scale, digits, sign=True)


def widest_half(cis: Sequence[CI]) -> float:
    """The largest finite half-width among ``cis`` (NaN if none): for "CIs are at most ±x" statements."""
    h = [c.half for c in cis if math.isfinite(c.half)]
    return max(h) if h else float("nan")
