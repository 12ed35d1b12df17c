"""The training corpus of a zoo model: a deterministic stream of documents drawn from a :class:`CorpusSpec` mixture.

The batch for step ``s`` is a pure function of (spec, seed, s), so a resumed build sees exactly the documents the
interrupted one would have seen, and nothing has to be stored on disk.
"""

from __future__ import annotations

import random

import torch

from actlab.data.world import generator
from actlab.zoo.specs import CorpusSpec


def check_mix(spec: CorpusSpec) -> None:
    for name in [*spec.mix, *(spec.warmup_mix or {})]:
        generator(name)


def documents(spec: CorpusSpec, seed: int, step: int, n: int, mix: dict[str, float] | None = None,
              tag: str = "corpus") -> list[str]:  # fmt: skip
    """The ``n`` documents of group ``step`` drawn from ``mix`` (default: the spec's main mix)."""
    check_mix(spec)
    mix = spec.mix if mix is None else mix
    rng = random.Random(f"{tag}:{seed}:{step}")
    names = sorted(mix)
    kinds = rng.choices(names, weights=[mix[k] for k in names], k=n)
    return [generator(k)(rng) for k in kinds]


GROUP = 8  # batches per length-bucketing group
_cache: dict = {}


def _group(
    tok, spec: CorpusSpec, seed: int, g: int, n: int, phase: str, mix: dict[str, float]
) -> list[list[list[int]]]:
    """The ``GROUP`` batches of group ``g`` of a phase: GROUP*n documents sorted by length and cut into batches (less
    padding), batch order shuffled. Cached one group deep (consecutive steps share a group)."""
    key = (id(tok), repr(spec), seed, g, n, phase)
    if _cache.get("key") != key:
        # the main phase keeps the "corpus" stream, so a spec without a warm-up gives the documents it always gave
        docs = documents(spec, seed, g, GROUP * n, mix=mix, tag="corpus" if phase == "main" else phase)
        enc = [ids[: spec.max_len - 1] + [tok.eos_token_id] for ids in tok(docs).input_ids]
        order = sorted(range(len(enc)), key=lambda i: (len(enc[i]), i))
        batches = [[enc[i] for i in order[j * n : (j + 1) * n]] for j in range(GROUP)]
        random.Random(f"order:{seed}:{g}").shuffle(batches)
        _cache.clear()
        _cache.update(key=key, batches=batches)
    return _cache["batches"]


def batch(tok, spec: CorpusSpec, seed: int, step: int, n: int) -> dict[str, torch.Tensor]:
    """Tokenized batch of training step ``step``: ``<s> doc </s>`` rows, right-padded, labels = ids with pads masked
    (-100). ``n`` documents (the main phase's batch size; the corpus's warm-up phase uses its own)."""
    phase, mix, n, s = spec.phase(step, n)
    enc = _group(tok, spec, seed, s // GROUP, n, phase, mix)[s % GROUP]
    width = max(len(e) for e in enc)
    ids = torch.full((n, width), tok.pad_token_id, dtype=torch.long)
    mask = torch.zeros((n, width), dtype=torch.long)
    for i, e in enumerate(enc):
        ids[i, : len(e)] = torch.tensor(e)
        mask[i, : len(e)] = 1
    labels = ids.masked_fill(mask == 0, -100)
    out = {"input_ids": ids, "attention_mask": mask, "labels": labels}
    pids = restart_position_ids(ids, mask, tok.bos_token_id)
    if pids is not None:  # only rows with a restart (``<s>`` inside a document) get explicit position ids
        out["position_ids"] = pids
    return out


def restart_position_ids(ids: torch.Tensor, mask: torch.Tensor, bos: int | None) -> torch.Tensor | None:
    """Position ids that restart at 0 at every ``<s>`` after a row's first token (:func:`actlab.data.world.
    passage_repeat`); ``None`` when no row has one (then the model's default ``0, 1, …`` applies unchanged)."""
    if bos is None:
        return None
    restart = (ids == bos) & (mask == 1)
    restart[:, 0] = False
    if not bool(restart.any()):
        return None
    col = torch.arange(ids.shape[1]).expand_as(ids)
    return col - torch.cummax(torch.where(restart, col, 0), dim=1).values


def corpus_sample(spec: CorpusSpec, seed: int, n: int = 5) -> list[str]:
    """A few documents, for docs and debugging."""
    return documents(spec, seed, 0, n)
