"""The IAV demo's table over seeds: t intervals over seeds and differences paired by seed (checked with scipy)."""

import pytest
from scipy import stats as sps

from actlab.iav.demo import plot_seeds, seed_table, summarize_seeds


def test_summary_over_seeds(tmp_path):
    base = [0.20, 0.10, 0.25]
    iav0 = [0.80, 0.85, 0.90]
    iav2 = [0.95, 0.97, 1.00]
    dpo = [0.30, 0.40, 0.20]

    def res(i):
        rows = [
            ("base", "base", 0.0, base),
            ("iav@0", "iav", 0.0, iav0),
            ("iav@2", "iav", 2.0, iav2),
            ("dpo", "dpo", 0.0, dpo),
        ]
        return {
            "num_prompts": 10,
            "methods": [
                {"method": m, "kind": k, "alpha": a, "reward": v[i], "kl_ref": 0.1, "win_rate_vs_base": 0.5}
                for m, k, a, v in rows
            ],
        }

    sm = summarize_seeds({s: res(s) for s in range(3)})
    by = {r["method"]: r for r in sm["methods"]}
    lo, hi = sps.ttest_1samp(iav2, 0).confidence_interval(0.95)
    assert by["iav@2"]["reward_ci95"] == pytest.approx((hi - lo) / 2)
    lo, hi = sps.ttest_rel(iav2, iav0).confidence_interval(0.95)
    assert by["iav@2"]["diff_vs_alpha0"] == pytest.approx((lo + hi) / 2)
    assert by["iav@2"]["diff_vs_alpha0_ci95"] == pytest.approx((hi - lo) / 2)
    lo, hi = sps.ttest_rel(dpo, base).confidence_interval(0.95)
    assert by["dpo"]["diff_vs_base_ci95"] == pytest.approx((hi - lo) / 2)
    assert "diff_vs_alpha0" not in by["iav@0"] and "diff_vs_base" not in by["base"]
    text = seed_table(sm)
    assert "| iav@2 | 2 | 0.973 ± " in text and "Over 3 seeds" in text
    assert plot_seeds(sm, tmp_path / "p.png").stat().st_size > 1000
