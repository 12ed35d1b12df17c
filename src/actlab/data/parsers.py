"""Answer parsers for the multi-token tasks (IA2 §6).

All parsers take generated (or gold) text and return the answer string, or ``None`` when there is no answer in it.
Evaluation parses both the gold answer and the prediction with the same parser and compares the strings exactly;
``None`` counts as wrong.

* :func:`parse_answer_gsm8k` — gsm8k / gsm8ks: a regex cascade (``\\boxed{}``, ``####``, ``Answer:``, "The answer
  is", ..., ``$``, number + unit), then the number is extracted, commas are stripped and integers are written without a
  decimal part; failing all patterns, the last number that is neither a year nor in (0, 1).
* :func:`parse_boxed` — hmath: the content of ``\\boxed{...}`` (braces matched), spaces removed, ``\\dfrac`` → ``\\frac``.
* :func:`parse_hash` — sciqa: the text after the last ``####``, stripped.
* :func:`parse_cmath` — cmath (camel-ai/math, prose solutions): ``\\boxed{}`` if any, else the conclusion ("the
  answer / solution / result / value is ..."; the right side of its last ``=``), else the last ``= value``, else the
  gsm8k cascade; spaces and a final period removed, numbers canonical. :func:`cmath_topic_rows` keeps one topic
  (``--subset algebra``) of the hub set's ``topic;`` column.
"""

from __future__ import annotations

import re

# A number as the official cascade sees it ([0-9,]+ with an optional decimal part), plus a leading minus sign when
# it is not a hyphen between words or numbers ("-5" is negative; "10-2" and "x-5" are not). The official parser
# drops every minus sign; see docs/data.md.
_NUM = r"(?:(?<![\w.])-)?[0-9][0-9,]*(?:\.[0-9]+)?"
_UNITS = (
    r"(?:miles?|meters?|hours?|minutes?|bolts?|glasses?|vacuum cleaners?|sheep|eggs?|cups?|downloads?|years?"
    r"|weeks?|dollars?|GB|GB/minute)"
)

# The cascade, in order of preference. The first pattern that matches anywhere wins; within it, the LAST match.
_CASCADE = [
    r"\\boxed\{([^}]+)\}",
    r"####\s*([^\n]+)",
    r"Answer:\s*([^\n]+)",
    r"The answer is\s*([^\n]+)",
    r"answer is\s*([^\n]+)",
    r"Answer\s+([^\n]+)",
    r"answer\s+([^\n]+)",
    r"The best answer is:\s*([^\n]+)",
    rf"\$\s*({_NUM})",
    rf"({_NUM})\s*{_UNITS}",
]
_FALLBACK = [
    rf"({_NUM})\s*{_UNITS}\b",
    rf"\$\s*({_NUM})",
    rf"({_NUM})",
]


def _canon(num: str) -> str | None:
    """'1,000.00' -> '1000'; '2.50' -> '2.5'; '-3' -> '-3'. None if it is not a number."""
    s = num.replace(",", "")
    if not s or s in {"-", "."}:
        return None
    try:
        v = float(s)
    except ValueError:
        return None
    return str(int(v)) if v.is_integer() else str(v)


def _plausible(num: str) -> str | None:
    """A fallback number: not a year (1900-2100, integer) and not a rate in (0, 1)."""
    c = _canon(num)
    if c is None:
        return None
    v = float(c)
    if (1900 <= v <= 2100 and v.is_integer()) or 0 < v < 1:
        return None
    return c


def parse_answer_gsm8k(text: str | None) -> str | None:
    """Parse a GSM8K-style answer ("... #### 1,234" -> "1234"). Returns None if the text holds no answer."""
    if not text:
        return None
    text = text.replace("<|eot_id|>", "").strip()
    if not text:
        return None
    for pattern in _CASCADE:
        found = re.findall(pattern, text, flags=re.IGNORECASE)
        if not found:
            continue
        answer = found[-1].strip()
        answer = re.sub(r"^\$", "", answer)
        answer = re.sub(r"^\s*:\s*", "", answer)
        answer = re.sub(r"^\s*\\boxed\{", "", answer)
        answer = re.sub(r"\}\s*$", "", answer)
        answer = re.sub(r"[.,]\s*$", "", answer)
        m = re.search(_NUM, answer)
        if m and (c := _canon(m.group(0))) is not None:
            return c
        return answer or None
    for pattern in _FALLBACK:
        for num in reversed(re.findall(pattern, text, flags=re.IGNORECASE)):
            if (c := _plausible(num)) is not None:
                return c
    return None


def _boxed_contents(text: str) -> str | None:
    """Content of the first ``\\boxed{...}`` with braces balanced, or None (no box, or unclosed)."""
    start = text.find("\\boxed{")
    if start < 0:
        return None
    i = start + len("\\boxed{")
    depth = 1
    for j in range(i, len(text)):
        ch = text[j]
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return text[i:j]
    return None


def parse_boxed(text: str | None) -> str | None:
    """Hendrycks MATH answer: ``\\boxed{\\dfrac{1}{2}}`` -> ``\\frac{1}{2}`` (spaces removed). None if no box."""
    if not text:
        return None
    inner = _boxed_contents(text)
    if inner is None:
        return None
    inner = inner.replace(" ", "")
    return inner.replace("\\dfrac{", "\\frac{")


def parse_hash(text: str | None) -> str | None:
    """SciQ (sciqa) answer: the text after the last ``####``, stripped; a text without ``####`` is taken whole
    (as the official parser does). None if nothing is left."""
    if text is None:
        return None
    out = text.split("####")[-1].strip()
    return out or None


def parse_strip(text: str | None) -> str | None:
    """Single-token tasks and raw-text tasks: the text stripped (None if empty)."""
    if text is None:
        return None
    out = text.strip()
    return out or None


#: camel-ai/math's topic column (the semicolon is part of the hub's column name)
CMATH_TOPIC_COLUMN = "topic;"
_CONCLUSION = re.compile(
    r"(?:answer|solution|solutions|result|value|values|expression|form)"
    r"\s+(?:is|are)\s*:?\s*([^\n]+)",
    flags=re.IGNORECASE,
)


def _tidy(ans: str) -> str | None:
    ans = ans.strip().strip("$").strip()
    ans = re.sub(r"[.;,]+$", "", ans).strip()
    ans = ans.replace(" ", "")
    if re.fullmatch(_NUM, ans) and (c := _canon(ans)) is not None:
        return c
    return ans or None


def parse_cmath(text: str | None) -> str | None:
    """The final answer of a camel-ai/math solution (free prose); None if the text holds none."""
    if not text or not text.strip():
        return None
    boxed = parse_boxed(text)
    if boxed:
        return _tidy(boxed)
    found = _CONCLUSION.findall(text)
    if found:
        ans = re.split(r"(?<=[^\s.])\.\s", found[-1])[0]  # the first sentence of the conclusion
        return _tidy(ans.rsplit("=", 1)[-1])
    eqs = re.findall(r"=\s*([^=\n]+)$", text.strip(), flags=re.MULTILINE)
    if eqs:
        return _tidy(eqs[-1])
    return parse_answer_gsm8k(text)


def cmath_topic_rows(rows, subset: str | None) -> list[dict]:
    """The rows of one camel-ai/math topic: ``subset`` ``algebra`` keeps ``topic;`` == ``Algebra`` (case and
    spaces vs underscores ignored); ``None`` keeps every row. An unknown topic is one line naming the topics."""
    from actlab.core.errors import unknown_choice

    rows = [dict(r) for r in rows]
    if subset is None:
        return rows

    def norm(t) -> str:
        return re.sub(r"[\s_]+", "_", str(t).strip().rstrip(";").lower())

    keep = [r for r in rows if norm(r.get(CMATH_TOPIC_COLUMN, "")) == norm(subset)]
    if not keep:
        topics = sorted({norm(r.get(CMATH_TOPIC_COLUMN, "")) for r in rows})
        raise unknown_choice("subset", subset, topics, hint="a topic of camel-ai/math")
    return keep
