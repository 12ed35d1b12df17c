"""The honest gauge of ICAE autoencoding: what a reconstruction score means, next to what no information scores.

Every ``ae`` evaluation (``actlab icae infer`` task ``ae``, ``actlab icae demo``) reports, beside BLEU-1:

* **random-passage floor**: the BLEU-1 of a training passage against a held-out reference, averaged over every
  (candidate, reference) pair — the expected score of answering with a random training passage, which carries no
  information about the reference.
* **best-constant floor**: the single training passage with the best mean BLEU-1 on a *selection slice* (other
  held-out-like texts, never the evaluation references: ``syn_passages`` test rows drawn with another seed, or a
  hub set's training texts outside the candidate pool), scored on the evaluation references. What one fixed output
  scores.
* **what the slots add**: the teacher-forced AE NLL (``[BOS] slots [AE] text </s>``) against the frozen decoder's own
  NLL of the same tokens with no slots at all (``[BOS] text </s>``), in nats per token; ``gain = no-slot − AE``.
* **names and attributes** (the synthetic world only): the share of the reference's facts (the person's name, and
  job, city, age, colour, pet, landmark, country) that are reproduced — teacher-forced (every token of the value is
  the decoder's argmax, at each occurrence for the name) and greedy (the reconstruction states the same value, read
  with :func:`actlab.zoo.world.passage_facts`) — next to the same teacher-forced accuracy with no slots and a
  majority guess (each kind's most frequent training value; the name's floor is 0: test people are unseen).

The verdict: BLEU-1 below the higher floor is **no reconstruction**; within the BLEU-1 mean's 95 % CI of it, *not
distinguishable from the floor*; above it, *above the floor*.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import torch

from actlab.icae import metrics as M

FLOOR_CANDIDATES = 128  # training passages in the floors' candidate pool
SELECT_REFS = 64  # texts of the best-constant floor's selection slice


# ------------------------------------------------------------------------------------------------------- stats
def mean_ci(xs: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """``(mean, half-width)`` of the ``level`` Student-t interval (:func:`actlab.core.stats.mean_ci`; the half-width
    is NaN for fewer than two values: no interval, not a zero-width one)."""
    from actlab.core.stats import mean_ci as _mean_ci

    ci = _mean_ci(xs, level)
    return ci.mean, ci.half


# ------------------------------------------------------------------------------------------------------ floors
def _bleu_matrix(candidates: Sequence[str], refs: Sequence[str]) -> list[list[float]]:
    """``out[c][r]`` = BLEU-1 of candidate ``c`` as the prediction for reference ``r``."""
    ct = [M.word_tokenize(c) for c in candidates]
    rt = [[M.word_tokenize(r)] for r in refs]
    return [[M.sentence_bleu(r, c, weights=(1.0,)) for r in rt] for c in ct]


def random_floor(candidates: Sequence[str], refs: Sequence[str]) -> float:
    """Mean BLEU-1 over all (candidate, reference) pairs: a random candidate's expected score."""
    mat = _bleu_matrix(candidates, refs)
    return sum(map(sum, mat)) / (len(candidates) * len(refs))


def constant_floor(
    candidates: Sequence[str], refs: Sequence[str], select_refs: Sequence[str] | None = None
) -> tuple[float, str]:
    """``(score, candidate)``: the candidate with the best mean BLEU-1 on ``select_refs`` (ties: the first), scored on
    ``refs``. With ``select_refs=None`` it is chosen on ``refs`` themselves (an optimistic floor)."""
    sel = _bleu_matrix(candidates, select_refs if select_refs is not None else refs)
    best = max(range(len(candidates)), key=lambda i: (sum(sel[i]), -i))
    score = sum(_bleu_matrix([candidates[best]], refs)[0]) / len(refs)
    return score, candidates[best]


# --------------------------------------------------------------------------------------------- teacher forcing
def _target(tok, text: str, max_len: int) -> list[int]:
    ids = tok(text, add_special_tokens=False)["input_ids"][:max_len]
    return ids + ([tok.eos_token_id] if tok.eos_token_id is not None else [])


@torch.no_grad()
def _score(icae, pre) -> list[tuple[float, int, list[int]]]:
    """Per row of a labelled :class:`~actlab.icae.model.Prefill`: (NLL sum, scored tokens, argmax per target)."""
    with icae.model.disable_adapter():
        logits = icae.base()(inputs_embeds=pre.embeds, attention_mask=pre.mask, position_ids=pre.pids).logits
    logits = logits[:, :-1, : icae.vocab].float()
    lab = pre.labels[:, 1:]
    nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), lab.clamp(min=0), reduction="none")
    keep = lab != -100
    am = logits.argmax(-1)
    return [(float(nll[i][keep[i]].sum()), int(keep[i].sum()), am[i][keep[i]].tolist()) for i in range(lab.shape[0])]


@torch.no_grad()
def teacher_forced(icae, texts: Sequence[str], batch_size: int = 8) -> dict:
    """Teacher-forced NLL and argmax of every text's tokens + EOS, with its slots (AE) and with no slots.

    Returns ``{"ae": [(nll_sum, n, argmax)], "no_slots": [...], "targets": [ids]}``, one entry per text.
    """
    from actlab.icae.model import Prefill, _left_pad_embeds

    tok, bos = icae.tok, icae.tok.bos_token_id
    out: dict = {"ae": [], "no_slots": [], "targets": []}
    for s in range(0, len(texts), batch_size):
        chunk = list(texts[s : s + batch_size])
        ctx = icae.tokenize_contexts(chunk)
        tg = [_target(tok, t, icae.cfg.max_seq_len) for t in chunk]
        mem = icae.compress(ctx)
        out["ae"] += _score(icae, icae.decoder_rows(mem, "AE", [[] for _ in chunk], tg))
        rows, pids, labs = [], [], []
        for t in tg:
            ids = ([bos] if bos is not None else []) + t
            rows.append(icae.token_embeds(torch.tensor(ids, dtype=torch.long)))
            pids.append(torch.arange(len(ids)))
            labs.append(torch.tensor([-100] * (len(ids) - len(t)) + t))
        emb, mask, pos = _left_pad_embeds(rows, pids)
        lab = torch.full(mask.shape, -100, dtype=torch.long)
        for i, lb in enumerate(labs):
            lab[i, mask.shape[1] - len(lb) :] = lb
        out["no_slots"] += _score(icae, Prefill(emb, mask, pos, lab.to(emb.device)))
        out["targets"] += tg
    return out


# ------------------------------------------------------------------------------------------ names, attributes
def _value_tokens(tok, text: str, spans: Sequence[tuple[int, int]]) -> list[list[int]]:
    """For each character span, the indices of the tokens of ``text`` (no special tokens) that overlap it."""
    offs = tok(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    return [[j for j, (a, b) in enumerate(offs) if a < e and b > s] for s, e in spans]


def fact_accuracy(
    tok,
    refs: Sequence[str],
    preds: Sequence[str] | None,
    argmax: Sequence[Sequence[int]] | None,
    targets: Sequence[Sequence[int]] | None,
) -> dict[str, float]:
    """Name and attribute accuracy of reconstructions of synthetic passages.

    Teacher-forced (``argmax``/``targets`` given): a fact counts when every token of its value is predicted (the name
    at each of its occurrences). Greedy (``preds`` given): a fact counts when the reconstruction states the same
    value for the same kind (:func:`actlab.zoo.world.passage_facts`). Keys ``name_tf``, ``attr_tf``, ``name_greedy``,
    ``attr_greedy`` (attributes pooled over all facts of all references) and ``attr_tf/<kind>`` per kind.
    """
    from actlab.data.world import ATTRIBUTE_KINDS, name_spans, passage_facts

    hits: dict[str, list[float]] = {}
    for i, ref in enumerate(refs):
        facts = passage_facts(ref)
        if "name" not in facts:
            continue
        if argmax is not None and targets is not None:
            kinds = [k for k in ATTRIBUTE_KINDS if k in facts]
            spans = name_spans(ref, facts["name"][0]) + [facts[k][1:] for k in kinds]
            toks = _value_tokens(tok, ref, spans)
            n_name = len(spans) - len(kinds)
            for j, idx in enumerate(toks):
                ok = bool(idx) and all(k < len(argmax[i]) and argmax[i][k] == targets[i][k] for k in idx)
                key = "name_tf" if j < n_name else "attr_tf"
                hits.setdefault(key, []).append(float(ok))
                if j >= n_name:
                    hits.setdefault(f"attr_tf/{kinds[j - n_name]}", []).append(float(ok))
        if preds is not None:
            got = passage_facts(preds[i])
            hits.setdefault("name_greedy", []).append(float(got.get("name", ("",))[0] == facts["name"][0]))
            for k in ATTRIBUTE_KINDS:
                if k in facts:
                    hits.setdefault("attr_greedy", []).append(float(k in got and got[k][0] == facts[k][0]))
    return {k: sum(v) / len(v) for k, v in sorted(hits.items()) if v}


def majority_fact_floor(train_texts: Sequence[str], refs: Sequence[str]) -> dict[str, float]:
    """Accuracy of guessing each kind's most frequent training value (the name: the most frequent training name)."""
    from actlab.data.world import ATTRIBUTE_KINDS, passage_facts

    facts_tr = [passage_facts(t) for t in train_texts]
    guess = {}
    for k in ("name", *ATTRIBUTE_KINDS):
        c = Counter(f[k][0] for f in facts_tr if k in f)
        if c:
            guess[k] = c.most_common(1)[0][0]
    name, attr = [], []
    for r in refs:
        f = passage_facts(r)
        if "name" in f:
            name.append(float(guess.get("name") == f["name"][0]))
        attr += [float(guess.get(k) == f[k][0]) for k in ATTRIBUTE_KINDS if k in f]
    return {
        "name": sum(name) / len(name) if name else float("nan"),
        "attr": sum(attr) / len(attr) if attr else float("nan"),
    }


# -------------------------------------------------------------------------------------------------- the gauge
def verdict(bleu: float, half_ci: float, floor: float) -> str:
    if bleu < floor:
        return "no reconstruction (BLEU-1 below its floor)"
    if not math.isfinite(half_ci) or bleu - half_ci <= floor:  # no CI (one example): not shown to be above
        return "not distinguishable from the floor (BLEU-1 within its 95 % CI of the floor)"
    return "above the floor"


def ae_gauge(
    icae,
    refs: Sequence[str],
    preds: Sequence[str],
    train_texts: Sequence[str],
    select_refs: Sequence[str] | None,
    synthetic: bool,
    batch_size: int = 8,
) -> dict:
    """The gauge's numbers (``gauge/...`` keys) for held-out ``refs`` and their greedy reconstructions ``preds``."""
    bleus = [M.bleu1(p, r) for p, r in zip(preds, refs)]
    b, h = mean_ci(bleus)
    cands = list(train_texts[:FLOOR_CANDIDATES])
    rnd = random_floor(cands, refs)
    const, best = constant_floor(cands, refs, select_refs)
    tf = teacher_forced(icae, refs, batch_size)
    n = sum(x[1] for x in tf["ae"])
    nll_ae = sum(x[0] for x in tf["ae"]) / max(1, n)
    nll_0 = sum(x[0] for x in tf["no_slots"]) / max(1, n)
    floor = max(rnd, const)
    g = {"gauge/n": len(refs), "gauge/bleu1": b, "gauge/bleu1_ci95": h, "gauge/floor_random": rnd,
         "gauge/floor_constant": const, "gauge/floor_constant_selected_on": "eval set" if select_refs is None
         else "a separate slice", "gauge/floor_constant_passage": best,
         "gauge/nll_ae": nll_ae, "gauge/nll_no_slots": nll_0, "gauge/slot_gain_nats": nll_0 - nll_ae,
         "gauge/verdict": verdict(b, h, floor)}  # fmt: skip
    if synthetic:
        acc = fact_accuracy(icae.tok, refs, preds, [x[2] for x in tf["ae"]], tf["targets"])
        acc0 = fact_accuracy(icae.tok, refs, None, [x[2] for x in tf["no_slots"]], tf["targets"])
        maj = majority_fact_floor(train_texts, refs)
        g.update({f"gauge/{k}": v for k, v in acc.items()})
        g.update({f"gauge/no_slots/{k}": v for k, v in acc0.items()})
        g.update({"gauge/majority/name": maj["name"], "gauge/majority/attr": maj["attr"]})
    return g


def format_gauge(g: dict, title: str = "ICAE autoencoding") -> str:
    """The gauge as a small Markdown table (what the demo prints and docs/icae.md records)."""
    f = lambda x: "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"  # noqa: E731
    lines = [
        f"{title}: {g['gauge/n']} held-out texts — {g['gauge/verdict']}",
        "",
        "| measure | ICAE | floor / without slots |",
        "|---|---|---|",
        f"| BLEU-1 (mean ± 95 % CI) | {f(g['gauge/bleu1'])} ± {f(g['gauge/bleu1_ci95'])} | random passage "
        f"{f(g['gauge/floor_random'])}; best constant passage {f(g['gauge/floor_constant'])} |",
        f"| teacher-forced NLL, nats/token | {f(g['gauge/nll_ae'])} | {f(g['gauge/nll_no_slots'])} without "
        f"slots (slots add {f(g['gauge/slot_gain_nats'])}) |",
    ]
    if "gauge/name_tf" in g:
        lines += [
            f"| name accuracy, teacher-forced / greedy | {f(g.get('gauge/name_tf'))} / "
            f"{f(g.get('gauge/name_greedy'))} | {f(g.get('gauge/no_slots/name_tf'))} without slots; "
            f"majority guess {f(g.get('gauge/majority/name'))} |",
            f"| attribute accuracy, teacher-forced / greedy | {f(g.get('gauge/attr_tf'))} / "
            f"{f(g.get('gauge/attr_greedy'))} | {f(g.get('gauge/no_slots/attr_tf'))} without slots; "
            f"majority guess {f(g.get('gauge/majority/attr'))} |",
        ]
    return "\n".join(lines)
