"""Reference cache (``actlab iav cache``): a reference model's outputs over chosen *and* rejected sequences.

The reference may differ from the backbone (``--ref_model``); it must share the backbone's tokenizer (the token-id
hash checks that). One safetensors file, format ``actlab-iav-cache`` version :data:`VERSION`:

    {side}.token_logps  fp32 [N, L-1]     log π_ref(y_{t+1} | y_≤t)                (DPO term)
    {side}.topk_idx     int32 [N, L-1, k]  the reference's k most likely next tokens (KL term; k = V: exact)
    {side}.topk_logp    fp32 [N, L-1, k]   their log-probs
    {side}.gathered     fp32 [N, L]       z_ref[t, y_t]                              (faithful-mode MSE)

Metadata: format, version, ref_model, dataset, split, num_samples, seq_length, max_prompt_length, loss layout, topk,
vocab_size and ``ids_sha256`` (sha256 of the tokenized pairs). A cache whose hash, length or version does not match
the training run is rejected with the command that regenerates it. The public code's pickle caches are never read.

The file is safetensors whatever its name, so the seed's ``--output_path ./cache/reference_logits_dual_hh_train_2048.pt``
works (the content, not the suffix, tells a safetensors cache from a ``torch.save`` pickle, which is refused with the
regenerate command, the same path included). Training with a cache prints ``using cached reference logits from
PATH`` once (the main process).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch

from actlab.core.errors import ActlabError
from actlab.iav.config import CacheConfig
from actlab.iav.data import Tokenized

FORMAT = "actlab-iav-cache"
VERSION = "1"
SIDES = ("chosen", "rejected")

log = logging.getLogger(__name__)


#: first bytes of a torch.save file (zip) or a raw pickle (protocol 2-5)
_PICKLE_MAGIC = (b"PK\x03\x04", b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")


def is_pickle_file(path: str | Path) -> bool:
    """True when ``path`` holds a ``torch.save`` / pickle file (the public IAV code's cache format)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
    except OSError:
        return False
    return any(head.startswith(m) for m in _PICKLE_MAGIC)


def old_cache_message(path: str | Path, hint: str) -> str:
    return (
        f"{path} is an old pickle-format cache (the public IAV code's torch.save single/dual cache), which actlab "
        f"never unpickles; {hint}"
    )


def regenerate_hint(
    ref_model: str,
    dataset: str,
    split: str,
    n: int,
    seq_length: int,
    max_prompt_length: int,
    loss: str,
    cache_file: str | Path,
) -> str:
    return (
        f"regenerate it: actlab iav cache --ref_model {ref_model} --dataset {dataset} --split {split} "
        f"--num_samples {n} --seq_length {seq_length} --max_prompt_length {max_prompt_length} --loss {loss} "
        f"--cache_file {cache_file}"
    )


@torch.no_grad()
def reference_outputs(ref_lm, data: Tokenized, topk: int = 64, batch_size: int = 16, desc: str = "cache"):
    """Compute the cache tensors of ``ref_lm`` over ``data`` (right-padded, fixed length)."""
    from actlab.core.progress import progress

    dev = next(ref_lm.parameters()).device
    n = len(data)
    out: dict[str, list[torch.Tensor]] = {}
    bar = progress(total=2 * n, desc=desc)
    vocab = None
    for side in SIDES:
        for s in range(0, n, batch_size):
            idx = torch.arange(s, min(n, s + batch_size))
            ids, attn, _ = data.side(side, idx)
            logits = ref_lm(input_ids=ids.to(dev), attention_mask=attn.to(dev)).logits.float()
            vocab = logits.shape[-1]
            k = vocab if topk == 0 else min(topk, vocab)
            logp = torch.log_softmax(logits[:, :-1], -1)
            tl = logp.gather(-1, ids[:, 1:].to(dev).unsqueeze(-1)).squeeze(-1)
            top = logp.topk(k, dim=-1)
            gathered = logits.gather(-1, ids.to(dev).unsqueeze(-1)).squeeze(-1)
            for name, t in (
                ("token_logps", tl),
                ("topk_idx", top.indices.to(torch.int32)),
                ("topk_logp", top.values),
                ("gathered", gathered),
            ):
                out.setdefault(f"{side}.{name}", []).append(t.cpu())
            bar.update(len(idx))
    bar.close()
    return {k: torch.cat(v) for k, v in out.items()}, int(vocab or 0)


def build_cache(cfg: CacheConfig) -> Path:
    """``actlab iav cache``: tokenize the preference set with the reference's tokenizer, run it, write the file."""
    from actlab.core.io import save_tensors
    from actlab.core.models import load
    from actlab.iav.data import load_rows, tokenize

    path = Path(cfg.cache_file)  # safetensors whatever the suffix (a seed-style .pt path is fine)
    rows = load_rows(cfg.dataset, cfg.split, cfg.num_samples, cfg.seed)
    ref_lm, tok = load(cfg.ref_model, dtype=cfg.dtype, device=cfg.device)
    data = tokenize(rows, tok, cfg.seq_length, cfg.max_prompt_length, cfg.loss)
    from actlab.core.io import DirLock  # one process writes a cache file (a second one exits naming the first)

    lock = DirLock.acquire(path.parent, lock_file=path.with_name(path.name + ".lock"), what="cache file")
    tensors, vocab = reference_outputs(ref_lm, data, cfg.topk, cfg.batch_size)
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "ref_model": cfg.ref_model,
        "dataset": cfg.dataset,
        "split": cfg.split,
        "num_samples": len(data),
        "seq_length": cfg.seq_length,
        "max_prompt_length": cfg.max_prompt_length,
        "loss": cfg.loss,
        "topk": cfg.topk,
        "vocab_size": vocab,
        "seed": cfg.seed,
        "ids_sha256": data.ids_hash(),
    }
    save_tensors(path, tensors, metadata=meta)
    lock.release()
    return path


def load_cache(path: str | Path, data: Tokenized, *, vocab_size: int, expect: dict, hint: str) -> dict:
    """Load a cache and check it matches ``data`` (the training run's tokenized pairs); else one-line error + hint."""
    from actlab.core.io import load_tensors

    path = Path(path)
    if not path.exists():
        raise ActlabError(f"cache file {path} not found; {hint}")
    if is_pickle_file(path):
        raise ActlabError(old_cache_message(path, hint))
    tensors, meta = load_tensors(path)
    if meta.get("format") != FORMAT:
        raise ActlabError(f"{path} is not an IAV reference cache (format {meta.get('format')!r}); {hint}")
    if meta.get("version") != VERSION:
        raise ActlabError(
            f"{path} has cache format version {meta.get('version')!r}, this actlab reads {VERSION}; {hint}"
        )
    for key in ("seq_length", "loss"):
        if key in expect and str(meta.get(key)) != str(expect[key]):
            raise ActlabError(
                f"cache {path} was built with {key}={meta.get(key)} but this run uses {key}={expect[key]}; {hint}"
            )
    if int(meta.get("num_samples", -1)) != len(data):
        raise ActlabError(f"cache {path} holds {meta.get('num_samples')} pairs but this run has {len(data)}; {hint}")
    if int(meta.get("vocab_size", -1)) != vocab_size:
        raise ActlabError(
            f"cache {path} comes from a model with vocabulary {meta.get('vocab_size')} "
            f"(ref_model {meta.get('ref_model')}) but the backbone has {vocab_size}; {hint}"
        )
    if meta.get("ids_sha256") != data.ids_hash():
        raise ActlabError(
            f"cache {path} was built over other token ids (ref_model {meta.get('ref_model')}, dataset "
            f"{meta.get('dataset')}, seq_length {meta.get('seq_length')}): its hash does not match "
            f"this run's data; {hint}"
        )
    need = [f"{s}.{k}" for s in SIDES for k in ("token_logps", "topk_idx", "topk_logp", "gathered")]
    missing = [k for k in need if k not in tensors]
    if missing:
        raise ActlabError(f"cache {path} lacks {', '.join(missing)}; {hint}")
    tensors["_meta"] = meta
    if os.environ.get("RANK", "0") == "0":
        log.info(
            f"using cached reference logits from {path} ({meta.get('num_samples')} pairs, ref_model "
            f"{meta.get('ref_model')}, top-{meta.get('topk')})"
        )
    return tensors


def cache_side(cache: dict, side: str, idx, length: int) -> dict:
    """The cached reference of rows ``idx`` cut to ``length`` tokens, as keyword arguments of :class:`loss.Side`."""
    return {
        "ref_token_logps": cache[f"{side}.token_logps"][idx, : length - 1],
        "ref_topk_idx": cache[f"{side}.topk_idx"][idx, : length - 1],
        "ref_topk_logp": cache[f"{side}.topk_logp"][idx, : length - 1],
        "ref_gathered": cache[f"{side}.gathered"][idx, :length],
    }
