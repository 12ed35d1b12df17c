"""ICAE metrics, exactly as their reference implementations define them (no NLTK: its tokenizer needs a download).

* SQuAD v1.1 official EM / F1: normalise (lower, strip punctuation, drop a/an/the, collapse spaces); F1 on the
  *multiset* of tokens; each the max over the gold answers; means ×100.
* BLEU-1 = BP · clipped unigram precision (``sentence_bleu(..., weights=(1,0,0,0))``, no smoothing).
  Tokenisation: :func:`word_tokenize` splits words and punctuation by a regex (NLTK's ``word_tokenize`` needs the
  punkt download; the two agree on plain prose, differ on contractions like "don't" → ``don ' t`` vs ``do n't``).
* RepoQA similarity = sentence BLEU-4 on whitespace tokens with Chen & Cherry smoothing method 4 (NLTK's current
  code, k=5); pass@τ = the best-matching needle is the gold one **and** similarity ≥ τ (official benchmark).
* token accuracy (teacher forced or autoregressive with −1 padding), exact match per turn and per trajectory.
"""

from __future__ import annotations

import math
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
    golds = list(golds) or [""]
    return {"em": max(exact_match(prediction, g) for g in golds), "f1": max(f1(prediction, g) for g in golds)}


# ------------------------------------------------------------------------------------------------------ BLEU
_WORD = re.compile(r"\w+|[^\w\s]", re.UNICODE)


def word_tokenize(text: str) -> list[str]:
    """Words and single punctuation marks (a download-free stand-in for NLTK's ``word_tokenize``)."""
    return _WORD.findall(text)


def _ngrams(tokens: Sequence[str], n: int) -> Counter:
    return Counter(tuple(tokens[i: i + n]) for i in range(len(tokens) - n + 1))


def _modified_precision(refs: Sequence[Sequence[str]], hyp: Sequence[str], n: int) -> tuple[int, int]:
    counts = _ngrams(hyp, n)
    max_ref: Counter = Counter()
    for r in refs:
        for g, c in _ngrams(r, n).items():
            max_ref[g] = max(max_ref[g], c)
    clipped = sum(min(c, max_ref[g]) for g, c in counts.items())
    return clipped, max(1, sum(counts.values()))


def _brevity_penalty(refs: Sequence[Sequence[str]], hyp_len: int) -> float:
    if hyp_len == 0:
        return 0.0
    r = min((len(x) for x in refs), key=lambda ln: (abs(ln - hyp_len), ln))
    return 1.0 if hyp_len > r else math.exp(1 - r / hyp_len)


def sentence_bleu(refs: Sequence[Sequence[str]], hyp: Sequence[str], weights=(0.25, 0.25, 0.25, 0.25),
                  smoothing: str | None = None, k: int = 5) -> float:
    """NLTK's ``sentence_bleu`` on token lists (``smoothing``: None or ``"method4"``)."""
    pn = [_modified_precision(refs, hyp, i + 1) for i in range(len(weights))]
    if pn[0][0] == 0:
        return 0.0
    hyp_len = len(hyp)
    vals = []
    inc = 1
    for num, den in pn:
        if num == 0 and smoothing == "method4" and hyp_len > 1:
            vals.append((1 / (2**inc * k / math.log(hyp_len))) / den)
            inc += 1
        else:
            vals.append(num / den)
    s = 0.0
    for w, p in zip(weights, vals):
        if w == 0:
            continue
        if p <= 0:
            return 0.0
        s += w * math.log(p)
    return _brevity_penalty(refs, hyp_len) * math.exp(s)


def bleu1(prediction: str, reference: str) -> float:
    """BLEU-1 (BP · clipped unigram precision) on :func:`word_tokenize` tokens."""
    return sentence_bleu([word_tokenize(reference)], word_tokenize(prediction), weights=(1.0,))


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
    m = re.search(r"```[^\n]*\n(.*?)```", text, re.S)
    return m.group(1) if m else text


def repoqa_similarity(prediction: str, reference: str) -> float:
    """BLEU-4 on whitespace tokens with smoothing method 4, after sanitising and comment stripping."""
    cand = strip_comments(sanitize(prediction)).split()
    ref = strip_comments(reference).split()
    return sentence_bleu([ref], cand, smoothing="method4")


def repoqa_pass(prediction: str, gold: str, needles: Sequence[str], threshold: float = 0.8) -> tuple[bool, float]:
    """Official pass: the needle most similar to the prediction is ``gold`` and the similarity ≥ ``threshold``."""
    sims = [repoqa_similarity(prediction, n) for n in needles] if needles else []
    sim = repoqa_similarity(prediction, gold)
    best = max(range(len(sims)), key=lambda i: sims[i]) if sims else None
    best_is_gold = best is None or needles[best] == gold or sims[best] <= sim
    return bool(best_is_gold and sim >= threshold), sim


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
