import pytest

from actlab.data.parsers import parse_answer_gsm8k, parse_boxed, parse_hash, parse_strip


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n#### 72", "72"),  # gold format
        ("She pays 1,200 + 300 = 1,500 dollars.\n#### 1,500", "1500"),  # commas stripped
        ("The answer is $1,000.00.", "1000"),  # $ and .00 dropped
        ("Answer: 3.50", "3.5"),  # decimals kept, trailing 0 dropped
        ("Answer: 12.0", "12"),  # integers written without .0
        ("The temperature fell to -5 degrees.\n#### -5", "-5"),  # negative answer
        ("It took 10-2 = 8 hours.\n#### 8", "8"),  # a hyphen is not a sign
        ("\\boxed{42} so #### 7", "42"),  # boxed beats ####
        ("#### 1\nmore text\n#### 2", "2"),  # last #### wins
        ("First 5 then 6.\nAnswer: 9\nAnswer: 11", "11"),  # last Answer: wins
        ("She spent $ 25 on it", "25"),  # dollar pattern
        ("He ran 14 miles", "14"),  # number + unit
        ("In 2019 she bought 3 apples and 0.5 pears", "3"),  # fallback skips years and (0, 1)
        ("In 2019 it rose by 0.25", None),  # only a year and a rate: no answer
        ("no number here", None),
        ("", None),
        (None, None),
        ("#### seventy", "seventy"),  # non-numeric answer text kept
    ],
)
def test_parse_answer_gsm8k(text, expected):
    assert parse_answer_gsm8k(text) == expected


def test_gsm8k_gold_and_prediction_agree_across_formats():
    gold = parse_answer_gsm8k("Janet has 16 - 3 - 4 = <<16-3-4=9>>9 eggs.\n#### 18")
    assert gold == "18"
    for pred in ["... so she makes $18.\n#### 18", "The answer is 18.", "Answer: $18.00", "\\boxed{18}"]:
        assert parse_answer_gsm8k(pred) == gold, pred


@pytest.mark.parametrize(
    "text, expected",
    [
        ("so x = \\boxed{5}.", "5"),
        ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),  # nested braces
        ("hence \\boxed{\\dfrac{3}{ 4}} and done", "\\frac{3}{4}"),  # dfrac -> frac, spaces removed
        ("\\boxed{x^{2} + 1} then \\boxed{7}", "x^{2}+1"),  # first box, balanced (not greedy)
        ("\\boxed{(1, 2)}", "(1,2)"),
        ("\\boxed{unclosed {", None),
        ("no box: 5", None),
        ("", None),
    ],
)
def test_parse_boxed(text, expected):
    assert parse_boxed(text) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Mitochondria make ATP.\n#### mitochondria", "mitochondria"),
        ("a #### b\n#### c  ", "c"),  # several ####: the last
        ("  plain answer ", "plain answer"),  # no ####: whole text (as upstream)
        ("support text\n####   ", None),
        (None, None),
    ],
)
def test_parse_hash(text, expected):
    assert parse_hash(text) == expected


def test_parse_strip():
    assert parse_strip(" 1\n") == "1"
    assert parse_strip("  ") is None
