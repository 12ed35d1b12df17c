"""Held-out in-context-learning evaluation of zoo models (remapped labels, as sciq_remap / qasc_remap remap them)."""

from __future__ import annotations

import random

import torch

from actlab.zoo.world import REMAP_LABELS, class_text, join_demos, random_task


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
