"""Resumable training checkpoints: one safetensors file, written atomically, holding everything a resumed run needs.

    from actlab.core import checkpoint
    checkpoint.save(path, {"adapter.w": w, ...}, step=step, optimizer=opt, scheduler=sched, extra={"best": 0.3})
    ck = checkpoint.load(path, optimizer=opt, scheduler=sched)   # None if there is no checkpoint
    ck.step, ck.tensors["adapter.w"], ck.extra["best"]

One file = one atomic unit: the trainable state (the caller's tensors, under the caller's names), the optimizer
state (``opt.<i>.<name>`` tensors + JSON param groups, :func:`actlab.core.io.optimizer_tensors`), the scheduler's
``state_dict()`` (JSON), the RNG states (torch CPU and CUDA as tensors ``rng.*``; Python's ``random`` and NumPy's as
JSON) and the step, plus any JSON ``extra`` (counters, logs). It is written to a temp file next to ``path`` and
renamed into place, so a kill at any moment leaves either the previous checkpoint or the new one, never a mix (no
newer weights at an older step). Metadata ``format = actlab-checkpoint``, ``version = 1``.

Files written by older actlab versions (without ``format``) load with ``legacy=True``: their tensors and metadata
are returned as they are and the caller reads its own older fields.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from actlab.core.errors import ActlabError
from actlab.core.io import load_optimizer_tensors, load_tensors, optimizer_tensors, save_tensors

FORMAT = "actlab-checkpoint"
VERSION = "1"
RESERVED = ("opt.", "rng.")


@dataclass
class Checkpoint:
    """A loaded checkpoint: ``step``, the caller's ``tensors`` (no ``opt.``/``rng.`` keys), ``extra`` (JSON) and the
    raw ``meta``. ``legacy``: written by an older actlab (``step`` is None; read ``meta``/``tensors`` yourself)."""

    path: Path
    step: int | None
    tensors: dict[str, torch.Tensor]
    extra: dict = field(default_factory=dict)
    meta: dict = field(default_factory=dict)
    legacy: bool = False


def _rng_state() -> tuple[dict[str, torch.Tensor], dict]:
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    info: dict[str, Any] = {"python": random.getstate()}
    try:
        import numpy as np

        kind, keys, pos, has_gauss, cached = np.random.get_state()
        info["numpy"] = [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)]
    except ImportError:  # pragma: no cover - numpy ships with torch
        pass
    return tensors, info


def _set_rng_state(tensors: dict, info: dict) -> None:
    if "rng.torch" in tensors:
        torch.set_rng_state(tensors["rng.torch"])
    cuda = [tensors[k] for k in sorted((k for k in tensors if k.startswith("rng.cuda.")), key=lambda k: int(k[9:]))]
    if cuda and torch.cuda.is_available():
        for i, s in enumerate(cuda[: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(s, i)
    if "python" in info:
        v, state, g = info["python"]
        random.setstate((v, tuple(state), g))
    if "numpy" in info:
        import numpy as np

        kind, keys, pos, has_gauss, cached = info["numpy"]
        np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))


def save(
    path: str | Path,
    tensors: dict[str, torch.Tensor],
    *,
    step: int,
    optimizer=None,
    scheduler=None,
    rng: bool = True,
    extra: dict | None = None,
) -> Path:
    """Write one checkpoint file atomically (see the module doc). ``tensors`` names must not start with
    ``opt.``/``rng.``; tensors sharing storage (tied embeddings) are stored as copies."""
    bad = [k for k in tensors if k.startswith(RESERVED)]
    if bad:
        raise ValueError(f"checkpoint tensor names may not start with {RESERVED}: {bad[:3]}")
    out: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for k, v in tensors.items():
        v = v.detach()
        ptr = v.untyped_storage().data_ptr() if v.numel() else -1
        out[k] = v.clone() if ptr in seen else v
        if ptr != -1:
            seen.add(ptr)
    meta = {"format": FORMAT, "version": VERSION, "step": str(int(step)), "extra": json.dumps(extra or {})}
    if optimizer is not None:
        ot, meta["optimizer"] = optimizer_tensors(optimizer)
        out.update(ot)
    if scheduler is not None:
        meta["scheduler"] = json.dumps(scheduler.state_dict())
    if rng:
        rt, info = _rng_state()
        out.update(rt)
        meta["rng"] = json.dumps(info)
    return save_tensors(path, out, meta)


def load(path: str | Path, *, optimizer=None, scheduler=None, rng: bool = True) -> Checkpoint | None:
    """Read a checkpoint (None if ``path`` does not exist) and restore ``optimizer``, ``scheduler`` and the RNG
    states from it. The caller restores its own tensors from ``.tensors``. A corrupt file is an :class:`ActlabError`
    (a kill cannot produce one: writes are atomic)."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        tensors, meta = load_tensors(path)
    except ActlabError:
        raise ActlabError(
            f"checkpoint {path} is corrupt (not a readable safetensors file); delete it to start the run over"
        ) from None
    legacy = meta.get("format") != FORMAT
    if not legacy and meta.get("version") != VERSION:
        raise ActlabError(
            f"checkpoint {path} has format version {meta.get('version')!r}; this actlab reads "
            f"{VERSION}: delete it to start the run over, or use the actlab that wrote it"
        )
    if optimizer is not None and meta.get("optimizer") and not legacy:
        load_optimizer_tensors(optimizer, tensors, meta["optimizer"])
    if scheduler is not None and meta.get("scheduler"):
        scheduler.load_state_dict(json.loads(meta["scheduler"]))
    if rng and not legacy:
        _set_rng_state(tensors, json.loads(meta.get("rng") or "{}"))
    own = {k: v for k, v in tensors.items() if legacy or not k.startswith(RESERVED)}
    return Checkpoint(
        path=path,
        step=None if legacy else int(meta["step"]),
        tensors=own,
        extra={} if legacy else json.loads(meta.get("extra") or "{}"),
        meta=meta,
        legacy=legacy,
    )
