import math

import pytest

from actlab.icae import metrics as M


def test_normalize_articles_punctuation_case():
    assert M.normalize_answer("The  Eiffel Tower!") == "eiffel tower"
    assert M.normalize_answer("an apple, a pear; the fig.") == "apple pear fig"
    # articles only as whole words: "theatre" and "another" keep their letters
    assert M.normalize_answer("Theatre another") == "theatre another"


def test_em_f1_hand_made():
    assert M.exact_match("the Eiffel Tower.", "Eiffel Tower") == 1.0
    assert M.exact_match("Eiffel", "Eiffel Tower") == 0.0
    # multiset overlap: pred "red red blue" vs gold "red blue blue": same = 2, P = R = 2/3
    assert M.f1("red red blue", "red blue blue") == pytest.approx(2 / 3)
    # a set-based F1 (JetBrains) would give 1.0 here; the official one does not
    assert M.f1("paris paris", "paris") == pytest.approx(2 * 0.5 * 1 / 1.5)
    assert M.f1("rome", "paris") == 0.0
    assert M.f1("", "paris") == 0.0


def test_max_over_several_gold_answers():
    s = M.squad_scores("in Paris", ["France", "Paris, France", "the city of Paris"])
    assert s["em"] == 0.0
    # best F1: "in paris" vs "city of paris" -> 1 common, P=1/2, R=1/3 -> 0.4; vs "paris france" -> P=1/2 R=1/2 -> 0.5
    assert s["f1"] == pytest.approx(0.5)
    assert M.squad_scores("Paris", ["France", "paris"])["em"] == 1.0


def test_bleu1_clipping_and_brevity_penalty():
    ref = "the cat is on the mat"
    assert M.bleu1(ref, ref) == pytest.approx(1.0)
    # clipped unigram precision: 'the' x7 is clipped to 2 matches out of 7; hyp longer than ref -> BP = 1
    assert M.bleu1("the the the the the the the", ref) == pytest.approx(2 / 7)
    # shorter hypothesis: p1 = 1, BP = exp(1 - 6/3)
    assert M.bleu1("the cat is", ref) == pytest.approx(math.exp(1 - 6 / 3))
    assert M.bleu1("", ref) == 0.0
    # punctuation is its own token
    assert M.word_tokenize("Hi, Bob.") == ["Hi", ",", "Bob", "."]


def _bleu1_reference(pred_tokens, ref_tokens):
    """BLEU-1 from its definition: clipped unigram precision × brevity penalty exp(1 − r/c) when c ≤ r."""
    from collections import Counter

    c, r = len(pred_tokens), len(ref_tokens)
    ref_counts = Counter(ref_tokens)
    clipped = sum(min(k, ref_counts[w]) for w, k in Counter(pred_tokens).items())
    bp = 1.0 if c > r else math.exp(1 - r / c)
    return bp * clipped / c


def test_bleu1_keeps_numbers_and_hyphenated_words_whole():
    # NLTK's Treebank tokenisation keeps "3.14", "1,000" and "well-known" whole (a \w+ regex would split them)
    assert M.word_tokenize("pi is 3.14, about 1,000 well-known digits") == [
        "pi",
        "is",
        "3.14",
        ",",
        "about",
        "1,000",
        "well-known",
        "digits",
    ]
    # ref 4 tokens, pred 2 tokens both matching: p1 = 1, BP = exp(1 - 4/2)
    ref, pred = "It is 3.14 exactly", "3.14 exactly"
    exp = _bleu1_reference(["3.14", "exactly"], ["It", "is", "3.14", "exactly"])
    assert exp == pytest.approx(math.exp(-1))
    assert M.bleu1(pred, ref) == pytest.approx(exp)
    # the old regex tokens (3 . 14 exactly) would score p1 = 1 with c = 4 vs r = 6: exp(1 - 6/4) = 0.61
    assert abs(M.bleu1(pred, ref) - math.exp(1 - 6 / 4)) > 0.2
    # "1,000" vs "1,500": one token, no match (the regex split would share "1" and ",")
    assert M.bleu1("1,000", "1,500") == 0.0


def test_squad_empty_gold_list_scores_zero():
    for pred in ("", "the", "Paris"):
        assert M.squad_scores(pred, []) == {"em": 0.0, "f1": 0.0}


def _bleu4_method4_reference(cand, ref, k=5):
    """Sentence BLEU-4 from its definition with Chen & Cherry's smoothing 4 (as NLTK applies it).

    p_n = clipped n-gram matches / max(1, #candidate n-grams); a zero p_n (with len(cand) > 1) becomes
    1 / (2^i · k / ln(len(cand))) / #n-grams for the i-th such zero; zero precisions left over are skipped in the
    geometric mean (NLTK); no unigram match scores 0; BP = exp(1 − r/c) when c ≤ r.
    """
    from collections import Counter

    c, r = len(cand), len(ref)
    ps, inc = [], 1
    for n in range(1, 5):
        cg = Counter(tuple(cand[i : i + n]) for i in range(c - n + 1))
        rg = Counter(tuple(ref[i : i + n]) for i in range(r - n + 1))
        num = sum(min(v, rg[g]) for g, v in cg.items())
        den = max(1, sum(cg.values()))
        if n == 1 and num == 0:
            return 0.0
        if num == 0 and c > 1:
            ps.append(1 / (2**inc * k / math.log(c)) / den)
            inc += 1
        else:
            ps.append(num / den)
    bp = 1.0 if c > r else math.exp(1 - r / c)
    return bp * math.exp(sum(0.25 * math.log(p) for p in ps if p > 0))


def test_repoqa_similarity_and_pass():
    gold = "def add(a, b):\n    return a + b"
    assert M.repoqa_similarity(gold, gold) == pytest.approx(1.0)
    # the first fenced block is used
    pred = "Here:\n```python\ndef add(a, b):\n    return a + b\n```\nmore text"
    assert M.repoqa_similarity(pred, gold) == pytest.approx(1.0)
    other = "def sub(a, b):\n    return a - b"
    ok, sim = M.repoqa_pass(pred, gold, [gold, other], 0.8)
    assert ok and sim == pytest.approx(1.0)
    ok, _ = M.repoqa_pass(other, gold, [gold, other], 0.8)
    assert not ok
    # smoothing method 4 keeps a short partial match above zero, below the threshold
    s = M.repoqa_similarity("def add(a, b):", gold)
    assert 0 < s < 0.8


def test_repoqa_keeps_comments_by_default():
    gold = "def add(a, b):  # sum of two numbers\n    return a + b"
    pred = "def add(a, b):\n    return a + b"
    exp = _bleu4_method4_reference(pred.split(), gold.split())
    assert exp < 0.5  # the missing comment costs a lot
    assert M.repoqa_similarity(pred, gold) == pytest.approx(exp)
    assert M.repoqa_pass(pred, gold, [gold], 0.8)[0] is False
    # stripping is an explicit option
    assert M.repoqa_similarity(pred, gold, strip=True) == pytest.approx(1.0)
    assert M.repoqa_pass(pred, gold, [gold], 0.8, strip=True)[0] is True


def test_repoqa_bleu_matches_its_definition_and_one_token_output():
    gold = "def f(x):\n    y = x * 2\n    return y + 1"
    for pred in ("def f(x): return x", "y = x * 2", "def g(z):\n    y = z * 2\n    return y + 1"):
        assert M.repoqa_similarity(pred, gold) == pytest.approx(_bleu4_method4_reference(pred.split(), gold.split()))
    # a correct 1-token output: p1 = 1, the zero higher-order precisions are skipped, BP = 1 -> 1.0
    assert _bleu4_method4_reference(["pass"], ["pass"]) == pytest.approx(1.0)
    assert M.repoqa_similarity("pass", "pass") == pytest.approx(1.0)


def test_repoqa_ties_go_to_the_earlier_needle():
    a = "def a(x):\n    return x"
    twin = "def a(x):\n    return x\n"  # same whitespace tokens as ``a``: identical similarity
    pred = a
    # gold listed after a needle it ties with: the earlier needle wins the strict ">" scan -> no pass
    assert M.repoqa_similarity(pred, twin) == pytest.approx(M.repoqa_similarity(pred, a))
    assert M.repoqa_pass(pred, twin, [a, twin], 0.5)[0] is False
    assert M.repoqa_pass(pred, a, [a, twin], 0.5)[0] is True
    # nothing similar at all: no needle is best, no pass even at threshold 0
    assert M.repoqa_pass("zzz", a, [a, twin], 0.0)[0] is False


def test_token_accuracy_pads_with_minus_one():
    assert M.token_accuracy([1, 2, 3], [1, 2, 3]) == 1.0
    assert M.token_accuracy([1, 2], [1, 2, 3, 4]) == 0.5
    assert M.token_accuracy([], []) == 1.0
