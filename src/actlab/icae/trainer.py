"""ICAE training: pretraining (AE + LM mixed by ``lm_ratio``) and fine-tuning (QA, RepoQA, trajectories).

Only the encoder's LoRA and the memory-token embeddings train; the decoder (the base with the adapter disabled)
stays frozen. Runs are resumable: ``checkpoint.safetensors`` every ``save_steps`` (weights, AdamW moments, scheduler,
RNG state and step in one atomically written file, :mod:`actlab.core.checkpoint`; a resumed run ends as an
uninterrupted one would and ``metrics.jsonl`` is cut back to the checkpoint's step), the final weights are
``icae.safetensors`` and ``COMPLETE`` marks the end. One process owns a run directory; a complete run is skipped on
rerun only if its recorded config has the same fingerprint (else an error listing the fields, or ``--overwrite``).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from pathlib import Path

import torch

from actlab.core import checkpoint as ckpt_io
from actlab.core.errors import ActlabError
from actlab.core.gradckpt import enable_gradient_checkpointing
from actlab.core.io import RunDir, dataclass_defaults, load_optimizer_tensors, read_json, run_state
from actlab.core.progress import progress
from actlab.icae.config import ICAEConfig
from actlab.icae.model import ICAE, Memory, Prefill, SimpleLLM

CKPT = "checkpoint.safetensors"
#: config fields that do not change a training run's result (outputs, logging, inference/demo-only options)
EXCLUDE = ("output_dir", "device", "threads", "wandb", "report_to", "logging_steps", "save_steps", "batch_size",
           "max_new_tokens", "predictions_dir", "metrics_dir", "demo_finetune_steps", "num_eval_samples", "overwrite",
           "gradient_checkpointing")


def build_model(cfg: ICAEConfig, base=None, tok=None):
    """``ICAE`` or ``SimpleLLM`` for ``cfg`` (base loaded with :func:`actlab.core.models.load` unless given)."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if base is None:
        from actlab.core.models import load

        base, tok = load(cfg.model_name, dtype=None if cfg.dtype == "auto" else cfg.dtype, device=cfg.device,
                         attn_implementation=cfg.attn_implementation)
    if cfg.model_type == "llm":
        llm = SimpleLLM(base, tok, cfg)
        if cfg.checkpoint_path and _is_llm_checkpoint(cfg.checkpoint_path):
            llm.load(cfg.checkpoint_path)
        elif cfg.checkpoint_path:  # an ICAE config switched to --model_type llm: the baseline is the base model
            import sys

            print(f"icae: checkpoint_path {cfg.checkpoint_path} holds ICAE weights; model_type llm starts from "
                  f"the base model {cfg.model_name}", file=sys.stderr)
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


def train_loop(icae: ICAE, cfg: ICAEConfig, run: RunDir, step_loss: Callable[[int, random.Random], dict],
               desc: str) -> dict:
    """AdamW over the trainable parameters; ``step_loss(step, rng)`` returns ``{"loss": tensor, ...}``.

    Resumes exactly from ``checkpoint.safetensors`` (weights, AdamW moments, torch RNG state and the step in one
    atomically written file): a killed and resumed run ends with the weights of an uninterrupted one.
    """
    if cfg.gradient_checkpointing:
        enable_gradient_checkpointing(icae.base() if isinstance(icae, ICAE) else icae.model, frozen_base=True)
    params = icae.trainable_parameters()
    opt = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    for g in opt.param_groups:
        g.setdefault("initial_lr", cfg.learning_rate)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(cfg))
    torch.manual_seed(cfg.seed)  # LoRA dropout; a resumed run restores the checkpoint's RNG state instead
    start, acc = 0, {}
    ck = Path(run.path) / CKPT
    legacy = Path(run.path) / "checkpoint.json"  # older actlab: the step in a side file, no optimizer state
    loaded = ckpt_io.load(ck, optimizer=opt, scheduler=sched)
    if loaded is not None and not loaded.legacy:
        icae.load(ck)
        start, acc = loaded.step, loaded.extra.get("acc", {})
    elif loaded is not None and ("step" in loaded.meta or legacy.exists()):  # before actlab.core.checkpoint
        icae.load(ck)
        start = int(loaded.meta["step"]) if "step" in loaded.meta else int(read_json(legacy)["step"])
        if loaded.meta.get("optimizer"):
            load_optimizer_tensors(opt, loaded.tensors, loaded.meta["optimizer"])
        if "rng.torch" in loaded.tensors:
            torch.set_rng_state(loaded.tensors["rng.torch"])
        sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(cfg), last_epoch=start - 1)
    run.reset_metrics(keep_until_step=start)  # each step exactly once in metrics.jsonl
    icae.train()
    t0 = time.perf_counter()
    last: dict = {}
    bar = progress(total=cfg.max_steps, desc=desc, initial=start)
    for step in range(start, cfg.max_steps):
        rng = random.Random(cfg.seed * 1_000_003 + step)
        out = step_loss(step, rng)
        loss = out.pop("loss")
        if loss.requires_grad:
            loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        loss_v = float(loss.detach())
        for k, v in {"loss": loss_v, **out}.items():
            acc.setdefault(k, []).append(float(v))
        bar.update(1)
        bar.set_postfix(loss=f"{loss_v:.3f}")
        if (step + 1) % cfg.logging_steps == 0 or step + 1 == cfg.max_steps:
            last = {"step": step + 1, **{f"train/{k}": sum(v) / len(v) for k, v in acc.items()},
                    "train/grad_norm": float(gn), "train/lr": sched.get_last_lr()[0],
                    "time/elapsed_s": time.perf_counter() - t0}
            run.log(last)
            acc = {}
        if cfg.save_steps and (step + 1) % cfg.save_steps == 0 and step + 1 < cfg.max_steps:
            ckpt_io.save(ck, icae.trainable_state(), step=step + 1, optimizer=opt, scheduler=sched,
                         extra={"acc": acc, "fingerprint": icae.fingerprint()})
            legacy.unlink(missing_ok=True)
    bar.close()
    icae.eval()
    final = icae.save(Path(run.path))
    return {"weights": final, **last}


def _finish(run: RunDir, info: dict) -> dict:
    run.mark_complete(info)
    for p in (CKPT, "checkpoint.json"):
        (Path(run.path) / p).unlink(missing_ok=True)
    return info


def _run_kw(cfg: ICAEConfig, sub: str) -> dict:
    exclude = EXCLUDE + (("task",) if sub == "pretrain" else ())  # pretraining is AE + LM whatever the task
    return {"exclude": exclude, "defaults": dataclass_defaults(ICAEConfig),
            "overwrite": getattr(cfg, "overwrite", False), "progress": (CKPT, "checkpoint.json")}


def _done(cfg: ICAEConfig, sub: str) -> bool:
    """A complete run of this config (checked before anything is loaded; another config raises)."""
    return run_state(Path(cfg.output_dir) / sub, cfg, **_run_kw(cfg, sub)) == "done"


def _open_run(cfg: ICAEConfig, sub: str) -> RunDir | None:
    """Take the run directory (lock) and record the config; None if it is complete with this config."""
    run = RunDir(Path(cfg.output_dir) / sub, wandb_log=cfg.wandb, report_to=cfg.report_to)
    if run.begin(cfg, **_run_kw(cfg, sub)) == "done":
        run.close()
        return None
    return run


def _skipped(cfg: ICAEConfig, sub: str) -> dict:
    from actlab.icae.model import LLM_WEIGHTS, WEIGHTS

    name = LLM_WEIGHTS if cfg.model_type == "llm" else WEIGHTS
    return {"weights": str(Path(cfg.output_dir) / sub / name), "skipped": True}


# -------------------------------------------------------------------------------------------------- pretrain
def ae_lm_loss(icae: ICAE, batch: list[dict], cfg: ICAEConfig) -> dict:
    """The pretraining loss of a batch of :func:`ae_lm_sample` samples: AE and LM parts, token-averaged over the
    whole batch (``{"loss": tensor, "ae_loss": float, "lm_loss": float}``, a part's key only when it is present)."""
    eos = icae.tok.eos_token_id
    parts, total_tokens = [], 0
    for kind in ("AE", "LM"):
        sub = [s for s in batch if s["kind"] == kind]
        if not sub:
            continue
        mem = icae.compress([s["context"] for s in sub])
        tg = [s["target"] + ([eos] if kind == "AE" and eos is not None else []) for s in sub]
        special = "AE" if kind == "AE" or cfg.add_special_token_for_lm else "LM"
        pre = icae.decoder_rows(mem, special, [[] for _ in sub], tg, [s["skip"] for s in sub])
        n_tok = int((pre.labels != -100).sum())
        parts.append((icae.loss(pre), n_tok, kind))
        total_tokens += n_tok
    loss, out = 0.0, {}
    for part, n_tok, kind in parts:
        loss = loss + part * n_tok / max(1, total_tokens)
        out[f"{kind.lower()}_loss"] = float(part.detach())
    return {"loss": loss, **out}


def pretrain(cfg: ICAEConfig, icae: ICAE | None = None) -> dict:
    """AE + LM pretraining on the prepared texts (``actlab icae prepare-pretrain`` first)."""
    from actlab.icae.data import ae_lm_sample, load_pretrain

    if cfg.model_type != "icae":
        raise ActlabError("pretrain needs model_type: icae (SimpleLLM has nothing to pretrain)")
    if _done(cfg, "pretrain"):
        return _skipped(cfg, "pretrain")
    texts = load_pretrain(cfg, "train")
    icae = icae or build_model(cfg)
    ids = [icae.tok(t, add_special_tokens=False)["input_ids"] for t in texts]
    ids = [x for x in ids if x]

    def step_loss(step: int, rng: random.Random) -> dict:
        batch = [ae_lm_sample(ids[rng.randrange(len(ids))], cfg, rng) for _ in range(cfg.per_device_train_batch_size)]
        return ae_lm_loss(icae, batch, cfg)

    run = _open_run(cfg, "pretrain")
    if run is None:
        return _skipped(cfg, "pretrain")
    with run:
        return _finish(run, train_loop(icae, cfg, run, step_loss, "icae pretrain"))


# -------------------------------------------------------------------------------------------------- finetune
def _ft_samples(cfg: ICAEConfig, tok) -> list[dict]:
    from actlab.icae import data

    eos = [tok.eos_token_id] if tok.eos_token_id is not None else []
    enc = lambda s: tok(s, add_special_tokens=False)["input_ids"]  # noqa: E731
    if cfg.task == "qa":
        rows = data.squad_rows(cfg, "train", cfg.num_train_samples)
        return [{"context": r["context"], "prompt": enc(data.qa_prompt(r)),
                 "target": enc(" " + r["answers"]["text"][0]) + eos} for r in rows if r["answers"]["text"]]
    if cfg.task == "repoqa":
        tasks = data.repoqa_tasks(cfg, "train", cfg.num_train_samples)
        return [{"context": t["context"], "prompt": enc(data.repoqa_prompt(t)), "target": enc(" " + t["gold"]) + eos}
                for t in tasks]
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
    sub = finetune_subdir(cfg)
    if _done(cfg, sub):
        return _skipped(cfg, sub)
    icae = icae or build_model(cfg)
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

    def step_loss(step: int, rng: random.Random) -> dict:
        idx = [rng.randrange(len(samples)) for _ in range(cfg.per_device_train_batch_size)]
        prompts, targets = [samples[i]["prompt"] for i in idx], [samples[i]["target"] for i in idx]
        if llm:
            return {"loss": icae.loss(icae.rows([samples[i]["context"] for i in idx], prompts, targets))}
        mem = icae.compress([ctx_ids[i] for i in idx])
        return {"loss": icae.loss(icae.decoder_rows(mem, "FT", prompts, targets))}

    run = _open_run(cfg, sub)
    if run is None:
        return _skipped(cfg, sub)
    with run:
        return _finish(run, train_loop(icae, cfg, run, step_loss, f"icae finetune {cfg.task}"))


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


def chunk_embeds(icae: ICAE, chunk: dict, pos: int, detach_memory: bool = False) -> tuple[torch.Tensor, torch.Tensor, int]:
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
            labels[0, -len(tgt):] = torch.tensor(tgt)
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

    run = _open_run(cfg, sub)
    if run is None:
        return _skipped(cfg, sub)
    with run:
        return _finish(run, train_loop(icae, cfg, run, step_loss, "icae finetune trajectories"))
