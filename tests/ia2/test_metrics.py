"""ECE, label-set accuracy, entropy and the single-token scoring on hand-computed cases."""

import math

import numpy as np
import pytest
import torch

from actlab.core.metrics import calibration_bins, ece, entropy, label_set_accuracy


def test_ece_equal_count_bins_by_hand():
    # sorted confidences .3 .6 | .8 .9 ; accuracy 0 0 | 1 1 -> .5*|0-.45| + .5*|1-.85| = .3
    assert ece([0.9, 0.8, 0.6, 0.3], [1, 1, 0, 0], n_bins=2) == pytest.approx(0.3)
    # equal-count (not equal-width): 5 examples in 2 bins -> sizes 3 and 2 (numpy.array_split)
    conf = [0.95, 0.91, 0.92, 0.2, 0.1]
    corr = [1, 0, 1, 0, 1]
    bins = calibration_bins(conf, corr, n_bins=2, binning="array_split")
    assert [b["count"] for b in bins] == [3, 2]
    # bin 1: conf (.1+.2+.91)/3 = .40333, acc (1+0+0)/3 ; bin 2: conf .935, acc 1
    exp = 3 / 5 * abs(1 / 3 - 1.21 / 3) + 2 / 5 * abs(1 - 0.935)
    assert ece(conf, corr, n_bins=2, binning="array_split") == pytest.approx(exp)
    # the IA2 rule: 5 // 2 = 2 per bin, the remainder in the last -> sizes 2 and 3
    assert [b["count"] for b in calibration_bins(conf, corr, n_bins=2)] == [2, 3]
    # bin 1: .1(1) .2(0): conf .15, acc .5 ; bin 2: .91(0) .92(1) .95(1): conf 2.78/3, acc 2/3
    exp = 2 / 5 * abs(0.5 - 0.15) + 3 / 5 * abs(2 / 3 - 2.78 / 3)
    assert ece(conf, corr, n_bins=2) == pytest.approx(exp)
    # perfectly calibrated in every bin -> 0; one bin -> |mean acc - mean conf|
    assert ece([1.0, 1.0, 0.0, 0.0], [1, 1, 0, 0], n_bins=2) == pytest.approx(0.0)
    assert ece([0.7, 0.9], [1, 0], n_bins=1) == pytest.approx(abs(0.5 - 0.8))
    # array_split with fewer examples than bins: empty bins are dropped, each example its own bin
    assert ece([0.5, 0.25], [1, 0], n_bins=15, binning="array_split") == pytest.approx(0.5 * 0.5 + 0.5 * 0.25)
    # the IA2 rule: one bin below 15 examples -> |mean acc - mean conf|
    assert ece([0.5, 0.25], [1, 0], n_bins=15) == pytest.approx(abs(0.5 - 0.375))
    assert math.isnan(ece([], [], 15))
    with pytest.raises(ValueError):
        ece([0.5], [1], binning="width")


def _ece_ia2_reference(conf, corr, n_bins=15):
    """The IA2 reference's ECE from its definition: sort by confidence; bins of n // n_bins examples, the last bin
    takes the remainder; below n_bins examples everything is one bin."""
    pairs = sorted(zip(conf, corr), key=lambda t: t[0])
    n = len(pairs)
    size = n // n_bins
    if size == 0:
        groups = [pairs]
    else:
        groups = [pairs[b * size : (b + 1) * size] for b in range(n_bins - 1)] + [pairs[(n_bins - 1) * size :]]
    total = 0.0
    for g in groups:
        acc = sum(c for _, c in g) / len(g)
        cf = sum(p for p, _ in g) / len(g)
        total += len(g) / n * abs(acc - cf)
    return total


@pytest.mark.parametrize("n", [7, 20, 500])
def test_ece_follows_the_ia2_binning(n):
    rng = np.random.default_rng(n)
    conf = rng.uniform(0.3, 1.0, n)
    corr = (rng.uniform(size=n) < conf**2).astype(float)  # overconfident, so bins matter
    exp = _ece_ia2_reference(conf.tolist(), corr.tolist())
    assert ece(conf, corr) == pytest.approx(exp, abs=1e-12)
    sizes = [b["count"] for b in calibration_bins(conf, corr)]
    if n < 15:
        assert sizes == [n]
    else:
        assert sizes == [n // 15] * 14 + [n - 14 * (n // 15)]
    # the other equal-count rule differs on these sizes (n % 15 != 0)
    assert abs(ece(conf, corr, binning="array_split") - exp) > 1e-4


def test_label_set_accuracy_by_hand():
    probs = [[0.1, 0.3, 0.05], [0.6, 0.2, 0.1], [0.01, 0.02, 0.03], [0.2, 0.2, 0.0]]
    gold = [1, 1, 2, 0]  # right, wrong, right, tie -> right
    assert label_set_accuracy(probs, gold) == pytest.approx(3 / 4)
    # the reference rule: gold is right when its probability is >= every other label's, so a tie counts for the
    # second tied label too (an argmax would give only the first one)
    probs_t = [[0.4, 0.4, 0.2], [0.3, 0.3, 0.3], [0.5, 0.25, 0.25], [0.1, 0.45, 0.45]]
    gold_t = [1, 2, 1, 2]
    ref = np.mean([all(r[g] >= r[j] for j in range(len(r)) if j != g) for r, g in zip(probs_t, gold_t)])
    assert ref == pytest.approx(3 / 4)
    assert label_set_accuracy(probs_t, gold_t) == pytest.approx(ref)
    with pytest.raises(ValueError):
        label_set_accuracy(probs, [0, 1, 2, 3])
    with pytest.raises(ValueError):
        label_set_accuracy(probs, [0])


def test_entropy():
    assert entropy([0.5, 0.5]) == pytest.approx(math.log(2))
    assert entropy([0.2, 0.2]) == pytest.approx(math.log(2))  # renormalised
    assert entropy([1.0, 0.0]) == pytest.approx(0.0)


class _Tok:
    """decode() for ids 0..4 -> ' a', ' b', 'c ', 'd', 'e'."""

    words = [" a", " b", "c ", "d", "e"]

    def decode(self, ids):
        return "".join(self.words[i] for i in ids)


def test_score_logits_by_hand():
    from actlab.ia2.evaluate import score_logits

    p = torch.tensor([[0.5, 0.3, 0.1, 0.05, 0.05], [0.1, 0.2, 0.6, 0.05, 0.05]])
    logits = p.log()
    metrics, recs = score_logits(
        logits, _Tok(), golds=["a", "b"], labels=["a", "b"], label_token_ids=[0, 1], gold_labels=[0, 1], top_k=2
    )
    # example 0: top1 ' a' == 'a' correct; renormalised top-2 p1 = .5/.8 ; example 1: top1 'c' wrong, p1 = .6/.8
    assert [r["correct"] for r in recs] == [True, False]
    assert recs[0]["confidence"] == pytest.approx(0.625) and recs[1]["confidence"] == pytest.approx(0.75)
    assert metrics["top1_accuracy"] == pytest.approx(0.5)
    assert metrics["top2_accuracy"] == pytest.approx(1.0)  # 'b' is second for example 1
    assert metrics["label_accuracy"] == pytest.approx(1.0)  # among labels a/b: .5>.3 and .2>.1
    assert metrics["uncertainty"] == pytest.approx(np.mean([0.375, 0.25]))
    h0 = -(0.625 * math.log(0.625) + 0.375 * math.log(0.375))
    h1 = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert metrics["entropy"] == pytest.approx((h0 + h1) / 2)
    assert metrics["ece"] == pytest.approx(ece([0.625, 0.75], [1, 0], 15))


def test_multi_token_scoring_with_registry_parsers():
    from actlab.data import get_dataset
    from actlab.ia2.evaluate import score_generations

    spec = get_dataset("gsm8k")
    gens = ["She pays 3 * $4 = $12.\n#### 1,200", "The answer is 42.", "no number at all", "#### 7.0 apples"]
    golds = [spec.parse("... #### 1200"), "42", "5", "7"]
    m, recs = score_generations(gens, golds, spec)
    assert [r["correct"] for r in recs] == [True, True, False, True]
    assert m["accuracy"] == pytest.approx(0.75)
    boxed = get_dataset("hmath_algebra")
    m, recs = score_generations(
        ["so \\boxed{\\dfrac{1}{2}} done", "none"], [boxed.parse("\\boxed{\\frac{1}{2}}"), "3"], boxed
    )
    assert [r["correct"] for r in recs] == [True, False]
    sciqa = get_dataset("sciqa")
    m, recs = score_generations(["blah #### x\n#### mitochondria "], ["mitochondria"], sciqa)
    assert recs[0]["correct"]
