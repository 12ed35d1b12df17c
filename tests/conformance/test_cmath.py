"""cmath (camel-ai/math, ``--subset algebra``): the topic filter and the answer parser on rows in the hub's schema.

camel-ai/math rows: ``role_1``, ``topic;`` (the semicolon is in the hub's column name), ``sub_topic``,
``message_1`` (the problem) and ``message_2`` (a prose solution).
"""

import pytest

from actlab.core.errors import ActlabError
from actlab.data.parsers import cmath_topic_rows, parse_cmath


def _row(topic, q, a):
    return {
        "role_1": "Mathematician_RoleType.ASSISTANT",
        "topic;": topic,
        "sub_topic": "Solving linear equations",
        "message_1": q,
        "message_2": a,
    }


ROWS = [
    _row(
        "Algebra",
        "Solve for x: 2x + 3 = 7",
        "Subtract 3 from both sides: 2x = 4.\nDivide by 2: x = 2.\n\nSo, the solution is x = 2.",
    ),
    _row(
        "Algebra",
        "Simplify 3(x + 2) - x",
        "Distribute: 3x + 6 - x.\nCombine like terms: 2x + 6.\nTherefore, the simplified expression is 2x + 6.",
    ),
    _row("Calculus", "d/dx x^2?", "The derivative is 2x, so the answer is \\boxed{2x}."),
    _row("Number theory", "Remainder of 17 / 5?", "17 = 3*5 + 2, so the remainder = 2"),
    _row("Algebra", "Evaluate 1,000 + 250", "1,000 + 250 = 1,250"),
]


@pytest.mark.parametrize(
    "row,want", [(ROWS[0], "2"), (ROWS[1], "2x+6"), (ROWS[2], "2x"), (ROWS[3], "2"), (ROWS[4], "1250")]
)
def test_parse_final_answers(row, want):
    assert parse_cmath(row["message_2"]) == want


def test_conclusion_sentence_and_no_answer():
    assert parse_cmath("We are done here.") is None  # no answer in it
    assert parse_cmath("So the answer is 2x + 6. Done.") == "2x+6"
    assert parse_cmath("") is None and parse_cmath(None) is None
    # the same parser on gold and prediction: a prediction that restates the answer differently still matches
    assert parse_cmath("x = 2") == parse_cmath(ROWS[0]["message_2"])


def test_topic_filter_like_the_seeds_subset():
    alg = cmath_topic_rows(ROWS, "algebra")
    assert [r["message_1"] for r in alg] == [ROWS[0]["message_1"], ROWS[1]["message_1"], ROWS[4]["message_1"]]
    assert len(cmath_topic_rows(ROWS, "number_theory")) == 1 and len(cmath_topic_rows(ROWS, None)) == len(ROWS)
    with pytest.raises(ActlabError, match="algebr'.*did you mean 'algebra'"):
        cmath_topic_rows(ROWS, "algebr")
