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


def test_repoqa_similarity_and_pass():
    gold = "def add(a, b):\n    return a + b"
    assert M.repoqa_similarity(gold, gold) == pytest.approx(1.0)
    # comments are stripped on both sides and the first fenced block is used
    pred = "Here:\n```python\ndef add(a, b):  # sum\n    return a + b\n```\nmore text"
    assert M.repoqa_similarity(pred, gold) == pytest.approx(1.0)
    other = "def sub(a, b):\n    return a - b"
    ok, sim = M.repoqa_pass(pred, gold, [gold, other], 0.8)
    assert ok and sim == pytest.approx(1.0)
    ok, _ = M.repoqa_pass(other, gold, [gold, other], 0.8)
    assert not ok
    # smoothing method 4 keeps a short partial match above zero, below the threshold
    s = M.repoqa_similarity("def add(a, b):", gold)
    assert 0 < s < 0.8


def test_token_accuracy_pads_with_minus_one():
    assert M.token_accuracy([1, 2, 3], [1, 2, 3]) == 1.0
    assert M.token_accuracy([1, 2], [1, 2, 3, 4]) == 0.5
    assert M.token_accuracy([], []) == 1.0
