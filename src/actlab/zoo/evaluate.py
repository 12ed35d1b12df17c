"""Held-out in-context-learning evaluation of zoo models (remapped labels, as sciq_remap / qasc_remap remap them)."""

from __future__ import annotations

import random

import torch

from actlab.data.world import REMAP_LABELS, class_text, join_demos, random_task


def icl_tasks(k_demos: int, n_tasks: int, seed: int, n_classes: tuple[int, ...] = (2, 4), keys_per_class: int = 1):
    """``n_tasks`` held-out tasks: (prompt, candidate labels, gold index).

    Each task draws fresh key words per class and a fresh mapping onto the IA2 remap words
    (Monday … orange), so the label is knowable only from the demos. Demos are drawn at random (class uniform);
    tasks alternate over ``n_classes``. The query text is always new (fresh filler words).
    """
    rng = random.Random(f"icl-eval:{seed}")
    out = []
    for t in range(n_tasks):
        nc = n_classes[t % len(n_classes)]
        class_keys, labels = random_task(rng, nc, keys_per_class, REMAP_LABELS)
        demos = []
        for _ in range(k_demos):
            c = rng.randrange(nc)
            demos.append((class_text(rng, rng.choice(class_keys[c]), (1, 4)), labels[c]))
        gold = rng.randrange(nc)
        query = class_text(rng, rng.choice(class_keys[gold]), (1, 4))
        out.append((join_demos(demos, query), labels, gold))
    return out


@torch.no_grad()
def score_choices(model, tok, prompts: list[str], choices: list[list[str]], batch_size: int = 32) -> list[int]:
    """For each prompt, the index of the choice with the highest total log-probability as a continuation."""
    device = next(model.parameters()).device
    seqs, owners = [], []
    for i, (p, cs) in enumerate(zip(prompts, choices)):
        p_ids = tok(p).input_ids
        for j, c in enumerate(cs):
            c_ids = tok(c, add_special_tokens=False).input_ids
            seqs.append((p_ids + c_ids, len(p_ids)))
            owners.append((i, j))
    scores = [[float("-inf")] * len(cs) for cs in choices]
    pad = tok.pad_token_id
    for b in range(0, len(seqs), batch_size):
        chunk = seqs[b : b + batch_size]
        width = max(len(s) for s, _ in chunk)
        ids = torch.full((len(chunk), width), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for r, (s, _) in enumerate(chunk):  # right padding: rows equal unpadded runs (feasibility §3)
            ids[r, : len(s)] = torch.tensor(s)
            mask[r, : len(s)] = 1
        logp = torch.log_softmax(model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float(), -1)
        for r, (s, start) in enumerate(chunk):
            tgt = torch.tensor(s[start:], device=device)
            lp = logp[r, start - 1 : len(s) - 1].gather(-1, tgt[:, None]).sum().item()
            i, j = owners[b + r]
            scores[i][j] = lp
    return [max(range(len(sc)), key=sc.__getitem__) for sc in scores]


def icl_accuracy(model, tok, k_demos: int, n_tasks: int = 200, seed: int = 0, **task_kw) -> float:
    """Accuracy on ``n_tasks`` held-out remapped-label tasks with ``k_demos`` random demos (argmax over the task's labels).

    With 0 demos the model cannot know the mapping, so it scores about chance (1/2 for 2-class, 1/4 for 4-class).
    """
    was_training = model.training
    model.eval()
    tasks = icl_tasks(k_demos, n_tasks, seed, **task_kw)
    pred = score_choices(model, tok, [p for p, _, _ in tasks], [list(c) for _, c, _ in tasks])
    model.train(was_training)
    return sum(int(p == g) for p, (_, _, g) in zip(pred, tasks)) / max(len(tasks), 1)


# ------------------------------------------------------------------------------------------------- copy probe
COPY_PROBE_SEED = 2024
COPY_PROBE_RATIO = 0.5  # the gate: second-copy attribute NLL at most this share of the first copy's


@torch.no_grad()
def copy_probe(model, tok, n: int = 32, seed: int = COPY_PROBE_SEED) -> dict:
    """Does the model copy what it cannot recall? NLL of a passage's second copy vs its first, on unseen people.

    ``n`` passages about test-split people (never in a zoo corpus) with freshly drawn attributes and landmark, each
    repeated after itself in two layouts: ``newline`` (``<s> p \\n p``, position ids ``0, 1, …``) and ``restart``
    (``<s> p <s> p``, the second copy at the first one's position ids, as ICAE's EPL decoder sees its text). Per
    layout: mean NLL (nats/token) of the attribute-value tokens (job, city, age, colour, pet, landmark, country) and of
    all tokens, in the first and the second copy. The first copy's attributes are unknowable (chance level); a model
    that copies predicts them in the second.
    """
    from actlab.data.world import ATTRIBUTE_KINDS, PERSONS, RESTART, _bucket, passage_facts, passage_repeat
    from actlab.zoo.corpus import restart_position_ids

    people = [p for p in PERSONS if _bucket("person:" + p) == "test"]
    rng = random.Random(f"copy-probe:{seed}")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    sums: dict[str, list[float]] = {}
    for _ in range(n):
        person = rng.choice(people)
        state = rng.getstate()
        for layout, restart in (("newline", False), ("restart", True)):
            rng.setstate(state)  # the same passage in both layouts
            doc = passage_repeat(rng, restart=restart, person=person)
            p = doc[: (len(doc) - (len(RESTART) if restart else 1)) // 2]
            off = len(doc) - len(p)
            enc = tok(doc, return_offsets_mapping=True)
            ids = torch.tensor([enc["input_ids"]])
            offs = enc["offset_mapping"]
            pids = restart_position_ids(ids, torch.ones_like(ids), tok.bos_token_id) if restart else None
            logits = model(input_ids=ids.to(device), position_ids=None if pids is None else pids.to(device)).logits
            nll = torch.nn.functional.cross_entropy(logits[0, :-1].float(), ids[0, 1:].to(device), reduction="none")
            facts = passage_facts(p)
            spans = [facts[k][1:] for k in ATTRIBUTE_KINDS if k in facts]

            for copy, shift in (("first", 0), ("second", off)):
                attr = sorted({j for s, e in spans for j in _overlap(offs, s + shift, e + shift)})
                allt = _overlap(offs, shift, shift + len(p))
                sums.setdefault(f"{layout}/{copy}_attr_nll", []).extend(nll[j - 1].item() for j in attr)
                sums.setdefault(f"{layout}/{copy}_nll", []).extend(nll[j - 1].item() for j in allt)
    model.train(was_training)
    out: dict = {"n": n, "seed": seed, "people": "test split (unseen)", "ratio_gate": COPY_PROBE_RATIO}
    for layout in ("newline", "restart"):
        out[layout] = {k.split("/")[1]: round(sum(v) / len(v), 4) for k, v in sums.items() if k.startswith(layout)}
    r = out["restart"]
    out["passed"] = bool(r["second_attr_nll"] <= COPY_PROBE_RATIO * r["first_attr_nll"])
    return out


def _overlap(offs: list[tuple[int, int]], a: int, b: int) -> list[int]:
    """Indices of the tokens (after the leading BOS) whose character span overlaps ``[a, b)``."""
    return [j for j, (x, y) in enumerate(offs) if x < b and y > a and j > 0]


def copy_gate(model, tok) -> dict:
    """The build gate of a copy-capable zoo decoder: :func:`copy_probe` must pass (restart layout)."""
    from actlab.core.errors import ActlabError

    probe = copy_probe(model, tok)
    if not probe["passed"]:
        r = probe["restart"]
        raise ActlabError(
            f"the build failed its copy probe: second-copy attribute NLL {r['second_attr_nll']:.3f} > "
            f"{COPY_PROBE_RATIO} x first copy's {r['first_attr_nll']:.3f} (nats/token, unseen people); "
            "the model does not copy, so it is not published"
        )
    return {"copy_probe": probe}


#: Checks run at the end of a zoo build, by entry name; each returns manifest entries or raises ActlabError.
BUILD_GATES = {"tiny-copy": copy_gate}


def run_gates(name: str, model, tok) -> dict:
    """Manifest entries of ``name``'s build gates ({} for an entry without any)."""
    return BUILD_GATES[name](model, tok) if name in BUILD_GATES else {}
