"""ICL targets: what the frozen base model does *with* demos, recorded once and cached on disk.

For each train/dev example the teacher (base model, no adapter) reads ``build_icl_prompt(demos, query)`` and
greedily generates up to T tokens (stopping at EOS only, as upstream). We keep, per example:

* ``ids``       ``[k]``         the greedy response ŷ (k ≤ T; ends in EOS when the teacher stopped early) — also the
                                ``icl_outputs`` SFT labels;
* ``acts``      ``[L, k, d]``   the activation at the aligned site for every response-predicting position
                                (the last prompt token and the next k-1), every layer (or ``act_layers``);
* ``topk_idx`` / ``topk_logp``  ``[k, K]`` the teacher's top-K next-token log-probs (for ``tokl``).

Built **with a KV cache** (a greedy loop on ``past_key_values`` + :func:`actlab.core.capture.capture` at position
-1 of every call: the prefill's last token, then each decode step), in left-padded batches. :func:`build_targets_reforward` is
upstream's way (one full forward of the growing prompt per token), kept for the benchmark and as a test oracle.

Cache layout::

    {cache_dir}/{model}-{model_fp}/{dataset}/{N}_{run}/T{T}_{site}_{layers}_d{max_demos}_{data_sha}.safetensors
      tensors  "{split}/{i}/ids|acts|topk_idx|topk_logp"
      metadata model_id, model_fp, data_file, data_sha, T, site, layers, n_train, n_dev, format

A file that does not open, misses a tensor or has other metadata is reported (a warning) and rebuilt. Under several
processes the trainer lets rank 0 build and write the file; the others then read it.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from actlab.core.capture import capture
from actlab.core.errors import ActlabError
from actlab.core.io import actlab_home, load_tensors, save_tensors
from actlab.core.models import pad_left, short_name
from actlab.core.progress import progress
from actlab.data import build_icl_prompt

log = logging.getLogger(__name__)

FORMAT = "ia2-targets-1"
SPLITS = ("train", "dev")


@dataclass
class Encoded:
    """One example, tokenized: student query, teacher ICL prompt, ground-truth label ids."""

    query_ids: list[int]
    teacher_ids: list[int]
    gt_ids: list[int]
    n_demos: int


def encode_examples(
    tok, examples: Sequence[dict], T: int, max_icl_demos: int | None = None, max_len: int | None = None
) -> list[Encoded]:
    """Tokenize examples (``{"prompt", "answer", "demos"}``) for student and teacher.

    The teacher prompt drops leading demos while ``len + T`` would exceed ``max_len`` (the model's positions).
    Ground-truth labels are the answer's tokens + EOS, cut to T (upstream's ``G = len(gt) + EOS``).
    """
    out = []
    eos = tok.eos_token_id
    for ex in examples:
        q = tok(ex["prompt"])["input_ids"]
        demos = list(ex.get("demos") or [])
        if max_icl_demos is not None:
            demos = demos[:max_icl_demos]
        t_ids = tok(build_icl_prompt(demos, ex))["input_ids"]
        while max_len is not None and demos and len(t_ids) + T > max_len:
            demos = demos[1:]
            t_ids = tok(build_icl_prompt(demos, ex))["input_ids"]
        if max_len is not None and len(q) + T > max_len:
            raise ActlabError(
                f"a query of {len(q)} tokens + T={T} exceeds the model's {max_len} positions; "
                "use a smaller --num_generated_tokens"
            )
        gt = tok(str(ex["answer"]), add_special_tokens=False)["input_ids"] + ([eos] if eos is not None else [])
        out.append(Encoded(q, t_ids, gt[:T], len(demos)))
    return out


# ------------------------------------------------------------------------------------------------------ building
def _response_len(row: list[int], eos: int | None) -> int:
    if eos is not None and eos in row:
        return row.index(eos) + 1
    return len(row)


@torch.no_grad()
def build_targets(
    model,
    tok,
    teacher_ids: Sequence[Sequence[int]],
    T: int,
    site: str = "attn_output",
    layers: Sequence[int] | None = None,
    topk: int = 64,
    batch_size: int = 8,
    desc: str = "ICL targets",
) -> list[dict]:
    """Greedy ICL responses + activations with a KV cache, in left-padded batches.

    A plain greedy loop: one prefill forward, then one single-token forward per step on the cache (positions from
    the attention mask, as ``generate`` does), stopping when every row has produced EOS or T tokens. The site is
    read at the last position of every call.
    """
    from actlab.core.models import position_ids_from_mask

    model.eval()
    dev = next(model.parameters()).device
    eos = tok.eos_token_id
    pad = tok.pad_token_id if tok.pad_token_id is not None else eos
    order = sorted(range(len(teacher_ids)), key=lambda i: len(teacher_ids[i]))  # similar lengths share a batch
    res: dict[int, dict] = {}
    bar = progress(total=len(order), desc=desc)
    for s in range(0, len(order), batch_size):
        idx = order[s : s + batch_size]
        ids, mask = pad_left([teacher_ids[i] for i in idx], pad)
        ids, mask = ids.to(dev), mask.to(dev)
        pos = position_ids_from_mask(mask)
        done = torch.zeros(len(idx), dtype=torch.bool, device=dev)
        new, step_logits = [], []
        with capture(model, site, layers, positions=-1, device="cpu") as cap:
            out = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True)
            for t in range(T):
                lg = out.logits[:, -1].float()
                nxt = lg.argmax(-1)
                new.append(nxt)
                step_logits.append(lg.cpu())
                if eos is not None:
                    done |= nxt == eos
                if t == T - 1 or bool(done.all()):
                    break
                mask = torch.cat([mask, torch.ones_like(mask[:, :1])], 1)
                pos = pos[:, -1:] + 1
                out = model(
                    input_ids=nxt[:, None],
                    attention_mask=mask,
                    position_ids=pos,
                    past_key_values=out.past_key_values,
                    use_cache=True,
                )
        acts = cap.stack(all_calls=True)  # [L, B, n_steps, d]
        new_ids = torch.stack(new, 1).cpu()
        logp = torch.log_softmax(torch.stack(step_logits, 1), -1)  # [B, n_steps, V]
        tv, ti = logp.topk(min(topk, logp.shape[-1]), dim=-1)
        for j, i in enumerate(idx):
            k = _response_len(new_ids[j].tolist(), eos)
            res[i] = {
                "ids": new_ids[j, :k].clone(),
                "acts": acts[:, j, :k].clone(),
                "topk_idx": ti[j, :k].clone(),
                "topk_logp": tv[j, :k].clone(),
            }
        bar.update(len(idx))
    bar.close()
    return [res[i] for i in range(len(teacher_ids))]


@torch.no_grad()
def build_targets_reforward(
    model,
    tok,
    teacher_ids: Sequence[Sequence[int]],
    T: int,
    site: str = "attn_output",
    layers: Sequence[int] | None = None,
    topk: int = 64,
) -> list[dict]:
    """Upstream's way: one example at a time, one full forward of the growing prompt per generated token."""
    model.eval()
    dev = next(model.parameters()).device
    eos = tok.eos_token_id
    out = []
    for t_ids in teacher_ids:
        seq = list(t_ids)
        ids, acts, tis, tvs = [], [], [], []
        for _ in range(T):
            with capture(model, site, layers, positions=-1, device="cpu") as cap:
                lg = model(input_ids=torch.tensor([seq], device=dev)).logits[0, -1].float().cpu()
            acts.append(cap.stack()[:, 0])
            logp = torch.log_softmax(lg, -1)
            tv, ti = logp.topk(min(topk, logp.shape[-1]))
            tis.append(ti)
            tvs.append(tv)
            nxt = int(lg.argmax())
            ids.append(nxt)
            seq.append(nxt)
            if nxt == eos:
                break
        out.append(
            {
                "ids": torch.tensor(ids),
                "acts": torch.stack(acts, 1),
                "topk_idx": torch.stack(tis),
                "topk_logp": torch.stack(tvs),
            }
        )
    return out


# --------------------------------------------------------------------------------------------------------- cache
def model_fingerprint(model) -> str:
    """A short hash of the base model's config and a sample of its weights (embeddings, first/last params)."""
    from actlab.core.arch import unwrap

    base = unwrap(model)
    h = hashlib.sha256()
    h.update(base.config.to_json_string(use_diff=False).encode())
    params = list(base.parameters())
    for p in (params[0], params[len(params) // 2], params[-1]):
        h.update(p.detach().flatten()[:256].float().cpu().numpy().tobytes())
    return h.hexdigest()[:12]


def file_sha(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def cache_path(
    cache_dir: str | Path,
    model_id: str,
    model_fp: str,
    dataset: str,
    N: int,
    run: int,
    T: int,
    site: str,
    layers: Sequence[int] | None,
    max_demos: int | None,
    data_sha: str,
) -> Path:
    site_slug = site.replace("/", "-").replace("{layer}", "L")
    lay = "all" if layers is None else "-".join(str(x) for x in layers)
    dm = "all" if max_demos is None else str(max_demos)
    return (
        Path(cache_dir)
        / f"{short_name(model_id)}-{model_fp}"
        / dataset
        / f"{N}_{run}"
        / f"T{T}_{site_slug}_{lay}_d{dm}_{data_sha}.safetensors"
    )


def default_cache_dir() -> Path:
    return actlab_home() / "ia2_targets"


#: recorded in a cache for the reader, not compared: the data's bytes (``data_sha``) and the model's weights
#: (``model_fp``) are what a cache depends on, not where they were read from (two clones sharing $ACTLAB_HOME, a model
#: given as a path)
WHERE_FROM = ("data_file", "model_id")


def _expected_meta(meta: dict, n: dict[str, int]) -> dict:
    return {
        **{k: str(v) for k, v in meta.items() if k not in WHERE_FROM},
        "n_train": str(n["train"]),
        "n_dev": str(n["dev"]),
        "format": FORMAT,
    }


def load_cached(path: Path, meta: dict, n: dict[str, int]) -> dict[str, list[dict]] | None:
    """The cached targets if ``path`` is a valid cache for ``meta``; None (with a warning) otherwise."""
    if not path.exists():
        return None
    try:
        tensors, got = load_tensors(path)
    except ActlabError:
        log.warning("ia2: target cache %s is corrupt; rebuilding it", path)
        return None
    want = _expected_meta(meta, n)
    if any(got.get(k) != v for k, v in want.items()):
        log.warning("ia2: target cache %s was built for other settings; rebuilding it", path)
        return None
    out: dict[str, list[dict]] = {}
    try:
        for split in SPLITS:
            out[split] = [
                {f: tensors[f"{split}/{i}/{f}"] for f in ("ids", "acts", "topk_idx", "topk_logp")}
                for i in range(n[split])
            ]
    except KeyError:
        log.warning("ia2: target cache %s is incomplete; rebuilding it", path)
        return None
    return out


def save_cache(path: Path, targets: dict[str, list[dict]], meta: dict) -> None:
    save_tensors(
        path, _flat({s: targets[s] for s in SPLITS}), _expected_meta(meta, {s: len(targets[s]) for s in SPLITS})
    )


def get_targets(
    model,
    tok,
    encoded: dict[str, list[Encoded]],
    *,
    cache_file: Path,
    meta: dict,
    T: int,
    site: str,
    layers: Sequence[int] | None,
    topk: int,
    batch_size: int,
    chunk_size: int | None = None,
) -> tuple[dict[str, list[dict]], bool]:
    """Targets for the train and dev examples: from ``cache_file`` if valid, else built and cached.

    The build saves its progress every ``chunk_size`` examples (default 8 batches) to ``*.partial.safetensors``;
    a build killed midway resumes from there. Returns ``(targets, from_cache)``.
    """
    n = {s: len(encoded[s]) for s in SPLITS}
    with _file_lock(cache_file):  # parallel sweep workers of one run build the targets once
        cached = load_cached(cache_file, meta, n)
        if cached is not None:
            return cached, True
        partial = cache_file.with_name(cache_file.name.replace(".safetensors", ".partial.safetensors"))
        targets = _load_partial(partial, meta)
        chunk = chunk_size or max(1, batch_size) * 8
        for split in SPLITS:
            ids = [e.teacher_ids for e in encoded[split]]
            have = targets.setdefault(split, [])[: len(ids)]
            targets[split] = have
            for start in range(len(have), len(ids), chunk):
                have.extend(
                    build_targets(
                        model,
                        tok,
                        ids[start : start + chunk],
                        T,
                        site,
                        layers,
                        topk,
                        batch_size,
                        desc=f"ICL targets ({split} {start}-{min(len(ids), start + chunk)})",
                    )
                )
                if len(have) < len(ids) or split == "train":  # progress survives a kill
                    save_tensors(
                        partial,
                        _flat(targets),
                        {
                            **_expected_meta(meta, {s: 0 for s in SPLITS}),
                            **{f"done_{x}": str(len(targets.get(x, []))) for x in SPLITS},
                        },
                    )
        save_cache(cache_file, targets, meta)
        partial.unlink(missing_ok=True)
    return targets, False


def _flat(targets: dict[str, list[dict]]) -> dict:
    return {f"{split}/{i}/{f}": v for split, ts in targets.items() for i, t in enumerate(ts) for f, v in t.items()}


def _load_partial(path: Path, meta: dict) -> dict[str, list[dict]]:
    """Targets already built by an interrupted build (same settings), else empty."""
    if not path.exists():
        return {}
    try:
        tensors, got = load_tensors(path)
        want = _expected_meta(meta, {s: 0 for s in SPLITS})
        if any(got.get(k) != v for k, v in want.items()):
            return {}
        out = {
            s: [
                {f: tensors[f"{s}/{i}/{f}"] for f in ("ids", "acts", "topk_idx", "topk_logp")}
                for i in range(int(got.get(f"done_{s}", 0)))
            ]
            for s in SPLITS
        }
    except (ActlabError, KeyError, ValueError):
        return {}
    log.info("ia2: resuming the target build from %s (%s)", path, ", ".join(f"{len(v)} {k}" for k, v in out.items()))
    return out


@contextlib.contextmanager
def _file_lock(path: Path):
    """An exclusive advisory lock on ``{path}.lock`` (POSIX ``flock``; a no-op where unavailable)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover (Windows)
        yield
        return
    with open(f"{path}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
