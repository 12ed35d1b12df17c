"""The training corpus of a zoo model: a deterministic stream of documents drawn from a :class:`CorpusSpec` mixture.

The batch for step ``s`` is a pure function of (spec, seed, s), so a resumed build sees exactly the documents the
interrupted one would have seen, and nothing has to be stored on disk.
"""

from __future__ import annotations

import random

import torch

from actlab.core.errors import unknown_choice
from actlab.zoo.specs import CorpusSpec
from actlab.zoo.world import DOC_GENERATORS


def check_mix(spec: CorpusSpec) -> None:
    for name in [*spec.mix, *(spec.warmup_mix or {})]:
        if name not in DOC_GENERATORS:
            raise unknown_choice("corpus generator", name, DOC_GENERATORS)


def documents(spec: CorpusSpec, seed: int, step: int, n: int, mix: dict[str, float] | None = None,
              tag: str = "corpus") -> list[str]:  # fmt: skip
    """The ``n`` documents of group ``step`` drawn from ``mix`` (default: the spec's main mix)."""
    check_mix(spec)
    mix = spec.mix if mix is None else mix
    rng = random.Random(f"{tag}:{seed}:{step}")
    names = sorted(mix)
    kinds = rng.choices(names, weights=[mix[k] for k in names], k=n)
    return [DOC_GENERATORS[k](rng) for k in kinds]


GROUP = 8  # batches per length-bucketing group
_cache: dict = {}


def _group(tok, spec: CorpusSpec, seed: int, g: int, n: int, phase: str, mix: dict[str, float]) -> list[list[list[int]]]:
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
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def corpus_sample(spec: CorpusSpec, seed: int, n: int = 5) -> list[str]:
    """A few documents, for docs and debugging."""
    return documents(spec, seed, 0, n)
