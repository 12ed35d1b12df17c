"""Activation communication (Ramesh & Li, ICML 2025, §3.1) and its baselines.

A reads ``prompt_a``; its layer-``k`` block output at the last token, ``a``, is written **once** into B's layer-``j``
block output at the last token of ``prompt_b`` during B's prefill (``f`` ∈ {replace, sum, mean}; the KV cache
carries the edit to every decoded token), optionally through a fitted map W (``a ← W a``). When the widths differ
and no map is given, the paper's footnote-1 slicing is used (d = min(d_A, d_B); B keeps its first d_B − d dims and
its last d dims are combined with A's last d). Layers are 0-based ``block_output`` indices (``hidden_states[i + 1]``);
the paper's k = j = 26 is 1-based in ``hidden_states`` terms, i.e. ``--k 25 --j 25`` here.

Baselines: B alone (``prompt_b``), A alone (A on the skyline prompt, i.e. A answering with all the information),
skyline (B on ``prompt_a + " " + prompt_b``) and natural language (A continues ``prompt_a`` for ``message_tokens``
tokens; B reads ``message + " " + prompt_b``). Compute follows the paper's §3.2 accounting (:func:`flops`).
"""

from __future__ import annotations

import re
import string
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from actlab.core import arch
from actlab.core.capture import intervene
from actlab.core.errors import ActlabError, check_choice
from actlab.core.models import generate
from actlab.xmodel.extract import pooled_activations

FS = ("replace", "sum", "mean")
F_TO_MODE = {"replace": "replace", "sum": "add", "mean": "mean"}  # paper's f → intervene's mode
GAMES = ("syn_countries", "syn_tipsheets")
TASKS = (*GAMES, "syn_gsm8k", "syn_squad", "gsm8k", "squad")
METHODS = ("b_alone", "a_alone", "skyline", "nl", "ac")


def check_f(f: str) -> str:
    return check_choice("f", f, FS)


def combine(a: torch.Tensor, b: torch.Tensor, f: str) -> torch.Tensor:
    """The paper's f(a, b) on ``[..., d_a]`` and ``[..., d_b]`` (footnote-1 slicing when the widths differ)."""
    check_f(f)
    da, db = a.shape[-1], b.shape[-1]
    d = min(da, db)
    a_t = a[..., da - d :].to(b.dtype)
    head, tail = b[..., : db - d], b[..., db - d :]
    new_tail = {"replace": lambda: a_t, "sum": lambda: tail + a_t, "mean": lambda: (tail + a_t) / 2}[f]()
    return torch.cat([head, new_tail], -1)


def sender_states(model_a, tok_a, prompts_a: Sequence[str], k: int, batch_size: int = 16) -> torch.Tensor:
    """A's layer-``k`` block output at the last token of each prompt → ``[n, d_a]`` (A runs all layers; only the
    first k + 1 are needed, which the FLOPs accounting reflects)."""
    arch.check_layer(model_a, k)
    return pooled_activations(model_a, tok_a, list(prompts_a), [k], "last", batch_size)[0]


@torch.no_grad()
def ac_generate(
    model_b,
    tok_b,
    prompts_b: Sequence[str],
    acts: torch.Tensor,
    j: int,
    f: str = "replace",
    max_new_tokens: int = 8,
    batch_size: int = 16,
    **gen_kw,
) -> tuple[list[str], dict]:
    """Decode B on ``prompts_b`` with ``acts[i]`` injected at layer ``j``'s last prompt token on the prefill only.

    Returns ``(texts, {"calls": forward calls seen by the hook, "applied": edits made})`` — ``applied`` equals the
    number of batches (one prefill each) whatever ``max_new_tokens`` is.
    """
    check_f(f)
    arch.check_layer(model_b, j)
    if len(acts) != len(prompts_b):
        raise ActlabError(f"{len(acts)} sender activations for {len(prompts_b)} prompts")
    db = arch.hidden_size(model_b)
    texts: list[str] = []
    calls = applied = 0
    for i in range(0, len(prompts_b), batch_size):
        a = acts[i : i + batch_size]
        if a.shape[-1] == db:
            value, mode = a, F_TO_MODE[f]
        else:
            value, mode = (lambda sel, a=a: combine(a.to(sel.device), sel, f)), "replace"
        with intervene(model_b, "block_output", j, value, positions=-1, mode=mode, prefill_only=True) as h:
            texts += generate(
                model_b,
                tok_b,
                list(prompts_b[i : i + batch_size]),
                max_new_tokens=max_new_tokens,
                batch_size=batch_size,
                **gen_kw,
            )
        calls += h.calls
        applied += h.applied
    return texts, {"calls": calls, "applied": applied}


# ------------------------------------------------------------------------------------------------------- tasks
def task_rows(task: str, n: int, split: str = "test", seed: int = 0, rows: list | None = None) -> list[dict]:
    """Rows ``{prompt_a, prompt_b, skyline, answer, gold}`` of ``task``.

    Lewis games come from the zoo's synthetic world (A holds the fact, B has the question). Reasoning sets
    (``gsm8k``, ``squad`` from the hub through the data registry, or their ``syn_`` twins) give both agents the same
    question, as in the paper's Table 3. ``rows`` replaces the hub download (hub column schema; for tests).
    """
    check_choice("task", task, TASKS)
    if task in GAMES:
        from actlab.data.sources import load_rows

        raw = load_rows(task, split, n, seed)
        return [
            {
                "prompt_a": r["prompt_a"],
                "prompt_b": r["prompt_b"],
                "skyline": r["skyline"],
                "answer": r["answer"],
                "gold": r["answer"],
            }
            for r in raw
        ]
    from actlab.data.prepare import build_pools
    from actlab.data.registry import get_dataset

    spec = get_dataset(task)
    given = None if rows is None else {s: rows for s in spec.splits if s}
    pool = build_pools(spec, 0, n, rows=given)["val_examples"]
    return [
        {
            "prompt_a": e["prompt"],
            "prompt_b": e["prompt"],
            "skyline": e["prompt"],
            "answer": e["answer"],
            "gold": e["gold"],
        }
        for e in pool
    ]


def _norm(s: str) -> str:
    s = s.lower().strip()
    s = "".join(ch for ch in s if ch not in string.punctuation)
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def is_correct(task: str, pred: str, gold: str | None) -> bool:
    """Games: the first word after the last ``Answer:`` of the output (or of the output itself), normalised exact
    match; SQuAD: normalised exact match (or prefix) of the first line; GSM8K: the registry's ``#### n`` parser."""
    if gold is None:
        return False
    if task in ("gsm8k", "syn_gsm8k"):
        from actlab.data.registry import get_dataset

        return get_dataset(task).parse(pred) == gold
    if task in GAMES:
        # B may first restate the question it was grafted into ("Which country is X in? Answer: France"): score
        # the text after the last "Answer:" when there is one, else the start of the output
        text = pred.rsplit("Answer:", 1)[-1] if "Answer:" in pred else pred
        words = _norm(text.strip().split("\n")[0]).split()
        return bool(words) and words[0] == _norm(gold)
    line = pred.strip().split("\n")[0]
    return _norm(line) == _norm(gold) or (bool(_norm(gold)) and _norm(line).startswith(_norm(gold)))


# ------------------------------------------------------------------------------------------------------ FLOPs
@dataclass(frozen=True)
class Dims:
    """The §3.2 symbols: V vocab, D width, L layers, H heads, K head dim, F MLP width."""

    V: int
    D: int
    L: int
    H: int
    K: int
    F: int

    @classmethod
    def of(cls, model) -> Dims:
        c = arch.unwrap(model).config
        D = arch.hidden_size(model)
        H = int(getattr(c, "num_attention_heads", None) or c.n_head)
        K = int(getattr(c, "head_dim", None) or D // H)
        F = int(getattr(c, "intermediate_size", None) or getattr(c, "n_inner", None) or 4 * D)
        return cls(V=int(c.vocab_size), D=D, L=arch.num_layers(model), H=H, K=K, F=F)

    def layer(self, P: float) -> float:
        """One block on P tokens: 8PDKH + 4P²KH + 3HP² + 4PDF."""
        D, K, H, F = self.D, self.K, self.H, self.F
        return 8 * P * D * K * H + 4 * P * P * K * H + 3 * H * P * P + 4 * P * D * F

    def forward(self, P: float) -> float:
        """F(P) = 4PVD + L·layer(P)."""
        return 4 * P * self.V * self.D + self.L * self.layer(P)


def flops(
    method: str,
    dA: Dims,
    dB: Dims,
    P_a: float,
    P_b: float,
    T: float,
    M: float = 0.0,
    k: int = 0,
    with_map: bool = False,
) -> float:
    """§3.2 accounting. NL = M·F_A(P_a) + T·F_B(P_b + M); AC = 2·P_a·V_A·D_A + (k+1)·layer_A(P_a) + T·F_B(P_b) + F(D)
    with F(D) = D (O(D)) or D_A·D_B (the map W). Same accounting for the baselines: B alone T·F_B(P_b), A alone
    T·F_A(P_a + P_b), skyline T·F_B(P_a + P_b). (k is a 0-based block index: A runs k + 1 blocks.)"""
    check_choice("method", method, METHODS)
    if method == "b_alone":
        return T * dB.forward(P_b)
    if method == "a_alone":
        return T * dA.forward(P_a + P_b)
    if method == "skyline":
        return T * dB.forward(P_a + P_b)
    if method == "nl":
        return M * dA.forward(P_a) + T * dB.forward(P_b + M)
    f_d = 2 * dA.D * dB.D if with_map else dB.D
    return 2 * P_a * dA.V * dA.D + (k + 1) * dA.layer(P_a) + T * dB.forward(P_b) + f_d


# ---------------------------------------------------------------------------------------------------- evaluation
def _n_tokens(tok, texts: Sequence[str]) -> float:
    return sum(len(tok(t)["input_ids"]) for t in texts) / max(1, len(texts))


def evaluate(
    model_a,
    tok_a,
    model_b,
    tok_b,
    rows: list[dict],
    task: str,
    *,
    k: int,
    j: int,
    f: str = "replace",
    W=None,
    methods: Sequence[str] = METHODS,
    max_new_tokens: int = 4,
    message_tokens: int = 16,
    batch_size: int = 16,
    keep_outputs: int = 3,
) -> dict:
    """Accuracy, wall time and §3.2 FLOPs of each method on ``rows``; AC's hook counters are reported too."""
    check_f(f)
    arch.check_layer(model_a, k)
    arch.check_layer(model_b, j)
    for m in methods:
        check_choice("method", m, METHODS)
    gold = [r["gold"] for r in rows]
    pa, pb, sky = [r["prompt_a"] for r in rows], [r["prompt_b"] for r in rows], [r["skyline"] for r in rows]
    dA, dB = Dims.of(model_a), Dims.of(model_b)
    P_a, P_b = _n_tokens(tok_a, pa), _n_tokens(tok_b, pb)
    gen = dict(max_new_tokens=max_new_tokens, batch_size=batch_size)
    res: dict = {
        "task": task,
        "n": len(rows),
        "k": k,
        "j": j,
        "f": f,
        "map": None if W is None else W.cfg.kind,
        "P_a": P_a,
        "P_b": P_b,
        "T": max_new_tokens,
        "methods": {},
    }
    for m in methods:
        t0 = time.perf_counter()
        extra: dict = {}
        if m == "b_alone":
            preds = generate(model_b, tok_b, pb, **gen)
        elif m == "a_alone":
            preds = generate(model_a, tok_a, sky, **gen)
        elif m == "skyline":
            preds = generate(model_b, tok_b, sky, **gen)
        elif m == "nl":
            msgs = generate(model_a, tok_a, pa, max_new_tokens=message_tokens, batch_size=batch_size)
            extra["M"] = _n_tokens(tok_a, msgs) - 1 if msgs else 0.0  # minus the BOS that _n_tokens counts
            extra["example_message"] = msgs[0] if msgs else ""
            preds = generate(model_b, tok_b, [f"{x.strip()} {p}" for x, p in zip(msgs, pb)], **gen)
        else:
            a = sender_states(model_a, tok_a, pa, k, batch_size)
            if W is not None:
                with torch.no_grad():
                    a = W(a)
            preds, counters = ac_generate(model_b, tok_b, pb, a, j, f, **gen)
            extra.update(counters)
        secs = time.perf_counter() - t0
        acc = sum(is_correct(task, p, g) for p, g in zip(preds, gold)) / max(1, len(rows))
        fl = flops(m, dA, dB, P_a, P_b, max_new_tokens, extra.get("M", 0.0), k, with_map=W is not None)
        res["methods"][m] = {
            "accuracy": acc,
            "seconds": round(secs, 4),
            "flops": fl,
            "outputs": preds[:keep_outputs],
            **extra,
        }
    if "nl" in res["methods"] and "ac" in res["methods"]:
        res["ac_over_nl_flops"] = res["methods"]["ac"]["flops"] / res["methods"]["nl"]["flops"]
        res["ac_over_nl_seconds"] = res["methods"]["ac"]["seconds"] / max(1e-9, res["methods"]["nl"]["seconds"])
    return res


def grid_search(
    model_a,
    tok_a,
    model_b,
    tok_b,
    rows: list[dict],
    task: str,
    ks: Sequence[int],
    js: Sequence[int],
    f: str = "replace",
    W=None,
    max_new_tokens: int = 4,
    batch_size: int = 16,
) -> dict:
    """AC accuracy for every (k, j) → ``{"ks", "js", "accuracy": [[...]]}`` (rows k, columns j)."""
    check_f(f)
    ks = [arch.check_layer(model_a, k) for k in ks]
    js = [arch.check_layer(model_b, j) for j in js]
    pa, pb = [r["prompt_a"] for r in rows], [r["prompt_b"] for r in rows]
    acc = []
    for k in ks:
        a = sender_states(model_a, tok_a, pa, k, batch_size)
        if W is not None:
            with torch.no_grad():
                a = W(a)
        row = []
        for j in js:
            preds, _ = ac_generate(model_b, tok_b, pb, a, j, f, max_new_tokens=max_new_tokens, batch_size=batch_size)
            row.append(sum(is_correct(task, p, r["gold"]) for p, r in zip(preds, rows)) / max(1, len(rows)))
        acc.append(row)
    return {"ks": ks, "js": js, "f": f, "accuracy": acc}


# ------------------------------------------------------------------------------------------------ text similarity
def word_f1(pred: str, ref: str) -> float:
    """SQuAD-style word-overlap F1 of two texts after normalisation (lower case, no punctuation or articles);
    1.0 when both are empty."""
    from collections import Counter

    p, r = _norm(pred).split(), _norm(ref).split()
    if not p and not r:
        return 1.0
    common = sum((Counter(p) & Counter(r)).values())
    if common == 0:
        return 0.0
    prec, rec = common / len(p), common / len(r)
    return 2 * prec * rec / (prec + rec)


def text_similarity(
    model_a,
    tok_a,
    model_b,
    tok_b,
    texts: Sequence[str],
    layers: Sequence[int],
    layers_b: Sequence[int] | None = None,
    *,
    maps: dict | None = None,
    f: str = "replace",
    max_new_tokens: int = 8,
    batch_size: int = 16,
    keep_outputs: int = 2,
) -> dict:
    """The text-similarity experiment: does B, given A's activation instead of its own, say what it says when it
    reads the text itself?

    For each text and each layer pair (``layers[i]`` of A, ``layers_b[i]`` of B; default the same index), A reads
    the text and its block output at the last token is written into B's block output at the last token of the same
    text (prefill only, ``f``, through ``maps[(a, b)]`` when given, else footnote-1 slicing when the widths
    differ). B then decodes ``max_new_tokens`` greedy tokens. The score is the word-level F1 (:func:`word_f1`)
    between that continuation and B's own continuation of the text (no injection: the text baseline), averaged over
    the texts, with a 95 % CI over texts; ``exact`` is the share of identical (normalised) continuations. The
    control ``f1_shuffled`` injects A's state of *another* text (the texts rolled by one), which tells how much of
    the similarity comes from the text B itself still reads. When A = B and f = replace, A's state is B's own and
    the F1 is 1 by construction.
    """
    from actlab.core.stats import mean_ci

    check_f(f)
    texts = list(texts)
    if len(texts) < 2:
        raise ActlabError(f"text similarity needs at least 2 texts (the shuffled control), got {len(texts)}")
    layers = list(layers)
    layers_b = list(layers) if layers_b is None else list(layers_b)
    if len(layers_b) != len(layers):
        raise ActlabError(f"{len(layers)} layers of A but {len(layers_b)} of B; give one B layer per A layer")
    base = generate(model_b, tok_b, texts, max_new_tokens=max_new_tokens, batch_size=batch_size)
    out: dict = {
        "n": len(texts),
        "f": f,
        "max_new_tokens": max_new_tokens,
        "layers": {},
        "baseline_outputs": base[:keep_outputs],
    }
    for la, lb in zip(layers, layers_b):
        a = sender_states(model_a, tok_a, texts, la, batch_size)
        W = (maps or {}).get((la, lb))
        if W is not None:
            with torch.no_grad():
                a = W(a)
        rolled = torch.roll(a, 1, 0)
        inj, _ = ac_generate(model_b, tok_b, texts, a, lb, f, max_new_tokens=max_new_tokens, batch_size=batch_size)
        shf, _ = ac_generate(
            model_b, tok_b, texts, rolled, lb, f, max_new_tokens=max_new_tokens, batch_size=batch_size
        )
        f1 = [word_f1(x, y) for x, y in zip(inj, base)]
        f1s = [word_f1(x, y) for x, y in zip(shf, base)]
        ci, cis = mean_ci(f1), mean_ci(f1s)
        out["layers"][f"{la}-{lb}"] = {
            "layer_a": la,
            "layer_b": lb,
            "map": None if W is None else W.cfg.kind,
            "f1": ci.mean,
            "f1_ci95": ci.half,
            "exact": sum(_norm(x) == _norm(y) for x, y in zip(inj, base)) / len(base),
            "f1_shuffled": cis.mean,
            "f1_shuffled_ci95": cis.half,
            "outputs": inj[:keep_outputs],
        }
    return out
