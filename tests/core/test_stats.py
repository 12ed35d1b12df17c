"""Mean ± 95 % t-interval and paired differences against textbook values and scipy's own t-tests."""

import math

import numpy as np
import pytest
from scipy import stats as sps

from actlab.core import stats as S


def test_mean_ci_textbook_values():
    v = [0.70, 0.74, 0.72]
    ci = S.mean_ci(v)
    # t_{0.975, 2} = 4.302653 (tables); s = 0.02; half = 4.302653 * 0.02 / sqrt(3)
    assert ci.mean == pytest.approx(0.72)
    assert ci.half == pytest.approx(4.302653 * 0.02 / math.sqrt(3), rel=1e-6)
    assert (ci.lo, ci.hi) == (pytest.approx(0.72 - ci.half), pytest.approx(0.72 + ci.half))
    assert S.t_quantile(31) == pytest.approx(2.042272, rel=1e-6)  # t_{0.975, 30}
    assert S.fmt_ci(v, scale=100) == "72.0 ± 5.0"


def test_mean_ci_agrees_with_scipy_one_sample_interval():
    rng = np.random.default_rng(0)
    for n in (2, 5, 17):
        v = rng.normal(3.0, 2.0, n)
        lo, hi = sps.ttest_1samp(v, 0.0).confidence_interval(0.95)
        ci = S.mean_ci(v)
        assert (ci.lo, ci.hi) == (pytest.approx(lo), pytest.approx(hi))


def test_paired_diff_agrees_with_scipy_paired_t_and_beats_unpaired():
    rng = np.random.default_rng(1)
    shared = rng.normal(0.6, 0.15, 8)  # run-to-run variation both methods share
    a = shared + 0.03 + rng.normal(0, 0.01, 8)
    b = shared
    lo, hi = sps.ttest_rel(a, b).confidence_interval(0.95)
    d = S.paired_diff(a, b)
    assert (d.lo, d.hi) == (pytest.approx(lo), pytest.approx(hi))
    assert d.excludes_zero()
    # the unpaired intervals overlap: only the paired difference tells the methods apart
    ca, cb = S.mean_ci(a), S.mean_ci(b)
    assert ca.lo < cb.hi
    assert S.fmt_diff(a, b, scale=100).startswith("+")


def test_missing_values_and_degenerate_cases():
    assert S.mean_ci([None, float("nan")]).n == 0
    assert S.fmt_ci([]) == "—"
    one = S.mean_ci([0.5, None])
    assert one.n == 1 and math.isnan(one.half) and S.fmt(one, 100) == "50.0 (n=1)"
    # a pair is dropped when either side is missing
    d = S.paired_diff([1.0, 2.0, None, 4.0], [0.5, None, 3.0, 3.0])
    assert d.n == 2 and d.mean == pytest.approx(0.75)
    with pytest.raises(ValueError):
        S.paired_diff([1.0], [1.0, 2.0])
    assert S.mean_ci([0.3, 0.3, 0.3]).half == pytest.approx(0.0)
    assert S.widest_half([S.mean_ci([1, 2]), one]) == pytest.approx(S.mean_ci([1, 2]).half)
