"""Paired activations: run models A and B on the same texts and keep per-layer activations.

Pooling (``pooling=``):

* ``last`` — the last real token of each text (what AC and the paper's W use; no token alignment needed);
* ``mean`` — masked mean over the text's tokens, special tokens (BOS/EOS/pad) dropped (Llama-style massive
  activations sit on the first tokens);
* ``tokens`` — token-aligned across *different* tokenizers by character offsets: a pair is kept where a token of A
  and a token of B **end at the same character** (and neither is special), so both causal states have read exactly
  the same prefix ``text[:end]``. Every such shared boundary of every text becomes one row.

Activations are read with :func:`actlab.core.capture.capture` at ``block_output`` (= HF ``hidden_states[i + 1]``).
:func:`extract_pairs` writes safetensors shards (``shard-00000.safetensors`` holding ``a``: ``[La, n, da]`` and
``b``: ``[Lb, n, db]``) plus ``pairs.json``; finished shards are skipped on rerun (resumable), and shards are split
over processes when launched by ``torchrun`` / ``accelerate launch`` (shard *s* on rank *s mod world*; the process
group comes from :func:`actlab.core.distributed.start`, which refuses a launch whose processes do not form one).
``extract.json`` records what the shards are (models, widths, pooling, layers, texts' sha256, sizes, split, seed)
before the first shard is written, and every shard carries its fingerprint: a directory holding shards of another
extraction is an error listing what differs (``overwrite=True`` deletes them and starts over), and
:func:`load_pairs` refuses a directory whose shards do not all belong to its ``pairs.json``. One process owns the
directory while it extracts (rank 0 under ``torchrun``; :class:`actlab.core.io.DirLock`).
A held-out split is fixed by the text index (a seeded permutation), so every run sees the same test rows.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from actlab.core import arch
from actlab.core.capture import capture
from actlab.core.distributed import Dist, start
from actlab.core.errors import ActlabError, check_choice
from actlab.core.io import (
    ConfigMismatch,
    DirLock,
    atomic_write_json,
    config_fingerprint,
    diff_configs,
    load_tensors,
    read_json,
    save_tensors,
)
from actlab.core.models import encode, model_inputs
from actlab.core.progress import progress

POOLINGS = ("last", "mean", "tokens")
PAIRS_FILE = "pairs.json"
RECORD_FILE = "extract.json"


def _layers(model, layers: Sequence[int] | None) -> list[int]:
    if layers is None:
        return list(range(arch.num_layers(model)))
    return [arch.check_layer(model, int(x)) for x in layers]


def _special_ids(tok) -> set[int]:
    """BOS/EOS/PAD/... ids — not UNK, which stands for real text."""
    return set(tok.all_special_ids) - {tok.unk_token_id}


def _content_mask(tok, enc) -> torch.Tensor:
    """1 on real, non-special tokens (pads and BOS/EOS/... are 0)."""
    special = _special_ids(tok)
    ids = enc["input_ids"]
    keep = enc["attention_mask"].bool().clone()
    for s in special:
        keep &= ids != s
    return keep


@torch.no_grad()
def pooled_activations(
    model,
    tok,
    texts: Sequence[str],
    layers: Sequence[int] | None = None,
    pooling: str = "last",
    batch_size: int = 16,
    max_length: int | None = 256,
) -> torch.Tensor:
    """``[L, n, d]`` float32 block-output activations of ``texts``, pooled per text (``last`` or ``mean``)."""
    check_choice("pooling", pooling, ("last", "mean"))
    layer_ids = _layers(model, layers)
    out = []
    for i in range(0, len(texts), batch_size):
        enc = encode(tok, texts[i : i + batch_size], side="left", max_length=max_length)
        keep = _content_mask(tok, enc)
        if not bool(keep.any(1).all()):
            raise ActlabError("a text has no content tokens after dropping special tokens (empty text?)")
        with capture(
            model, "block_output", layers=layer_ids, positions=None, device="cpu", dtype=torch.float32
        ) as cap:
            model(**model_inputs(model, enc))
        h = cap.stack()  # [L, B, T, d]
        if pooling == "last":
            T = keep.shape[1]
            last = T - 1 - keep.flip(1).long().argmax(1)  # last content token (skips a trailing EOS)
            out.append(h[:, torch.arange(h.shape[1]), last])
        else:
            m = keep.float()[None, :, :, None]
            out.append((h * m).sum(2) / m.sum(2))
    return torch.cat(out, 1) if out else torch.empty(len(layer_ids), 0, arch.hidden_size(model))


def shared_boundaries(tok_a, tok_b, text: str) -> list[tuple[int, int]]:
    """``(i_a, i_b)`` token indices (into each tokenizer's ``input_ids`` with special tokens) of tokens that end at
    the same character offset of ``text``; special tokens (empty offsets) are skipped."""
    ends = []
    for tok in (tok_a, tok_b):
        enc = tok(text, return_offsets_mapping=True, add_special_tokens=True)
        special = _special_ids(tok)
        e = {}
        for idx, (tid, (s, t)) in enumerate(zip(enc["input_ids"], enc["offset_mapping"])):
            if tid in special or t <= s:
                continue
            e[t] = idx  # a later token ending at the same char (rare) wins: it has read the same prefix
        ends.append(e)
    return [(ends[0][c], ends[1][c]) for c in sorted(set(ends[0]) & set(ends[1]))]


@torch.no_grad()
def _token_states(model, tok, text: str, layer_ids: list[int]) -> torch.Tensor:
    enc = encode(tok, [text], side="left")
    with capture(model, "block_output", layers=layer_ids, positions=None, device="cpu", dtype=torch.float32) as cap:
        model(**model_inputs(model, enc))
    return cap.stack()[:, 0]  # [L, T, d]


def token_aligned_activations(
    model_a,
    tok_a,
    model_b,
    tok_b,
    texts: Sequence[str],
    layers_a: Sequence[int] | None = None,
    layers_b: Sequence[int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """Token-level pairs across tokenizers → ``(a [La, m, da], b [Lb, m, db], text_index [m])``."""
    la, lb = _layers(model_a, layers_a), _layers(model_b, layers_b)
    xa, xb, src = [], [], []
    for i, text in enumerate(texts):
        pairs = shared_boundaries(tok_a, tok_b, text)
        if not pairs:
            continue
        ha, hb = _token_states(model_a, tok_a, text, la), _token_states(model_b, tok_b, text, lb)
        ia = torch.tensor([p[0] for p in pairs])
        ib = torch.tensor([p[1] for p in pairs])
        xa.append(ha[:, ia])
        xb.append(hb[:, ib])
        src += [i] * len(pairs)
    if not xa:
        raise ActlabError("no shared token boundaries between the two tokenizers on these texts")
    return torch.cat(xa, 1), torch.cat(xb, 1), src


# ----------------------------------------------------------------------------------------------------- on disk
@dataclass
class Paired:
    """Paired activations loaded from a pairs directory: ``a`` ``[La, n, da]``, ``b`` ``[Lb, n, db]``."""

    a: torch.Tensor
    b: torch.Tensor
    layers_a: list[int]
    layers_b: list[int]
    test: torch.Tensor  # bool [n]
    meta: dict

    def split(self, which: str, model: str, layer: int) -> torch.Tensor:
        """Rows of ``which`` ∈ {train, test} for model ``a``/``b`` at (model) layer index ``layer``."""
        check_choice("split", which, ("train", "test"))
        acts, ids = (self.a, self.layers_a) if model == "a" else (self.b, self.layers_b)
        if layer not in ids:
            raise ActlabError(f"layer {layer} was not extracted for model {model.upper()}; extracted: {ids}")
        x = acts[ids.index(layer)]
        return x[self.test] if which == "test" else x[~self.test]


def heldout_mask(n_texts: int, frac: float, seed: int = 0) -> torch.Tensor:
    """A fixed held-out set of text indices (seeded permutation, ``round(frac·n)`` of them, at least 1 if frac>0)."""
    if not 0.0 <= frac < 1.0:
        raise ActlabError(f"heldout fraction must be in [0, 1), got {frac}")
    k = max(1, round(frac * n_texts)) if frac > 0 else 0
    perm = np.random.RandomState(seed).permutation(n_texts)
    m = torch.zeros(n_texts, dtype=torch.bool)
    m[torch.as_tensor(perm[:k], dtype=torch.long)] = True
    return m


def _texts_sha(texts: Sequence[str]) -> str:
    return hashlib.sha256(json.dumps(list(texts), ensure_ascii=False).encode()).hexdigest()


def _recorded(out: Path) -> dict | None:
    """What the directory's shards were extracted with: ``extract.json``, or (older actlab) ``pairs.json``."""
    if (out / RECORD_FILE).exists():
        return read_json(out / RECORD_FILE)
    if (out / PAIRS_FILE).exists():
        return read_json(out / PAIRS_FILE)
    return None


def _check_dir(out: Path, want: dict, overwrite: bool, clear: bool) -> None:
    """Shards already in ``out`` must come from the same extraction; else error, or with ``overwrite`` delete them."""
    old = _recorded(out)
    shards = sorted(out.glob("shard-*.safetensors"))
    if old is None:
        diff = ["extract.json: missing, shards of unknown origin"] if shards else []
    else:  # fields an older record lacks (texts_sha256, ...) are not held against it
        diff = diff_configs(old, want, defaults={k: v for k, v in want.items() if k not in old})
    if not diff:
        return
    if not overwrite:
        raise ConfigMismatch(
            f"{out} holds activations of another extraction ({'; '.join(diff[:8])}); use "
            "--overwrite to replace them, or another output directory"
        )
    if clear:
        for p in [*shards, out / PAIRS_FILE, out / RECORD_FILE]:
            p.unlink(missing_ok=True)


def extract_pairs(
    model_a,
    tok_a,
    model_b,
    tok_b,
    texts: Sequence[str],
    out_dir: str | Path,
    *,
    layers_a: Sequence[int] | None = None,
    layers_b: Sequence[int] | None = None,
    pooling: str = "last",
    shard_size: int = 256,
    batch_size: int = 16,
    heldout: float = 0.2,
    seed: int = 0,
    names: tuple[str, str] = ("A", "B"),
    overwrite: bool = False,
) -> Path:
    """Write paired activations of ``texts`` as shards under ``out_dir``; resumable and shardable over processes.

    Shards of another extraction in ``out_dir`` are an error listing what differs, unless ``overwrite``."""
    check_choice("pooling", pooling, POOLINGS)
    if len(texts) == 0:
        raise ActlabError("no texts to extract activations from")
    la, lb = _layers(model_a, layers_a), _layers(model_b, layers_b)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ActlabError(f"output directory {out} is a file; give a directory")
    want = {
        "models": list(names),
        "d_a": arch.hidden_size(model_a),
        "d_b": arch.hidden_size(model_b),
        "pooling": pooling,
        "layers_a": la,
        "layers_b": lb,
        "n_texts": len(texts),
        "texts_sha256": _texts_sha(texts),
        "shard_size": shard_size,
        "heldout": heldout,
        "seed": seed,
    }
    fingerprint = config_fingerprint(want)
    dist = start(verb="xmodel extract")
    rank, world = dist.rank, dist.world
    if out.exists():
        _check_dir(out, want, overwrite, clear=False)  # every rank: the same error everywhere, before any write
    lock = DirLock.acquire(out, what="pairs directory") if rank == 0 else None
    try:
        if rank == 0:
            for tmp in out.glob(".*.tmp"):  # writes cut by a kill; the other ranks write only after the barrier
                tmp.unlink()
            _check_dir(out, want, overwrite, clear=True)
            atomic_write_json(out / RECORD_FILE, {**want, "fingerprint": fingerprint})
        dist.barrier()
        t0 = time.perf_counter()
        _extract_shards(
            model_a, tok_a, model_b, tok_b, texts, out, la, lb, pooling, shard_size, batch_size, dist, fingerprint
        )
        if rank == 0:
            atomic_write_json(
                out / PAIRS_FILE,
                {
                    "models": list(names),
                    "pooling": pooling,
                    "layers_a": la,
                    "layers_b": lb,
                    "n_texts": len(texts),
                    "n_shards": (len(texts) + shard_size - 1) // shard_size,
                    "shard_size": shard_size,
                    "heldout": heldout,
                    "seed": seed,
                    "d_a": want["d_a"],
                    "d_b": want["d_b"],
                    "world_size": world,
                    "texts_sha256": want["texts_sha256"],
                    "fingerprint": fingerprint,
                    "seconds_rank0": round(time.perf_counter() - t0, 3),
                },
            )
    finally:
        if lock is not None:
            lock.release()
    return out


def _extract_shards(
    model_a,
    tok_a,
    model_b,
    tok_b,
    texts,
    out: Path,
    la,
    lb,
    pooling,
    shard_size,
    batch_size,
    dist: Dist,
    fingerprint: str,
) -> None:
    rank, world = dist.rank, dist.world
    n_shards = (len(texts) + shard_size - 1) // shard_size
    mine = [s for s in range(n_shards) if s % world == rank]
    for s in progress(mine, total=len(mine), desc=f"extract (rank {rank}/{world})"):
        path = out / f"shard-{s:05d}.safetensors"
        if path.exists():
            continue
        chunk = list(texts[s * shard_size : (s + 1) * shard_size])
        if pooling == "tokens":
            a, b, src = token_aligned_activations(model_a, tok_a, model_b, tok_b, chunk, la, lb)
            idx = torch.tensor(src, dtype=torch.long) + s * shard_size
        else:
            a = pooled_activations(model_a, tok_a, chunk, la, pooling, batch_size)
            b = pooled_activations(model_b, tok_b, chunk, lb, pooling, batch_size)
            idx = torch.arange(s * shard_size, s * shard_size + len(chunk))
        save_tensors(path, {"a": a, "b": b, "text_index": idx}, {"rank": str(rank), "fingerprint": fingerprint})
    dist.barrier()


def load_pairs(out_dir: str | Path) -> Paired:
    """Load every shard of a pairs directory (in shard order) with its held-out mask (by text index)."""
    out = Path(out_dir)
    meta = read_json(out / PAIRS_FILE)
    a, b, idx = [], [], []
    for s in range(meta["n_shards"]):
        path = out / f"shard-{s:05d}.safetensors"
        t, smeta = load_tensors(path)
        if "fingerprint" in meta and smeta.get("fingerprint") != meta["fingerprint"]:
            raise ActlabError(
                f"{path} comes from another extraction than {out / PAIRS_FILE}; rerun `actlab xmodel "
                "extract` with --overwrite into this directory, or use another one"
            )
        a.append(t["a"])
        b.append(t["b"])
        idx.append(t["text_index"])
    index = torch.cat(idx)
    test = heldout_mask(meta["n_texts"], meta["heldout"], meta["seed"])[index]
    return Paired(torch.cat(a, 1), torch.cat(b, 1), meta["layers_a"], meta["layers_b"], test, meta)
