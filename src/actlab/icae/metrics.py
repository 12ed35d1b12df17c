"""ICAE metrics, as their reference implementations define them.

* SQuAD v1.1 official EM / F1: normalise (lower, strip punctuation, drop a/an/the, collapse spaces); F1 on the
  *multiset* of tokens; each the max over the gold answers (an empty gold list scores 0); means ×100.
* BLEU-1 = BP · clipped unigram precision: NLTK's ``sentence_bleu(..., weights=(1,))`` on NLTK ``word_tokenize``
  tokens (``preserve_line=True``: the Treebank word tokenizer without the punkt sentence splitter, so no download is
  needed; ``3.14``, ``1,000`` and ``well-known`` stay whole, as in the ICAE reference).
* RepoQA similarity = NLTK ``sentence_bleu`` (BLEU-4) on whitespace tokens with Chen & Cherry smoothing method 4;
  pass@τ = the best-matching needle (strict ``>`` from 0, so ties go to the earlier needle and an all-zero row
  matches none) is the gold one **and** its similarity ≥ τ. Comments are kept by default, as in the official
  scorer's default; ``strip=True`` drops ``#`` / ``//`` line comments first (a language-agnostic approximation of its
  tree-sitter option).
* token accuracy (teacher forced or autoregressive with −1 padding), exact match per turn and per trajectory.

See docs/metrics.md for every definition, its reference and each deviation.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence

# ----------------------------------------------------------------------------------------------------- SQuAD
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCT = set(string.punctuation)


def normalize_answer(s: str) -> str:
    """SQuAD v1.1: lower-case, remove punctuation, articles and extra whitespace."""
    s = s.lower()
    s = "".join(ch for ch in s if ch not in _PUNCT)
    s = _ARTICLES.sub(" ", s)
    return " ".join(s.split())


def exact_match(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def f1(prediction: str, gold: str) -> float:
    p, g = normalize_answer(prediction).split(), normalize_answer(gold).split()
    common = Counter(p) & Counter(g)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(p), same / len(g)
    return 2 * precision * recall / (precision + recall)


def squad_scores(prediction: str, golds: Sequence[str]) -> dict[str, float]:
    """``{"em", "f1"}`` in [0, 1], each the max over the gold answers (an empty gold list scores 0)."""
    golds = list(golds)
    if not golds:
        return {"em": 0.0, "f1": 0.0}
    return {"em": max(exact_match(prediction, g) for g in golds), "f1": max(f1(prediction, g) for g in golds)}


# ------------------------------------------------------------------------------------------------------ BLEU
def word_tokenize(text: str) -> list[str]:
    """NLTK's ``word_tokenize(text, preserve_line=True)`` (Treebank rules; needs no punkt download)."""
    from nltk.tokenize import word_tokenize as _wt

    return _wt(text, preserve_line=True)


def sentence_bleu(
    refs: Sequence[Sequence[str]], hyp: Sequence[str], weights=(0.25, 0.25, 0.25, 0.25), smoothing: str | None = None
) -> float:
    """NLTK's ``sentence_bleu`` on token lists (``smoothing``: None or ``"method4"``); NLTK's zero-count warnings
    are silenced (the score is what NLTK returns)."""
    import warnings

    from nltk.translate.bleu_score import SmoothingFunction
    from nltk.translate.bleu_score import sentence_bleu as _bleu

    fn = SmoothingFunction().method4 if smoothing == "method4" else None
    if smoothing not in (None, "method4"):
        raise ValueError(f"smoothing must be None or 'method4'; got {smoothing!r}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(_bleu([list(r) for r in refs], list(hyp), weights=tuple(weights), smoothing_function=fn))


def bleu1(prediction: str, reference: str) -> float:
    """BLEU-1 (BP · clipped unigram precision) on :func:`word_tokenize` tokens; 0 for an empty prediction."""
    hyp = word_tokenize(prediction)
    if not hyp:
        return 0.0
    return sentence_bleu([word_tokenize(reference)], hyp, weights=(1.0,))


# ---------------------------------------------------------------------------------------------------- RepoQA
def strip_comments(code: str) -> str:
    """Drop ``#`` and ``//`` line comments and blank lines (a language-agnostic approximation of RepoQA's)."""
    out = []
    for line in code.splitlines():
        line = re.sub(r"(^|\s)(#|//).*$", "", line).rstrip()
        if line.strip():
            out.append(line)
    return "\n".join(out)


def sanitize(text: str) -> str:
    """The first fenced code block if there is one, else the text (RepoQA's first step)."""
    m = re.search(r"^```[^\n]*\n(.*?)^```", text, re.S | re.M)
    return m.group(1) if m else text


def repoqa_similarity(prediction: str, reference: str, strip: bool = False) -> float:
    """BLEU-4 on whitespace tokens with smoothing method 4 after sanitising (``strip``: drop comments first)."""
    pred = sanitize(prediction)
    if strip:
        pred, reference = strip_comments(pred), strip_comments(reference)
    cand, ref = pred.split(), reference.split()
    if not cand:
        return 0.0
    return sentence_bleu([ref], cand, smoothing="method4")


def repoqa_pass(
    prediction: str, gold: str, needles: Sequence[str], threshold: float = 0.8, strip: bool = False
) -> tuple[bool, float]:
    """Official pass: the needle most similar to the prediction is ``gold`` and that similarity ≥ ``threshold``.

    The best needle is chosen as the official scorer does: scan in order, keep one only if strictly more similar
    than the best so far (starting at 0), so a tie goes to the earlier needle. Returns ``(pass, similarity to gold)``.
    ``needles`` empty: the gold alone is scored.
    """
    sim = repoqa_similarity(prediction, gold, strip)
    if not needles:
        return bool(sim > 0 and sim >= threshold), sim
    best, best_sim = None, 0.0
    for i, needle in enumerate(needles):
        s_i = repoqa_similarity(prediction, needle, strip)
        if s_i > best_sim:
            best, best_sim = i, s_i
    ok = best is not None and needles[best] == gold and best_sim >= threshold
    return bool(ok), sim


# ------------------------------------------------------------------------------------------------ token level
def token_accuracy(pred: Sequence[int], ref: Sequence[int]) -> float:
    """Position-wise accuracy; the shorter side is padded with −1 (JetBrains' autoregressive rule)."""
    n = max(len(pred), len(ref))
    if n == 0:
        return 1.0
    p = list(pred) + [-1] * (n - len(pred))
    r = list(ref) + [-1] * (n - len(ref))
    return sum(int(a == b) for a, b in zip(p, r)) / n


def mean(xs: Sequence[float]) -> float:
    xs = list(xs)
    return sum(xs) / len(xs) if xs else float("nan")
