"""``actlab iav train``: train the IAV heads on preference pairs (frozen backbone; accelerate for multi-GPU).

    actlab iav train --model_name_or_path tiny --dataset syn_hh --num_epochs 1 --batch_size 8 --learning_rate 5e-3
    accelerate launch --multi_gpu --num_processes 2 -m actlab.cli.main iav train ...   # data parallel (also CPU)

Run directory ``output_dir``: ``config.json``, ``metrics.jsonl`` (slash names), ``checkpoint-<step>/`` every
``save_steps`` (the heads, :meth:`IAVModel.save_pretrained`, then ``checkpoint.safetensors``: heads, optimizer,
scheduler and RNG state and the step in one atomically written file, :mod:`actlab.core.checkpoint`; the newest
``save_total_limit`` are kept; a killed run resumes from the newest complete one, with ``metrics.jsonl`` cut back to
its step), ``heads/`` (the final heads), ``COMPLETE``. One process owns the directory (the main one under
``accelerate launch``); a complete run is skipped on rerun only if its recorded config has the same fingerprint
(:data:`EXCLUDE` lists the fields that do not count), else it is an error listing the fields, or ``--overwrite``.

The reference is, in order: ``--cache_file`` (cached reference outputs), ``--ref_model`` (a live second model — slow,
kept for comparison), or the frozen copy of ``lm_head`` (exact, since the backbone is frozen; the default).

Several processes: the launch is checked by :func:`actlab.core.distributed.start` first (a launch whose processes
do not form one group is refused in one line instead of training N copies into one directory; without GPUs the
processes form a gloo group on CPU), then accelerate's :class:`~accelerate.Accelerator` wraps the heads in DDP
(``acc.prepare``: the path an FSDP config of ``accelerate launch`` applies to). Each rank takes its own
``batch_size`` pairs of every global batch (``batch_size × processes × grad_accum`` pairs per optimizer step);
rank 0 decides skip-done, owns the run directory and evaluates; the others read its checkpoints on resume.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import shutil
import time
from pathlib import Path

import torch

from actlab.core import distributed
from actlab.core.errors import ActlabError
from actlab.iav.config import TrainConfig
from actlab.iav.loss import Packed, Side, corrected_loss_packed, iav_loss

log = logging.getLogger(__name__)

CKPT = "checkpoint"  # the checkpoint directory of older actlab versions (still resumed)
CKPT_FILE = "checkpoint.safetensors"
CKPT_PREFIX = "checkpoint-"
#: config fields that do not change the trained heads
EXCLUDE = (
    "output_dir",
    "save_steps",
    "save_total_limit",
    "eval_steps",
    "wandb",
    "report_to",
    "device",
    "overwrite",
    "gradient_checkpointing",
)


# -------------------------------------------------------------------------------------------- batch → loss
def side_outputs(
    iav, ids, attn, resp, alpha: float, ref: bool = True, ref_lm=None, cache_kw: dict | None = None, fwd=None
):
    """Run the backbone once and build a :class:`Side` (reference from the head, a live model, or the cache).

    ``fwd`` is the module to call (the DDP-wrapped model under ``accelerate launch``); default ``iav``.
    """
    dev = iav.device
    ids, attn, resp = ids.to(dev), attn.to(dev), resp.to(dev)
    use_head = ref and ref_lm is None and not cache_kw
    out = (fwd or iav)(ids, attn, alpha=alpha, ref=use_head)
    kw = {}
    if ref_lm is not None:
        with torch.no_grad():
            kw["z_ref"] = ref_lm(input_ids=ids, attention_mask=attn).logits.float()
    elif cache_kw:
        kw = {k: v.to(dev) for k, v in cache_kw.items()}
    elif use_head:
        kw["z_ref"] = out["z_ref"]
    return Side(ids=ids, attn=attn, resp=resp, z_final=out["z_final"], z_base=out["z_base"], a=out["a"], **kw)


def packed_batch(iav, data, idx, length: int, ref_lm=None, cache=None, fwd=None) -> Packed:
    """A :class:`Packed` batch: chosen and rejected rows interleaved (pair i = rows 2i, 2i+1) in **one** backbone
    pass over the whole sequence; hidden states and targets kept only where a response token is next.

    A live ``ref_lm`` runs its body over the same rows and its head at the same positions (inside the loss), so the
    two references differ by exactly one body forward.
    """
    from actlab.core.arch import output_logits
    from actlab.iav.cache import cache_side

    dev = iav.device

    def pairs(c, r):  # [B, …] chosen, [B, …] rejected → [2B, …] rows c0, r0, c1, r1, …
        return torch.stack([c, r], 1).flatten(0, 1).to(dev)

    (ci, ca, cr), (ri, ra, rr) = data.side("chosen", idx, length), data.side("rejected", idx, length)
    ids, attn, resp = pairs(ci, ri), pairs(ca, ra), pairs(cr, rr)
    sel = (resp[:, 1:] * attn[:, 1:]).bool()  # position t predicts response token t+1
    row = torch.arange(ids.shape[0], device=dev)[:, None].expand_as(sel)[sel]
    h = (fwd or iav)(ids, attn, select=sel, heads=False)["hidden"]
    if ref_lm is not None:
        with torch.no_grad():
            h_ref = ref_lm.base_model(input_ids=ids, attention_mask=attn).last_hidden_state[:, :-1][sel]
        kw = {"h_ref": h_ref, "ref_head": lambda x: output_logits(ref_lm, x).float()}  # the model's own head path
    elif cache is not None:
        c, r = cache_side(cache, "chosen", idx, length), cache_side(cache, "rejected", idx, length)
        kw = {k: pairs(c[k], r[k])[sel] for k in ("ref_token_logps", "ref_topk_idx", "ref_topk_logp")}
    else:
        kw = {"h_ref": h, "ref_head": iav.ref_logits, "shared_ref": True}
    return Packed(h=h, y=ids[:, 1:][sel].long(), row=row, n_pairs=len(idx), **kw)


def batch_loss(iav, data, idx, loss_cfg, cache=None, ref_lm=None, fwd=None, packed: bool = True):
    """Loss and metrics of pairs ``idx`` (cut to their longest real length).

    The corrected loss runs packed (both sides in one pass, heads over response positions only) unless ``packed=False``
    (the simple full-sequence implementation, kept as the reference); the faithful loss needs every position.
    """
    from actlab.iav.cache import cache_side

    length = data.batch_length(idx)
    if packed and loss_cfg.loss == "corrected":
        return corrected_loss_packed(packed_batch(iav, data, idx, length, ref_lm, cache, fwd), iav, loss_cfg)
    sides = []
    for name in ("chosen", "rejected"):
        ids, attn, resp = data.side(name, idx, length)
        ckw = cache_side(cache, name, idx, length) if cache is not None else None
        sides.append(side_outputs(iav, ids, attn, resp, loss_cfg.train_alpha, ref_lm=ref_lm, cache_kw=ckw, fwd=fwd))
    return iav_loss(sides[0], sides[1], loss_cfg)


def keep_freed_memory() -> bool:
    """Stop glibc from giving freed blocks back to the OS after every step (CPU training).

    By default glibc serves blocks ≥ 128 KB–32 MB with ``mmap`` and trims the heap on free, so the few-MB ``[N, V]``
    logit tensors of every step are page-faulted in again (~4,800 faults, ~10 ms of a ~50 ms step on tiny's shape).
    Setting the mmap and trim thresholds keeps them in the heap for reuse (the effect of ``LD_PRELOAD``-ing jemalloc
    or tcmalloc, which PyTorch recommends for CPU). Returns whether it was applied (glibc only; a no-op elsewhere).
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if not name or os.name != "posix":
        return False
    try:
        libc = ctypes.CDLL(name)
        m_trim_threshold, m_mmap_threshold = -1, -3  # malloc.h
        return bool(libc.mallopt(m_mmap_threshold, 32 << 20)) and bool(libc.mallopt(m_trim_threshold, 1 << 30))
    except (OSError, AttributeError):
        return False


def adamw(params, lr: float, weight_decay: float = 0.01) -> torch.optim.AdamW:
    """The public code's optimiser (AdamW 0.9/0.999/1e-8), as one fused kernel over all heads."""
    return torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=weight_decay, fused=True)


def checkpoint_dirs(out: Path, complete: bool = True) -> list[Path]:
    """``checkpoint-<step>/`` directories of run ``out``, oldest first; ``complete``: only those whose checkpoint
    file was written (it is written last, atomically)."""
    found = []
    for d in Path(out).glob(CKPT_PREFIX + "*"):
        n = d.name[len(CKPT_PREFIX) :]
        if n.isdigit() and d.is_dir() and (not complete or (d / CKPT_FILE).exists()):
            found.append((int(n), d))
    return [d for _, d in sorted(found)]


def latest_checkpoint(out: Path) -> Path | None:
    """The newest complete ``checkpoint-<step>/`` of run ``out`` (None if there is none)."""
    ds = checkpoint_dirs(out)
    return ds[-1] if ds else None


def _progress(out: Path) -> tuple[str, ...]:
    """The names in ``out`` that show a started run (for :func:`actlab.core.io.run_state`)."""
    return (CKPT_FILE, CKPT, *(d.name for d in checkpoint_dirs(out, complete=False)))


def save_checkpoint(out: Path, iav, opt, sched, state: dict, save_total_limit: int | None = None) -> Path:
    """Write ``checkpoint-<step>/``: the heads (:meth:`IAVModel.save_pretrained`, loadable by ``from_pretrained``)
    and last ``checkpoint.safetensors`` (heads, optimizer, scheduler, RNG, step: one atomic file, whose presence
    marks the directory complete). Then only the newest ``save_total_limit`` complete directories are kept, and
    incomplete ones and older-layout checkpoints are removed."""
    from actlab.core import checkpoint as ckpt_io

    out = Path(out)
    d = out / f"{CKPT_PREFIX}{state['global_step']}"
    if d.exists():
        shutil.rmtree(d)  # an incomplete directory of a killed run
    iav.save_pretrained(d, extra={"global_step": state["global_step"]})
    ckpt_io.save(
        d / CKPT_FILE, iav.head_state(), step=state["global_step"], optimizer=opt, scheduler=sched, extra=state
    )
    for old in checkpoint_dirs(out, complete=False):
        if not (old / CKPT_FILE).exists():
            shutil.rmtree(old, ignore_errors=True)
    if save_total_limit:
        for old in checkpoint_dirs(out)[:-save_total_limit]:
            shutil.rmtree(old, ignore_errors=True)
    (out / CKPT_FILE).unlink(missing_ok=True)
    shutil.rmtree(out / CKPT, ignore_errors=True)
    return d


def load_checkpoint(path: Path, iav, opt, sched) -> dict | None:
    """Restore heads, optimizer, scheduler and RNG from run ``path``'s newest complete ``checkpoint-<step>/`` (or an
    older actlab's ``checkpoint.safetensors`` / ``checkpoint/``); the saved state (``global_step``, ``epoch``), or
    None if there is none."""
    from actlab.core import checkpoint as ckpt_io

    d = latest_checkpoint(path)
    ck = ckpt_io.load((d or Path(path)) / CKPT_FILE, optimizer=opt, scheduler=sched)
    if ck is None:
        return _load_legacy_checkpoint(path, iav, opt, sched)
    if ck.legacy:
        raise ActlabError(f"{ck.path} is not an IAV checkpoint; delete it to start the run over")
    iav.load_head_state(ck.tensors, source=str(ck.path))
    return ck.extra


def _load_legacy_checkpoint(path: Path, iav, opt, sched) -> dict | None:
    """``checkpoint/`` of older actlab versions: heads, optimizer (safetensors) and ``state.json``."""
    from actlab.core.io import load_optimizer_tensors, load_tensors, read_json

    d = Path(path) / CKPT
    if not (d / "state.json").exists():
        return None
    state = read_json(d / "state.json")
    heads, _ = load_tensors(d / "heads.safetensors")
    iav.load_head_state(heads, source=str(d))
    ot, ometa = load_tensors(d / "optimizer.safetensors")
    if "optimizer" not in ometa:
        raise ActlabError(
            f"checkpoint {d} was written by an older actlab (another optimizer-state format); "
            f"delete {d} to start the run over"
        )
    load_optimizer_tensors(opt, ot, ometa["optimizer"])
    sched.load_state_dict(state["scheduler"])
    for group, lr in zip(opt.param_groups, sched.get_last_lr(), strict=True):
        group["lr"] = lr  # the scheduler sets it on step(); restore it for the next step
    return state


# ----------------------------------------------------------------------------------------------------- train
def _mean_metrics(rows: list[dict]) -> dict:
    keys = rows[0].keys()
    return {k: float(sum(float(r[k]) for r in rows) / len(rows)) for k in keys}


@torch.no_grad()
def evaluate_loss(iav, data, loss_cfg, batch_size: int, cache=None, ref_lm=None) -> dict:
    rows = []
    for s in range(0, len(data), batch_size):
        idx = torch.arange(s, min(len(data), s + batch_size))
        _, m = batch_loss(iav, data, idx, loss_cfg, cache=cache, ref_lm=ref_lm)
        rows.append({k: float(v) for k, v in m.items()})
    return {f"eval/{k}": v for k, v in _mean_metrics(rows).items()} if rows else {}


def train(cfg: TrainConfig, ref_model: str | None = None, kill_after_steps: int | None = None) -> Path:
    """Train (or resume) the IAV heads; returns the run directory. ``ref_model``: a live reference (benchmarks)."""
    from accelerate import Accelerator
    from transformers import get_linear_schedule_with_warmup

    from actlab.core.io import RunDir, dataclass_defaults, run_state
    from actlab.core.models import load
    from actlab.iav.cache import load_cache, regenerate_hint
    from actlab.iav.data import load_rows, tokenize
    from actlab.iav.model import IAVModel

    if hasattr(cfg, "ref_model"):  # the live reference is part of the config (and of its fingerprint)
        if ref_model is None:
            ref_model = cfg.ref_model
        elif cfg.ref_model != ref_model:
            cfg = dataclasses.replace(cfg, ref_model=ref_model)
    dist = distributed.start(cfg.device, verb="iav train")  # one group or one process, never N copies
    dist.refuse_fsdp("iav train", "its loss calls the two heads outside the prepared model's forward")
    acc = Accelerator(cpu=dist.device.type == "cpu", gradient_accumulation_steps=cfg.grad_accum)
    if acc.num_processes != dist.world:  # the accelerator reuses the group start() made
        raise ActlabError(f"iav train: accelerate sees {acc.num_processes} processes, the launcher {dist.world}")
    if acc.device.type == "cpu":
        keep_freed_memory()
    out = Path(cfg.output_dir)
    fp = {
        "exclude": EXCLUDE,
        "defaults": dataclass_defaults(TrainConfig),
        "overwrite": getattr(cfg, "overwrite", False),
        "progress": _progress(out),
    }
    if dist.from_main(run_state, out, cfg, **fp) == "done":
        if dist.is_main:
            log.info("%s is complete with this config; nothing to do", out)
        return out
    # data first: bad input fails before anything is written
    rows = load_rows(cfg.dataset, "train", cfg.num_train_samples, cfg.seed)
    val_rows = load_rows(cfg.dataset, "test", cfg.num_val_samples, cfg.seed) if cfg.num_val_samples else []
    lm, tok = load(cfg.model_name_or_path, dtype="bf16" if cfg.bf16 else None, device=str(acc.device))
    data = tokenize(rows, tok, cfg.seq_length, cfg.max_prompt_length, cfg.loss.loss)
    val = tokenize(val_rows, tok, cfg.seq_length, cfg.max_prompt_length, cfg.loss.loss) if val_rows else None
    cache = None
    if cfg.cache_file:
        hint = regenerate_hint(
            ref_model or cfg.model_name_or_path,
            cfg.dataset,
            "train",
            len(data),
            cfg.seq_length,
            cfg.max_prompt_length,
            cfg.loss.loss,
            cfg.cache_file,
        )
        cache = load_cache(
            cfg.cache_file,
            data,
            vocab_size=lm.get_output_embeddings().weight.shape[0],
            expect={"seq_length": cfg.seq_length, "loss": cfg.loss.loss},
            hint=hint,
        )
    ref_lm = None
    if ref_model and cache is None:
        ref_lm, _ = load(ref_model, dtype="bf16" if cfg.bf16 else None, device=str(acc.device))
        for p in ref_lm.parameters():
            p.requires_grad_(False)
    torch.manual_seed(cfg.seed)
    iav = IAVModel(lm, freeze_base_head=cfg.freeze_base_head, tokenizer=tok, backbone_id=cfg.model_name_or_path)
    if cfg.gradient_checkpointing:  # the model's own switch; the heads sit after the backbone, so no input grads
        from actlab.core.gradckpt import enable_gradient_checkpointing

        enable_gradient_checkpointing(lm)
    params = [p for p in iav.parameters() if p.requires_grad]
    opt = adamw(params, cfg.learning_rate, cfg.weight_decay)
    world = acc.num_processes
    per_step = cfg.batch_size * world * cfg.grad_accum
    steps_per_epoch = max(1, len(data) // per_step)
    total = cfg.max_steps or steps_per_epoch * cfg.num_epochs
    sched = get_linear_schedule_with_warmup(opt, int(math.ceil(cfg.warmup_ratio * total)), total)
    raw_opt = opt
    wrapped, opt = acc.prepare(iav, opt)  # DDP over the trainable heads when launched with several processes

    run = None

    def open_run() -> str:  # rank 0 alone owns the run directory; the others get its answer
        nonlocal run
        run = RunDir(out, wandb_log=cfg.wandb, report_to=cfg.report_to)
        extra = {"world_size": world, "trainable_params": iav.num_trainable()}
        if not hasattr(cfg, "ref_model"):
            extra["ref_model"] = ref_model
        try:
            return run.begin(cfg, extra=extra, **fp)
        except BaseException:
            run.close()
            raise

    if dist.from_main(open_run) == "done":  # another process finished it meanwhile
        if run is not None:
            run.close()
        return out
    try:
        _loop(
            cfg,
            acc,
            run,
            out,
            iav,
            wrapped,
            opt,
            raw_opt,
            sched,
            params,
            data,
            val,
            cache,
            ref_lm,
            total,
            steps_per_epoch,
            kill_after_steps,
        )
    finally:
        if run is not None:
            run.close()
    return out


def _loop(
    cfg,
    acc,
    run,
    out,
    iav,
    wrapped,
    opt,
    raw_opt,
    sched,
    params,
    data,
    val,
    cache,
    ref_lm,
    total,
    steps_per_epoch,
    kill_after_steps,
) -> None:
    from actlab.core.progress import progress

    world = acc.num_processes
    state = load_checkpoint(out, iav, raw_opt, sched) or {"global_step": 0, "epoch": 0}
    if run is not None:
        run.reset_metrics(keep_until_step=state["global_step"])  # each step exactly once in metrics.jsonl
        if state["global_step"]:
            log.info("resuming %s from step %d", out, state["global_step"])
    acc.wait_for_everyone()

    step = state["global_step"]
    bar = progress(total=total, desc="iav train", initial=step) if acc.is_main_process else None
    t0 = time.perf_counter()
    while step < total:
        epoch = step // steps_per_epoch
        g = torch.Generator().manual_seed(cfg.seed * 1000 + epoch)
        perm = torch.randperm(len(data), generator=g)
        for k in range(step % steps_per_epoch, steps_per_epoch):
            if step >= total:
                break
            rows_m = []
            for micro in range(cfg.grad_accum):
                base = (k * cfg.grad_accum + micro) * cfg.batch_size * world
                idx = perm[base + acc.process_index * cfg.batch_size : base + (acc.process_index + 1) * cfg.batch_size]
                with acc.accumulate(wrapped):
                    loss, m = batch_loss(iav, data, idx, cfg.loss, cache=cache, ref_lm=ref_lm, fwd=wrapped)
                    acc.backward(loss)
                    if acc.sync_gradients:
                        gn = acc.clip_grad_norm_(params, cfg.max_grad_norm) if cfg.max_grad_norm > 0 else None
                        m["grad_norm"] = gn if gn is not None else torch.zeros(())
                    opt.step()
                    sched.step() if acc.sync_gradients else None
                    opt.zero_grad()
                rows_m.append({k2: v.detach() for k2, v in m.items()})
            step += 1
            iav.invalidate()
            metrics = {
                k2: float(
                    acc.reduce(
                        torch.as_tensor(
                            sum(r.get(k2, 0) for r in rows_m) / len(rows_m), device=acc.device, dtype=torch.float32
                        ),
                        "mean",
                    )
                )
                for k2 in rows_m[-1]
            }
            metrics.update(step=step, epoch=epoch, lr=sched.get_last_lr()[0], time_s=time.perf_counter() - t0)
            if val is not None and (step % cfg.eval_steps == 0 or step == total) and acc.is_main_process:
                metrics.update(evaluate_loss(iav, val, cfg.loss, cfg.batch_size, ref_lm=ref_lm))
            if run is not None:
                run.log(metrics)
                bar.update(1)
                bar.set_postfix(loss=f"{metrics['loss/total']:.3f}", margin=f"{metrics['rewards/margins']:.3f}")
                if step % cfg.save_steps == 0:
                    save_checkpoint(
                        out, iav, raw_opt, sched, {"global_step": step, "epoch": epoch}, cfg.save_total_limit
                    )
            acc.wait_for_everyone()
            if kill_after_steps is not None and step >= kill_after_steps:
                raise KeyboardInterrupt  # test hook: simulates a kill right after a step
    if bar is not None:
        bar.close()
    if run is not None:
        iav.save_pretrained(out / "heads", extra={"train_config": dataclasses.asdict(cfg)})
        run.mark_complete()
        (out / CKPT_FILE).unlink(missing_ok=True)
        shutil.rmtree(out / CKPT, ignore_errors=True)
    acc.wait_for_everyone()
