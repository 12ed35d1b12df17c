"""IA2 tables: mean ± 95 % CI over runs and method-vs-method paired differences, against scipy's t intervals."""

import numpy as np
import pytest
from scipy import stats as sps

from actlab.ia2.plots import ICL, Experiment, format_paired, format_table, paired_rows, summary_rows


def _doc(method, run, acc, with_icl=False):
    m = {"accuracy": acc, "ece": 0.1, "label_accuracy": acc, "entropy": 0.5}
    return {
        "config": {"model_type": method, "run_idx": run},
        "with_icl": m if with_icl else None,
        "without_icl": None if with_icl else m,
    }


def _exp():
    icl = [0.60, 0.70, 0.65, 0.72]
    sft = [0.62, 0.69, 0.70, 0.75]
    ia2 = [0.66, 0.74, 0.71, 0.80]
    exp = Experiment("d", "d", "d", 3, "m")
    exp.entries = {
        ICL: {4: [_doc("base", r, a, True) for r, a in enumerate(icl)]},
        "tok": {4: [_doc("tok", r, a) for r, a in enumerate(sft)]},
        # one act run missing: pairs use the runs both have
        "act": {4: [_doc("act", r, a) for r, a in enumerate(ia2) if r != 2]},
    }
    return exp, icl, sft, ia2


def test_summary_rows_are_t_intervals():
    exp, icl, sft, _ = _exp()
    rows = {r["method"]: r for r in summary_rows(exp)}
    lo, hi = sps.ttest_1samp(sft, 0).confidence_interval(0.95)
    assert (rows["tok"]["accuracy"].lo, rows["tok"]["accuracy"].hi) == (pytest.approx(lo), pytest.approx(hi))
    assert rows["act"]["runs"] == 3
    t = format_table(summary_rows(exp))
    assert f"{100 * np.mean(sft):.1f} ± {100 * (hi - lo) / 2:.1f}" in t


def test_paired_rows_pair_by_run_index():
    exp, icl, sft, ia2 = _exp()
    rows = {(r["method"], r["vs"]): r for r in paired_rows(exp)}
    keep = [0, 1, 3]
    lo, hi = sps.ttest_rel([ia2[i] for i in keep], [sft[i] for i in keep]).confidence_interval(0.95)
    d = rows[("act", "SFT")]["diff"]
    assert rows[("act", "SFT")]["runs"] == 3
    assert (d.lo, d.hi) == (pytest.approx(lo), pytest.approx(hi))
    lo, hi = sps.ttest_rel(sft, icl).confidence_interval(0.95)
    d = rows[("tok", "ICL (base + demos)")]["diff"]
    assert (d.lo, d.hi) == (pytest.approx(lo), pytest.approx(hi))
    # IA2 beats SFT on every shared run by 4-5 points: the paired CI excludes 0 and is starred
    text = format_paired(paired_rows(exp))
    line = next(x for x in text.splitlines() if x.startswith("IA2 ") and " SFT " in x)
    assert "+4.7 ± " in line and line.rstrip().endswith("*")
