"""Training loop of a zoo model: full-LM loss, AdamW, warmup + cosine, checkpointed so a killed build resumes.

Feasibility §5: a loss on *all* tokens (next-token prediction builds the induction circuit) and lr 1e-3 are what
make in-context learning emerge in a tiny Llama within a few minutes; a label-only loss or lr 3e-3 stalled.

Under several processes (``dist``, :mod:`actlab.core.distributed`) a build is data parallel with the spec's global
batch: every rank builds the step's whole batch (the same documents, padded alike), trains on its contiguous slice
of rows with its token losses divided by the whole batch's (weighted) token count, and the gradients are summed
before clipping and the AdamW step, so the weights equal a one-process build's up to float noise. Rank 0 alone
evaluates, checkpoints and writes.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

from actlab.core import checkpoint as ckpt_io
from actlab.core.distributed import Dist
from actlab.core.io import load_optimizer_tensors, read_json
from actlab.core.progress import progress
from actlab.zoo.corpus import batch
from actlab.zoo.specs import ZooSpec
from actlab.zoo.tokenizer import label_scaffold_ids

log = logging.getLogger(__name__)

CKPT = "checkpoint.safetensors"
CKPT_STATE = "checkpoint.json"  # older actlab: the step in this second file (two writes: not atomic); still read


def make_model(spec: ZooSpec, tok):
    from transformers import AutoModelForCausalLM, LlamaConfig

    torch.manual_seed(spec.seed)
    cfg = LlamaConfig(
        vocab_size=len(tok),
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        **spec.model.to_dict(),
    )
    return AutoModelForCausalLM.from_config(cfg)


def _lr_lambda(spec: ZooSpec) -> Callable[[int], float]:
    """Linear warm-up, constant through the corpus's warm-up phase (if any), then cosine decay to 5 %."""
    t = spec.train
    flat = max(t.warmup, spec.corpus.warmup_steps if spec.corpus.warmup_mix else 0)

    def f(step: int) -> float:
        if step < t.warmup:
            return (step + 1) / t.warmup
        if step < flat:
            return 1.0
        frac = (step - flat) / max(1, t.steps - flat)
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0)))

    return f


def _save_ckpt(path: Path, model, opt, sched, step: int, log: list[dict], elapsed: float) -> None:
    """Weights, AdamW state, scheduler, RNG, step and the eval log: one file, one atomic write."""
    ckpt_io.save(
        path / CKPT,
        {f"model.{k}": v for k, v in model.state_dict().items()},
        step=step,
        optimizer=opt,
        scheduler=sched,
        extra={"log": log, "elapsed_s": elapsed},
    )
    (path / CKPT_STATE).unlink(missing_ok=True)


def _load_ckpt(path: Path, model, opt, sched) -> tuple[int, list[dict], float] | None:
    ck = ckpt_io.load(path / CKPT, optimizer=opt, scheduler=sched)
    if ck is None:
        return None
    if ck.legacy:  # an older build: tensors here, the step in checkpoint.json
        if not (path / CKPT_STATE).exists():
            return None
        state = read_json(path / CKPT_STATE)
        if ck.meta.get("optimizer"):
            load_optimizer_tensors(opt, ck.tensors, ck.meta["optimizer"])
        else:  # the oldest format: AdamW moments with the step as a 1-element tensor
            load_optimizer_tensors(
                opt, {k: v.reshape(()) if k.endswith(".step") else v for k, v in ck.tensors.items()}
            )
        step, log, elapsed = int(state["step"]), list(state["log"]), float(state.get("elapsed_s", 0.0))
        for g in opt.param_groups:
            g["initial_lr"] = g.get("initial_lr", g["lr"])
        sched.last_epoch = step - 1
        with warnings.catch_warnings():  # "scheduler.step() before optimizer.step()": intended here
            warnings.simplefilter("ignore")
            sched.step()  # the lr of step `step`, as an uninterrupted run has it
    else:
        step, log, elapsed = ck.step, list(ck.extra["log"]), float(ck.extra.get("elapsed_s", 0.0))
    model.load_state_dict({k[6:]: v for k, v in ck.tensors.items() if k.startswith("model.")}, strict=False)
    return step, log, elapsed


def _token_weights(b: dict, scaffold: torch.Tensor, label_weight: float) -> torch.Tensor:
    """``[B, T-1]`` weights of the next-token targets: 1, ``label_weight`` right after a ``scaffold`` id, 0 on pads."""
    w = (b["labels"][:, 1:] != -100).float()
    if label_weight == 1.0:
        return w
    return w + (label_weight - 1.0) * w * torch.isin(b["input_ids"][:, :-1], scaffold).float()


def _loss(model, b: dict, scaffold: torch.Tensor, label_weight: float, total: float | None = None) -> torch.Tensor:
    """Next-token loss on every token; tokens right after a ``scaffold`` id (``\nLabel:`` and the fused key tokens)
    weigh ``label_weight``. ``total``: the weight sum to divide by (a whole batch's, when ``b`` is a slice of it)."""
    if label_weight == 1.0:
        return model(**b).loss if total is None else model(**b, num_items_in_batch=total).loss
    logits = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits[:, :-1].float()
    tgt = b["labels"][:, 1:]
    ce = torch.nn.functional.cross_entropy(logits.transpose(1, 2), tgt, ignore_index=-100, reduction="none")
    w = _token_weights(b, scaffold, label_weight)
    return (ce * w).sum() / (w.sum() if total is None else total)


def train(spec: ZooSpec, tok, work_dir: Path, eval_fn: Callable[[object, int], dict] | None = None,
          stop_after: int | None = None, dist: Dist | None = None):  # fmt: skip
    """Train ``spec``'s model in ``work_dir`` (resuming from its checkpoint if any); return (model, info).

    ``stop_after``: stop (after checkpointing) once this many steps are done — used by tests to simulate a kill.
    ``dist``: the processes of a launch (data parallel, see the module doc; every rank returns the model).
    """
    dist = dist or Dist()
    t = spec.train
    model = make_model(spec, tok)
    model.train()
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": t.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=t.lr,
        betas=(0.9, 0.95),
    )
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(spec))
    start, evals, elapsed = _load_ckpt(work_dir, model, opt, sched) or (0, [], 0.0)  # every rank reads it
    n_tok = 0
    t0 = time.perf_counter()
    scaffold = torch.tensor(label_scaffold_ids(tok))  # once per build, not per step
    if dist.is_main:
        bar = progress(total=t.steps, desc=f"zoo build {spec.name}", initial=start)
    else:  # one bar per build
        from tqdm.auto import tqdm

        bar = tqdm(disable=True)
    params = list(model.parameters())
    loss_v = float("nan")
    for step in range(start, t.steps):
        b = batch(tok, spec.corpus, spec.seed, step, t.batch_size)
        if dist.active:  # this rank's rows of the step's batch, weighted by the whole batch's token count
            total = float(_token_weights(b, scaffold, t.label_loss_weight).sum())
            rows = dist.shard(range(b["input_ids"].shape[0]))
            mine = {k: v[rows.start : rows.stop] for k, v in b.items()}
            loss = _loss(model, mine, scaffold, t.label_loss_weight, total=total) if len(rows) else None
        else:
            loss = _loss(model, b, scaffold, t.label_loss_weight)
        opt.zero_grad(set_to_none=True)
        if loss is not None:
            loss.backward()
        dist.sum_grads(params)
        torch.nn.utils.clip_grad_norm_(params, t.grad_clip)
        opt.step()
        sched.step()
        loss_v = dist.sum_floats({"loss": float(loss.detach()) if loss is not None else 0.0})["loss"]
        n_tok += int(b["attention_mask"].sum())
        bar.update(1)
        done = step + 1
        if done % 20 == 0 or done == t.steps:
            bar.set_postfix(loss=f"{loss_v:.3f}")
        if t.eval_every and eval_fn is not None and done % t.eval_every == 0 and done < t.steps and dist.is_main:
            row = {"step": done, "loss": round(loss_v, 4), **eval_fn(model, done)}
            evals.append(row)
            log.info("zoo build %s: %s", spec.name, row)
            model.train()
        stop = stop_after is not None and done >= stop_after
        if (done % t.ckpt_every == 0 or done == t.steps or stop) and dist.is_main:
            _save_ckpt(work_dir, model, opt, sched, done, evals, elapsed + time.perf_counter() - t0)
        if stop and done < t.steps:
            dist.barrier()  # the checkpoint is written
            bar.close()
            return None, {"stopped_at": done}
    bar.close()
    secs = time.perf_counter() - t0
    model.eval()
    info = {
        "steps": t.steps,
        "resumed_from_step": start,
        "train_seconds_this_run": round(secs, 1),
        "train_seconds_total": round(elapsed + secs, 1),
        "tokens_per_second_this_run": round(n_tok / max(secs, 1e-9)),
        "final_loss": round(loss_v, 4) if t.steps > start else None,
        "log": evals,
    }
    return model, info
