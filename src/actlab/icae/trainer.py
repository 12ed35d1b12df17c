"""ICAE training: pretraining (AE + LM mixed by ``lm_ratio``) and fine-tuning (QA, RepoQA, trajectories).

Only the encoder's LoRA and the memory-token embeddings train; the decoder (the base with the adapter disabled)
stays frozen. Runs are resumable: ``checkpoint.safetensors`` every ``save_steps`` (weights, AdamW moments, scheduler,
RNG state and step in one atomically written file, :mod:`actlab.core.checkpoint`; a resumed run ends as an
uninterrupted one would and ``metrics.jsonl`` is cut back to the checkpoint's step), the final weights are
``icae.safetensors`` and ``COMPLETE`` marks the end. One process owns a run directory; a complete run is skipped on
rerun only if its recorded config has the same fingerprint (else an error listing the fields, or ``--overwrite``).

Several processes (``accelerate launch --multi_gpu --num_processes N`` / ``torchrun --nproc_per_node N``) train one
run data-parallel by the rule of :mod:`actlab.core.distributed`: ``per_device_train_batch_size`` is per process
(as in HF Trainer), so a step's global batch is ``per_device_train_batch_size × N`` samples, drawn in the same order
on every rank; each rank takes its contiguous slice, weights its token losses by their share of the global batch's
scored tokens, and the gradients are summed before clipping and the AdamW step (the result of one process with an
N-times larger batch, up to float noise; LoRA dropout masks differ, as under DDP). Rank 0 alone writes the run
directory (``world_size`` recorded in ``config.json``). ``finetune --task trajectories`` (one trajectory per step,
turn by turn) runs in one process only.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable
from pathlib import Path

import torch

from actlab.core import checkpoint as ckpt_io
from actlab.core.distributed import Dist, start
from actlab.core.errors import ActlabError
from actlab.core.gradckpt import enable_gradient_checkpointing
from actlab.core.io import RunDir, dataclass_defaults, load_optimizer_tensors, read_json, run_state, save_tensors
from actlab.core.progress import progress
from actlab.icae.config import ICAEConfig
from actlab.icae.model import ICAE, Memory, Prefill, SimpleLLM

log = logging.getLogger(__name__)

CKPT = "checkpoint.safetensors"
#: config fields that do not change a training run's result (outputs, logging, inference/demo-only options)
EXCLUDE = (
    "output_dir",
    "device",
    "threads",
    "wandb",
    "report_to",
    "logging_steps",
    "save_steps",
    "batch_size",
    "max_new_tokens",
    "predictions_dir",
    "metrics_dir",
    "demo_finetune_steps",
    "num_eval_samples",
    "overwrite",
    "gradient_checkpointing",
)


def build_model(cfg: ICAEConfig, base=None, tok=None, device: str | None = None):
    """``ICAE`` or ``SimpleLLM`` for ``cfg`` (base loaded with :func:`actlab.core.models.load` unless given, on
    ``device`` or else ``cfg.device``)."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if base is None:
        from actlab.core.models import load

        base, tok = load(
            cfg.model_name,
            dtype=None if cfg.dtype == "auto" else cfg.dtype,
            device=device or cfg.device,
            attn_implementation=cfg.attn_implementation,
        )
    if cfg.model_type == "llm":
        llm = SimpleLLM(base, tok, cfg)
        if cfg.checkpoint_path and _is_llm_checkpoint(cfg.checkpoint_path):
            llm.load(cfg.checkpoint_path)
        elif cfg.checkpoint_path:  # an ICAE config switched to --model_type llm: the baseline is the base model
            log.warning(
                "icae: checkpoint_path %s holds ICAE weights; model_type llm starts from the base model %s",
                cfg.checkpoint_path,
                cfg.model_name,
            )
        return llm
    icae = ICAE(base, tok, cfg)
    if cfg.checkpoint_path:
        icae.load(cfg.checkpoint_path)
    return icae


def _is_llm_checkpoint(path: str) -> bool:
    """A SimpleLLM LoRA file (``llm.safetensors``, or a run directory holding one) rather than ICAE weights."""
    from safetensors import safe_open

    from actlab.icae.model import LLM_WEIGHTS

    p = Path(path)
    p = p / LLM_WEIGHTS if p.is_dir() else p
    if not p.is_file():
        return False
    with safe_open(str(p), "pt") as f:
        return "memory_token_embed.weight" not in f.keys()


def _lr_lambda(cfg: ICAEConfig) -> Callable[[int], float]:
    def f(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / max(1, cfg.warmup_steps)
        rest = max(1, cfg.max_steps - cfg.warmup_steps)
        return max(0.0, 0.5 * (1 + math.cos(math.pi * (step - cfg.warmup_steps) / rest)))

    return f


def train_loop(
    icae: ICAE,
    cfg: ICAEConfig,
    run: RunDir | None,
    step_loss: Callable[[int, random.Random], dict],
    desc: str,
    dist: Dist | None = None,
    out_dir: Path | None = None,
) -> dict:
    """AdamW over the trainable parameters; ``step_loss(step, rng)`` returns ``{"loss": tensor, ...}``: this rank's
    share of the step's loss (weighted by its share of the global batch) and metrics that add up over the ranks.

    Resumes exactly from ``checkpoint.safetensors`` (weights, AdamW moments, torch RNG state and the step in one
    atomically written file): a killed and resumed run ends with the weights of an uninterrupted one. Under several
    processes ``run`` is rank 0's (None elsewhere); every rank reads the checkpoint, the gradients and metrics are
    summed over the ranks, and rank 0 alone writes.
    """
    dist = dist or Dist()
    out_dir = Path(run.path) if run is not None else Path(out_dir)
    lm = icae.base() if isinstance(icae, ICAE) else icae.model
    if cfg.gradient_checkpointing:
        enable_gradient_checkpointing(lm, frozen_base=True)
    dist.shard_model(lm)  # FSDP: the decoder layers sharded over the ranks (a no-op otherwise)
    params = icae.trainable_parameters()
    opt = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    for g in opt.param_groups:
        g.setdefault("initial_lr", cfg.learning_rate)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(cfg))
    torch.manual_seed(cfg.seed)  # LoRA dropout; a resumed run restores the checkpoint's RNG state instead
    first, acc = 0, {}
    ck = out_dir / CKPT
    legacy = out_dir / "checkpoint.json"  # older actlab: the step in a side file, no optimizer state
    loaded = ckpt_io.load(ck, optimizer=dist.full_optimizer(opt), scheduler=sched)
    if loaded is not None and not loaded.legacy:
        icae.load(ck)
        first, acc = loaded.step, loaded.extra.get("acc", {})
    elif loaded is not None and ("step" in loaded.meta or legacy.exists()):  # before actlab.core.checkpoint
        icae.load(ck)
        first = int(loaded.meta["step"]) if "step" in loaded.meta else int(read_json(legacy)["step"])
        if loaded.meta.get("optimizer"):
            load_optimizer_tensors(opt, loaded.tensors, loaded.meta["optimizer"])
        if "rng.torch" in loaded.tensors:
            torch.set_rng_state(loaded.tensors["rng.torch"])
        sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(cfg), last_epoch=first - 1)
    if run is not None:
        run.reset_metrics(keep_until_step=first)  # each step exactly once in metrics.jsonl
        if first:
            log.info("resuming %s from step %d", out_dir, first)
    icae.train()
    t0 = time.perf_counter()
    last: dict = {}
    bar = progress(total=cfg.max_steps, desc=desc, initial=first) if dist.is_main else None
    for step in range(first, cfg.max_steps):
        rng = random.Random(cfg.seed * 1_000_003 + step)
        out = step_loss(step, rng)
        loss = out.pop("loss")
        if loss.requires_grad:
            loss.backward()
        dist.sum_grads(params)  # the global batch's gradient on every rank (a no-op in one process)
        gn = dist.clip_grad_norm_(params, cfg.max_grad_norm)  # the global norm, also of FSDP's shards
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        vals = dist.sum_floats({"loss": float(loss.detach()), **{k: float(v) for k, v in out.items()}})
        for k in ("loss", *out):
            acc.setdefault(k, []).append(vals[k])
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{vals['loss']:.3f}")
        if (step + 1) % cfg.logging_steps == 0 or step + 1 == cfg.max_steps:
            last = {
                "step": step + 1,
                **{f"train/{k}": sum(v) / len(v) for k, v in acc.items()},
                "train/grad_norm": float(gn),
                "train/lr": sched.get_last_lr()[0],
                "time/elapsed_s": time.perf_counter() - t0,
            }
            if run is not None:
                run.log(last)
            acc = {}
        if cfg.save_steps and (step + 1) % cfg.save_steps == 0 and step + 1 < cfg.max_steps:
            # whole tensors on every rank (FSDP gathers its shards: a collective), written by rank 0
            state, whole_opt = dist.full_state(icae.trainable_state()), dist.full_optimizer(opt)
        if cfg.save_steps and (step + 1) % cfg.save_steps == 0 and step + 1 < cfg.max_steps and run is not None:
            ckpt_io.save(
                ck,
                state,
                step=step + 1,
                optimizer=whole_opt,
                scheduler=sched,
                extra={"acc": acc, "fingerprint": icae.fingerprint()},
            )
            legacy.unlink(missing_ok=True)
    if bar is not None:
        bar.close()
    icae.eval()
    if dist.fsdp and dist.active:  # gather the shards on every rank, rank 0 writes what one process would
        state = dist.full_state(icae.trainable_state())
        final = str(out_dir / icae.weights_file)
        if run is not None:
            save_tensors(final, state, metadata=icae.fingerprint())
    else:
        final = icae.save(out_dir) if run is not None else str(out_dir / icae.weights_file)
    return {"weights": final, **last}


def _finish(run: RunDir, info: dict) -> dict:
    run.mark_complete(info)
    for p in (CKPT, "checkpoint.json"):
        (Path(run.path) / p).unlink(missing_ok=True)
    return info


def _run_kw(cfg: ICAEConfig, sub: str) -> dict:
    exclude = EXCLUDE + (("task",) if sub == "pretrain" else ())  # pretraining is AE + LM whatever the task
    return {
        "exclude": exclude,
        "defaults": dataclass_defaults(ICAEConfig),
        "overwrite": getattr(cfg, "overwrite", False),
        "progress": (CKPT, "checkpoint.json"),
    }


def _done(cfg: ICAEConfig, sub: str) -> bool:
    """A complete run of this config (checked before anything is loaded; another config raises)."""
    return run_state(Path(cfg.output_dir) / sub, cfg, **_run_kw(cfg, sub)) == "done"


def _open_run(cfg: ICAEConfig, sub: str, world: int = 1) -> RunDir | None:
    """Take the run directory (lock) and record the config (with ``world_size``); None if it is complete with this
    config."""
    run = RunDir(Path(cfg.output_dir) / sub, wandb_log=cfg.wandb, report_to=cfg.report_to)
    if run.begin(cfg, extra={"world_size": world}, **_run_kw(cfg, sub)) == "done":
        run.close()
        return None
    return run


def _skipped(cfg: ICAEConfig, sub: str) -> dict:
    from actlab.icae.model import LLM_WEIGHTS, WEIGHTS

    name = LLM_WEIGHTS if cfg.model_type == "llm" else WEIGHTS
    return {
        "weights": str(Path(cfg.output_dir) / sub / name),
        "skipped": True,
        "run_dir": str(Path(cfg.output_dir) / sub),
    }


def _start(cfg: ICAEConfig, icae, verb: str) -> Dist:
    """This launch's process group; a model built by the caller trains in one process only."""
    d = start(cfg.device, verb=verb)
    if d.active and icae is not None:
        raise ActlabError(
            f"{verb}: a model passed in trains in one process; under a launcher let the trainer "
            f"build it (from model_name {cfg.model_name!r})"
        )
    return d


def _run(cfg: ICAEConfig, sub: str, icae, step_loss: Callable, desc: str, dist: Dist) -> dict:
    """Train run ``output_dir/sub``: rank 0 takes the directory (lock, config, metrics, checkpoints, trackers,
    final weights); the other ranks wait for it, then train their slices. The result has ``run_dir``."""
    run, done = None, False
    if dist.is_main:
        before = _recorded_world(Path(cfg.output_dir) / sub)
        run = _open_run(cfg, sub, dist.world)
        done = run is None
        if run is not None and before not in (None, dist.world) and (Path(run.path) / CKPT).exists():
            bs = cfg.per_device_train_batch_size
            log.warning(
                "%s: resuming a run started on %d processes with %d: the global batch changes from %d to %d samples",
                desc,
                before,
                dist.world,
                bs * before,
                bs * dist.world,
            )
    if dist.broadcast(done):  # also the barrier: rank 0 has written the config (and cleared a redo)
        return _skipped(cfg, sub)
    try:
        info = train_loop(icae, cfg, run, step_loss, desc, dist, out_dir=Path(cfg.output_dir) / sub)
        if run is not None:
            _finish(run, info)
    finally:
        if run is not None:
            run.close()
    dist.barrier()  # the others return once the run is complete
    return {**info, "run_dir": str(Path(cfg.output_dir) / sub)}


def _recorded_world(path: Path) -> int | None:
    """The process count a run directory's ``config.json`` records (1 for older runs; None without one)."""
    try:
        return int(read_json(path / "config.json").get("world_size", 1))
    except (ActlabError, OSError, ValueError, TypeError, AttributeError):
        return None


def _scored(pre: Prefill) -> int:
    """Label positions :meth:`ICAE.loss` averages over (labels shifted by one)."""
    return int((pre.labels[:, 1:] != -100).sum())


def _idle_loss(icae: ICAE | SimpleLLM, pre: Prefill) -> torch.Tensor:
    """0 through the decoder forward of ``pre`` (FSDP: a rank with nothing to score still runs the forward and
    backward the other ranks run; a row without scored labels gets one so the mean stays finite)."""
    if not _scored(pre):
        pre.labels[0, -1] = 0
    return icae.loss(pre) * 0.0


def _share(mean: torch.Tensor, n: int, total: float) -> torch.Tensor:
    """A token-averaged loss over ``n`` tokens as its share of a ``total``-token mean (0 without tokens)."""
    return mean * (n / total) if n else torch.zeros(())


# -------------------------------------------------------------------------------------------------- pretrain
def ae_lm_loss(icae: ICAE, batch: list[dict], cfg: ICAEConfig, dist: Dist | None = None) -> dict:
    """The pretraining loss of a batch of :func:`ae_lm_sample` samples: AE and LM parts, token-averaged over the
    whole batch (``{"loss": tensor, "ae_loss": float, "lm_loss": float}``, a part's key only when it has tokens).

    Under several processes ``batch`` is this rank's slice of the global batch: the token counts are summed over
    the ranks first, so each value is this rank's share of the global mean (the shares add up to it)."""
    dist = dist or Dist()
    eos = icae.tok.eos_token_id
    parts, idle = {}, torch.zeros(())
    # FSDP: every rank runs the same forwards (each all-gathers the layers), so a rank without a kind that another
    # rank has runs a stand-in forward, weighted 0
    present = (
        dist.sum_floats({k: float(any(s["kind"] == k for s in batch)) for k in ("AE", "LM")}) if dist.fsdp else {}
    )
    for kind in ("AE", "LM"):
        sub, stand_in = [s for s in batch if s["kind"] == kind], False
        if not sub and present.get(kind):
            sub, stand_in = [{**batch[0], "kind": kind}], True
        if not sub:
            continue
        mem = icae.compress([s["context"] for s in sub])
        tg = [s["target"] + ([eos] if kind == "AE" and eos is not None else []) for s in sub]
        special = "AE" if kind == "AE" or cfg.add_special_token_for_lm else "LM"
        pre = icae.decoder_rows(mem, special, [[] for _ in sub], tg, [s["skip"] for s in sub])
        n_tok = _scored(pre)
        if n_tok and not stand_in:
            parts[kind] = (icae.loss(pre), n_tok)
        elif dist.fsdp:
            idle = idle + _idle_loss(icae, pre)
    counts = dist.sum_floats({kind: float(parts.get(kind, (None, 0))[1]) for kind in ("AE", "LM")})
    total = sum(counts.values())
    loss, out = idle, {}
    for kind in ("AE", "LM"):
        if not counts[kind]:
            continue
        mean, n_tok = parts.get(kind, (None, 0))
        if n_tok:
            loss = loss + _share(mean, n_tok, total)
        out[f"{kind.lower()}_loss"] = float(_share(mean.detach(), n_tok, counts[kind])) if n_tok else 0.0
    return {"loss": loss, **out}


def pretrain(cfg: ICAEConfig, icae: ICAE | None = None) -> dict:
    """AE + LM pretraining on the prepared texts (``actlab icae prepare-pretrain`` first); the result's ``run_dir``
    is ``output_dir/pretrain``."""
    from actlab.icae.data import ae_lm_sample, load_pretrain

    if cfg.model_type != "icae":
        raise ActlabError("pretrain needs model_type: icae (SimpleLLM has nothing to pretrain)")
    dist = _start(cfg, icae, "icae pretrain")
    if _done(cfg, "pretrain"):
        return _skipped(cfg, "pretrain")
    texts = load_pretrain(cfg, "train")
    icae = icae or build_model(cfg, device=str(dist.device) if dist.active else None)
    ids = [icae.tok(t, add_special_tokens=False)["input_ids"] for t in texts]
    ids = [x for x in ids if x]
    global_bs = cfg.per_device_train_batch_size * dist.world

    def step_loss(step: int, rng: random.Random) -> dict:
        batch = [ae_lm_sample(ids[rng.randrange(len(ids))], cfg, rng) for _ in range(global_bs)]
        return ae_lm_loss(icae, list(dist.shard(batch)), cfg, dist)

    return _run(cfg, "pretrain", icae, step_loss, "icae pretrain", dist)


# -------------------------------------------------------------------------------------------------- finetune
def _ft_samples(cfg: ICAEConfig, tok) -> list[dict]:
    from actlab.icae import data

    eos = [tok.eos_token_id] if tok.eos_token_id is not None else []
    enc = lambda s: tok(s, add_special_tokens=False)["input_ids"]  # noqa: E731
    if cfg.task == "qa":
        rows = data.squad_rows(cfg, "train", cfg.num_train_samples)
        return [
            {
                "context": r["context"],
                "prompt": enc(data.qa_prompt(r)),
                "target": enc(" " + r["answers"]["text"][0]) + eos,
            }
            for r in rows
            if r["answers"]["text"]
        ]
    if cfg.task == "repoqa":
        tasks = data.repoqa_tasks(cfg, "train", cfg.num_train_samples)
        return [
            {"context": t["context"], "prompt": enc(data.repoqa_prompt(t)), "target": enc(" " + t["gold"]) + eos}
            for t in tasks
        ]
    raise ActlabError(f"finetune task {cfg.task!r} is not a fine-tuning task; valid: qa, repoqa, trajectories")


def finetune_subdir(cfg: ICAEConfig) -> str:
    """``finetune_<task>`` (ICAE) or ``finetune_<task>_llm`` (the SimpleLLM baseline)."""
    return f"finetune_{cfg.task}" + ("_llm" if cfg.model_type == "llm" else "")


def finetune(cfg: ICAEConfig, icae: ICAE | SimpleLLM | None = None) -> dict:
    """Fine-tune on ``task``: qa (SQuAD), repoqa, trajectories (turn by turn).

    ``model_type: icae`` trains the encoder's LoRA and the memory embeddings (from ``checkpoint_path``);
    ``model_type: llm`` is the full-context baseline ("LLM-FT"): a LoRA on the decoder itself, trained on the same
    samples with the loss on the same positions (the target tokens), saved as ``llm.safetensors``.
    """
    if cfg.task not in ("qa", "repoqa", "trajectories"):
        raise ActlabError(f"finetune task {cfg.task!r} is not a fine-tuning task; valid: qa, repoqa, trajectories")
    dist = _start(cfg, icae, f"icae finetune {cfg.task}")
    if cfg.task == "trajectories" and dist.active:
        raise ActlabError(
            f"finetune task trajectories trains one trajectory per step, turn by turn, and does not "
            f"split over processes; run it in one process (this launch has {dist.world})"
        )
    sub = finetune_subdir(cfg)
    if _done(cfg, sub):
        return _skipped(cfg, sub)
    icae = icae or build_model(cfg, device=str(dist.device) if dist.active else None)
    llm = cfg.model_type == "llm"
    if llm != isinstance(icae, SimpleLLM):
        raise ActlabError(f"model_type {cfg.model_type!r} does not match the model given ({type(icae).__name__})")
    if llm and icae.peft is None:
        icae.add_lora()
    if cfg.task == "trajectories":
        return _finetune_trajectories(cfg, icae, sub)
    samples = _ft_samples(cfg, icae.tok)
    if not samples:
        raise ActlabError(f"no training samples for task {cfg.task!r}")
    ctx_ids = None if llm else icae.tokenize_contexts([s["context"] for s in samples])
    global_bs = cfg.per_device_train_batch_size * dist.world

    def step_loss(step: int, rng: random.Random) -> dict:
        idx = dist.shard([rng.randrange(len(samples)) for _ in range(global_bs)])
        prompts, targets = [samples[i]["prompt"] for i in idx], [samples[i]["target"] for i in idx]
        if llm:
            pre = icae.rows([samples[i]["context"] for i in idx], prompts, targets)
        else:
            pre = icae.decoder_rows(icae.compress([ctx_ids[i] for i in idx]), "FT", prompts, targets)
        n = _scored(pre)
        total = dist.sum_floats({"n": float(n)})["n"]
        if n:
            return {"loss": _share(icae.loss(pre), n, total)}
        return {"loss": _idle_loss(icae, pre) if dist.fsdp else torch.zeros(())}

    return _run(cfg, sub, icae, step_loss, f"icae finetune {cfg.task}", dist)


# ------------------------------------------------------------------------------------------------ trajectories
def trajectory_chunks(icae: ICAE, msgs: list[dict], compress: bool = True) -> list[dict]:
    """Split messages into chunks: ``{"kind": "mem"|"raw"|"target", "ids", "role"}``.

    A user/tool message of at least ``fixed_mem_size`` tokens is compressed (JetBrains' rule); assistant turns are
    targets (and stay raw in the history).
    """
    out = []
    for m in msgs:
        ids = icae.tok(m["content"], add_special_tokens=False)["input_ids"][: icae.cfg.max_seq_len]
        if not ids:
            continue
        if m["role"] == "assistant":
            out.append({"kind": "target", "ids": ids, "role": m["role"]})
        elif compress and len(ids) >= icae.m:
            out.append({"kind": "mem", "ids": ids, "role": m["role"]})
        else:
            out.append({"kind": "raw", "ids": ids, "role": m["role"]})
    return out


def chunk_embeds(
    icae: ICAE, chunk: dict, pos: int, detach_memory: bool = False
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Embeddings and pids of one history chunk starting after global position ``pos``; returns the new ``pos``.

    A compressed chunk is ``slots [FT]``: with EPL the slots sit at ``pos + encoder pid`` and ``[FT]`` at the chunk's
    last position; raw text continues at ``pos + 1, …``.
    """
    if chunk["kind"] == "mem":
        mem: Memory = icae.compress([chunk["ids"]])
        slots = mem.slots[0].detach() if detach_memory else mem.slots[0]
        L = len(chunk["ids"])
        ft = icae.token_embeds(torch.tensor([icae.special_id("FT")]))
        emb = torch.cat([slots.to(ft.dtype), ft])
        if icae.cfg.use_position_identifiers:
            pids = torch.cat([mem.pids[0] + pos, torch.tensor([pos + L])])
            return emb, pids, pos + L
        pids = torch.arange(pos + 1, pos + 1 + emb.shape[0])
        return emb, pids, pos + emb.shape[0]
    emb = icae.token_embeds(torch.tensor(chunk["ids"]))
    pids = torch.arange(pos + 1, pos + 1 + len(chunk["ids"]))
    return emb, pids, pos + len(chunk["ids"])


def _finetune_trajectories(cfg: ICAEConfig, icae: ICAE, sub: str) -> dict:
    """Turn by turn with accumulated compressed memory; earlier memory is detached (1-turn truncated BPTT)."""
    from actlab.icae.data import trajectories

    trajs = trajectories(cfg, "train", cfg.num_train_samples)
    eos = [icae.tok.eos_token_id] if icae.tok.eos_token_id is not None else []
    bos = icae.tok.bos_token_id

    def step_loss(step: int, rng: random.Random) -> dict:
        msgs = trajs[rng.randrange(len(trajs))]
        chunks = trajectory_chunks(icae, msgs, compress=cfg.model_type == "icae")  # llm: the full raw history
        hist_e, hist_p = [], []
        if bos is not None:
            hist_e.append(icae.token_embeds(torch.tensor([bos])))
            hist_p.append(torch.tensor([0]))
        pos, total, n_turns, n_trained = 0, 0.0, 0, 0
        for ch in chunks:
            if ch["kind"] != "target":
                e, p, pos = chunk_embeds(icae, ch, pos)
                hist_e.append(e)
                hist_p.append(p)
                continue
            tgt = ch["ids"] + eos
            te = icae.token_embeds(torch.tensor(tgt))
            emb = torch.cat(hist_e + [te])[None]
            pids = torch.cat(hist_p + [torch.arange(pos + 1, pos + 1 + len(tgt))])[None].to(emb.device)
            labels = torch.full(pids.shape, -100, dtype=torch.long)
            labels[0, -len(tgt) :] = torch.tensor(tgt)
            pre = Prefill(emb, torch.ones_like(pids), pids, labels.to(emb.device))
            loss = icae.loss(pre)
            # per turn; the history is detached below (earlier memory gets no more gradient). A turn whose history
            # holds no memory since the last detach (every message shorter than fixed_mem_size stays raw) has no
            # trainable path through the frozen decoder: its loss is logged but nothing is backpropagated.
            if loss.requires_grad:
                loss.backward()
                n_trained += 1
            total += float(loss.detach())
            n_turns += 1
            hist_e = [h.detach() for h in hist_e] + [icae.token_embeds(torch.tensor(ch["ids"])).detach()]
            hist_p.append(torch.arange(pos + 1, pos + 1 + len(ch["ids"])))
            pos += len(ch["ids"])
        return {"loss": torch.tensor(total / max(1, n_turns)), "turns": n_turns, "trained_turns": n_trained}

    return _run(cfg, sub, icae, step_loss, "icae finetune trajectories", Dist())


# ------------------------------------------------------------------------------------------------------ train
def train(cfg: ICAEConfig, icae: ICAE | SimpleLLM | None = None) -> Path:
    """Train the run ``cfg`` describes and return its run directory: ``task: ae`` pretrains
    (``output_dir/pretrain``), qa / repoqa / trajectories fine-tune (``output_dir/finetune_<task>[_llm]``)."""
    info = pretrain(cfg, icae) if cfg.task == "ae" else finetune(cfg, icae)
    return Path(info["run_dir"])
