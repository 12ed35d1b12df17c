"""``actlab ia2 train``: one IA2 run — targets, adapter, training loop, saved adapter.

>>> from actlab.ia2 import IA2TrainConfig, train
>>> train(IA2TrainConfig("act", dataset="syn_sst2_remap", num_train_examples=8))      # doctest: +SKIP

The loop is upstream's ``train_unified_model``: Adam(lr), no scheduler, effective batch ``batch_size`` (4), up to
``num_epochs`` epochs (shuffled per epoch), dev loss (same objective) every ``dev_eval_steps`` steps and at each
epoch's end, early stop after ``patience`` evaluations without improvement → the best adapter state is restored
(if early stopping never triggers the last state is kept, as upstream). Examples of a batch are run together
(right padding, ``micro_batch_size`` per forward) instead of one by one; the loss is the batch mean, which is
upstream's accumulated ``loss / 4``.

A checkpoint (adapter, Adam state, best state, RNG state, counters: one safetensors file written atomically,
:mod:`actlab.core.checkpoint`) is written every ``checkpoint_every`` steps under ``{run}/checkpoint/``; rerunning the
same command resumes from it, with ``metrics.jsonl`` cut back to the checkpoint's step. One process owns a run
directory (:class:`actlab.core.io.RunDir`): a second one on the same run exits with an error naming the first.

Under ``accelerate launch --multi_gpu --num_processes N`` or ``torchrun --nproc_per_node N`` the run is data
parallel (:mod:`actlab.core.distributed`): every rank draws the same global batch order and takes its contiguous
slice of each batch (in ``micro_batch_size`` forwards), each micro-batch's loss is weighted by its share of the
global batch, the adapter gradients are summed over the ranks before ``opt.step()`` (so every rank holds the same
adapter, the one-process result up to float noise), the train and dev metrics are sums over the ranks (early
stopping decides the same everywhere). Rank 0 builds the ICL target cache first, the others then read it; rank 0
alone owns the run directory (lock, config with ``world_size``, metrics, checkpoints, trackers, the saved adapter);
the others load its checkpoint on resume. The process count is not part of the fingerprint (it changes the numbers
only by float noise): a run trained on 8 GPUs is skipped by a rerun on one.
A complete run is skipped on rerun if its recorded config has the same fingerprint (:data:`EXCLUDE` lists the fields
that do not count); with another config it is an error listing the fields that differ, unless ``--overwrite``
(redo it) or ``--force`` (always retrain). The finished run holds::

    {run}/adapter_model.safetensors  adapter_config.json    (PEFT save_pretrained)
    {run}/config.json                the full IA2TrainConfig + run_name/run_dir/parent_dir + _meta (versions, git sha)
    {run}/metrics.jsonl              per step: step, epoch, train/loss (+ train/act, train/ce, train/kl);
                                     per dev evaluation: dev/loss (+ dev/act, dev/ce, dev/kl), dev/best, dev/patience
    {run}/train_summary.json         best dev loss, steps, epochs, early_stopped, timings, target cache path
    {run}/COMPLETE                   written last (a complete run of the same config is skipped on rerun)
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import shutil
import time
from pathlib import Path

import torch
from tqdm import tqdm

from actlab.core import adapters, distributed
from actlab.core import checkpoint as ckpt_io
from actlab.core.errors import ActlabError
from actlab.core.io import RunDir, dataclass_defaults, is_complete, load_optimizer_tensors, run_state, umask_modes
from actlab.core.progress import progress
from actlab.ia2 import losses, naming, targets
from actlab.ia2.config import IA2TrainConfig

log = logging.getLogger(__name__)

CKPT_DIR = "checkpoint"
CKPT_FILE = "state.safetensors"
#: config fields that do not change a run's result (paths of outputs and caches, checkpoint cadence, batching of the
#: same computation, logging); every other field is part of the run's fingerprint
EXCLUDE = (
    "output_dir",
    "cache_dir",
    "device",
    "checkpoint_every",
    "micro_batch_size",
    "target_batch_size",
    "wandb_log",
    "wandb_project",
    "report_to",
    "force",
    "overwrite",
    "gradient_checkpointing",
)


# ------------------------------------------------------------------------------------------------------ data
def load_examples(cfg: IA2TrainConfig) -> tuple[dict[str, list[dict]], Path]:
    """Train/dev examples (with their demos) of the run, and the run file they come from."""
    from actlab.data import load_run, train_path

    run = load_run(cfg.dataset, cfg.num_train_examples, cfg.run_idx, cfg.data_dir)
    if not run["train"]:
        raise ActlabError(f"dataset {cfg.dataset!r} is eval-only (no train pool); train on another dataset")
    return {"train": run["train"], "dev": run["dev"]}, train_path(
        cfg.dataset, cfg.num_train_examples, cfg.run_idx, cfg.data_dir
    )


def check_parent(cfg: IA2TrainConfig) -> Path | None:
    """The parent adapter dir of a2t/t2a; a missing/incomplete parent is an error naming its path."""
    p = naming.parent_dir(cfg)
    if p is None:
        return None
    if not is_complete(p) or not (p / "adapter_config.json").exists():
        raise ActlabError(
            f"--training_method {cfg.training_method} continues from the {cfg.parent_method} adapter, "
            f"which is not trained: {p} is missing or incomplete; train it first "
            f"(actlab ia2 train --training_method {cfg.parent_method} with the same settings)"
        )
    return p


def make_items(encoded: list[targets.Encoded], tgts: list[dict] | None, cfg: IA2TrainConfig) -> list[dict]:
    items = []
    for i, e in enumerate(encoded):
        t = tgts[i] if tgts else {}
        it = {"query_ids": e.query_ids, **t}
        if "ids" in t:
            it["icl_ids"] = t["ids"]
        if cfg.label_type == "ground_truth":
            it["labels"] = e.gt_ids
        elif cfg.label_type == "icl_outputs":
            it["labels"] = t["ids"].tolist()
        else:
            it["labels"] = None
        items.append(it)
    return items


def _seed(cfg) -> int:
    """The run's seed: ``--seed``, else its ``run_idx``."""
    return cfg.run_idx if cfg.seed is None else cfg.seed


# ----------------------------------------------------------------------------------------------- checkpoints
def save_checkpoint(path: Path, model, opt, best_state: dict | None, counters: dict) -> None:
    tensors = {f"adapter.{k}": v for k, v in adapters.adapter_state(model).items()}
    if best_state is not None:
        tensors.update({f"best.{k}": v for k, v in best_state.items()})
    ckpt_io.save(path, tensors, step=counters["step"], optimizer=opt, extra={"counters": counters})


def load_checkpoint(path: Path, model, opt) -> tuple[dict | None, dict] | None:
    """Restore adapter + optimizer (+ RNG); returns ``(best_state, counters)``, or None if there is no checkpoint."""
    ck = ckpt_io.load(path, optimizer=opt)
    if ck is None:
        return None
    if ck.legacy:  # before actlab.core.checkpoint: the counters and optimizer state in the metadata, no RNG state
        if "counters" not in ck.meta:
            raise ActlabError(f"{path} is not an IA2 checkpoint; delete it to start the run over")
        load_optimizer_tensors(opt, ck.tensors, ck.meta.get("optimizer") or ck.meta.get("param_groups"))
        counters = json.loads(ck.meta["counters"])
    else:
        counters = ck.extra["counters"]
    dev = next(model.parameters()).device
    t = ck.tensors
    adapters.load_adapter_state(model, {k[8:]: v.to(dev) for k, v in t.items() if k.startswith("adapter.")})
    best = {k[5:]: v.to(dev) for k, v in t.items() if k.startswith("best.")} or None
    return best, counters


# ------------------------------------------------------------------------------------------------------ train
def _evaluate(model, items, cfg, pad_id, dist: distributed.Dist | None = None) -> dict[str, float]:
    """The dev losses, each the mean over ``items``; under several processes each rank runs its contiguous shard
    and the shares are summed over the ranks (every rank gets the same numbers)."""
    dist = dist or distributed.Dist()
    model.eval()
    sums: dict[str, float] = {}
    mb = cfg.micro_batch_size or cfg.batch_size
    mine = dist.shard(items)
    with torch.no_grad():
        for s in range(0, len(mine), mb):
            chunk = mine[s : s + mb]
            ls = losses.compute_losses(
                model,
                chunk,
                cfg.stage_objective,
                pad_id=pad_id,
                site=cfg.act_site,
                layers=cfg.act_layers,
                ce_loss_weight=cfg.ce_loss_weight,
            )
            for k, v in ls.items():
                sums[k] = sums.get(k, 0.0) + float(v) * len(chunk) / len(items)
    model.train()
    return dist.sum_floats(sums, keys_may_differ=len(items) < dist.world)


def _epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    g = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return torch.randperm(n, generator=g).tolist()


def prepare(cfg: IA2TrainConfig, model=None, tok=None, dist: distributed.Dist | None = None):
    """Everything before the first write of the run dir: checks, model, targets, adapter.

    Returns ``(peft_model, tok, items, target_file, from_cache)``; raises :class:`ActlabError` on bad input.
    ``dist``: this process's place in a launch (the model goes to its device; rank 0 builds the targets first).
    """
    from actlab.core.models import load, prompt_offset

    dist = dist or distributed.Dist()
    examples, data_file = load_examples(cfg)
    parent = check_parent(cfg)
    if model is None:
        model, tok = load(cfg.model_id, dtype=cfg.dtype, device=str(dist.device) if dist.active else cfg.device)
    elif tok is None:
        raise ActlabError("prepare(model=...) also needs tok=...")
    model_id = cfg.model_id
    # adapter config first: a bad --lora_type/--ia3_type fails before any expensive work
    if parent is None:
        pcfg = adapters.peft_config(
            cfg.family,
            model,
            modules=cfg.ia3_type if cfg.family == "ia3" else cfg.lora_type,
            r=cfg.lora_r,
            alpha=cfg.lora_alpha,
            dropout=cfg.lora_dropout,
            num_virtual_tokens=cfg.num_virtual_tokens,
        )
    max_len = getattr(model.config, "max_position_embeddings", None)
    if max_len and cfg.family == "prompt":
        max_len -= cfg.num_virtual_tokens
    enc = {
        s: targets.encode_examples(tok, examples[s], cfg.num_generated_tokens, cfg.max_icl_demos, max_len)
        for s in ("train", "dev")
    }
    need_targets = not (cfg.stage_objective == "tok" and cfg.label_type == "ground_truth")
    tgts, tfile, from_cache = {"train": None, "dev": None}, None, False
    if need_targets:
        fp = targets.model_fingerprint(model)
        data_sha = targets.file_sha(data_file)
        cache_dir = cfg.cache_dir or targets.default_cache_dir()
        tfile = targets.cache_path(
            cache_dir,
            model_id,
            fp,
            cfg.dataset,
            cfg.num_train_examples,
            cfg.run_idx,
            cfg.num_generated_tokens,
            cfg.act_site,
            cfg.act_layers,
            cfg.max_icl_demos,
            data_sha,
        )
        meta = {
            "model_id": model_id,
            "model_fp": fp,
            "data_file": str(data_file),
            "data_sha": data_sha,
            "T": cfg.num_generated_tokens,
            "site": cfg.act_site,
            "layers": cfg.act_layers,
            "max_icl_demos": cfg.max_icl_demos,
            "topk": cfg.kl_topk,
        }
        # rank 0 builds and writes the cache, then the others read it (no two processes write one file)
        tgts, from_cache = dist.main_first(
            targets.get_targets,
            model,
            tok,
            enc,
            cache_file=tfile,
            meta=meta,
            T=cfg.num_generated_tokens,
            site=cfg.act_site,
            layers=cfg.act_layers,
            topk=cfg.kl_topk,
            batch_size=cfg.target_batch_size,
        )
    if parent is None:
        peft_model = adapters.attach(model, pcfg, seed=_seed(cfg))
    else:
        peft_model = adapters.load_adapter(model, parent, trainable=True)
    assert prompt_offset(peft_model) == (cfg.num_virtual_tokens if cfg.family == "prompt" else 0)
    items = {s: make_items(enc[s], tgts[s], cfg) for s in ("train", "dev")}
    return peft_model, tok, items, tfile, from_cache


def _fingerprint_kw(cfg: IA2TrainConfig) -> dict:
    return {
        "exclude": EXCLUDE,
        "defaults": dataclass_defaults(IA2TrainConfig),
        "overwrite": cfg.force or getattr(cfg, "overwrite", False),
        "progress": (CKPT_DIR,),
    }


def run_status(cfg: IA2TrainConfig) -> str:
    """What training ``cfg`` will do, without writing: ``done`` (complete with this config: skipped), ``resume``,
    ``fresh``, ``redo`` (``--overwrite``/``--force``); a finished or started run of another config raises
    :class:`actlab.core.io.ConfigMismatch` listing the fields that differ."""
    if cfg.force:
        return "redo"
    return run_state(naming.run_dir(cfg), cfg.to_dict(), **_fingerprint_kw(cfg))


def train(cfg: IA2TrainConfig, model=None, tok=None, return_model: bool = False):
    """Train one run and return its directory (a complete run of the same config is skipped unless ``cfg.force``;
    one of another config is an error unless ``cfg.overwrite``).

    ``model``/``tok`` may be given (e.g. a micro model in tests); the model is wrapped by PEFT in place.
    ``return_model=True`` returns ``(path, peft_model)`` (``peft_model`` is None for a skipped run).
    Under a launcher (``WORLD_SIZE`` > 1) every process calls it; see the module doc for who does what.
    """
    dist = distributed.start(cfg.device, verb="ia2 train")
    dist.refuse_fsdp("ia2 train", "its uneven batch shards run different numbers of forwards per rank")
    path = naming.run_dir(cfg)
    fp = _fingerprint_kw(cfg)
    if dist.from_main(run_status, cfg) == "done":
        if dist.is_main:
            log.info("ia2: %s is complete; skipped (same config; --force retrains it)", path)
        return (path, None) if return_model else path
    t0 = time.perf_counter()
    peft_model, tok, items, tfile, from_cache = prepare(cfg, model, tok, dist)
    t_targets = time.perf_counter() - t0
    rd: RunDir | None = None

    def open_run() -> str:  # rank 0: lock, clear (--force), config.json; the others wait for its answer
        nonlocal rd
        rd = RunDir(path, wandb_log=cfg.wandb_log, wandb_project=cfg.wandb_project, report_to=cfg.report_to)
        try:
            if cfg.force:
                rd.clear()
            parent = naming.parent_dir(cfg)
            extra = {
                "run_name": naming.run_name(cfg),
                "run_dir": str(path),
                "parent_dir": None if parent is None else str(parent),
                "stage_objective": cfg.stage_objective,
                "target_cache": None if tfile is None else str(tfile),
                "adapter_modules": adapters.adapted_modules(peft_model),  # what the role letters resolved to
                "world_size": dist.world,
            }
            return rd.begin(cfg.to_dict(), extra=extra, **fp)
        except BaseException:
            rd.close()
            raise

    try:
        if dist.from_main(open_run) == "done":  # another process finished it meanwhile
            if dist.is_main:
                log.info("ia2: %s is complete; skipped (same config; --force retrains it)", path)
            return (path, None) if return_model else path
        out = _train_run(cfg, rd, dist, path, peft_model, tok, items, tfile, from_cache, t_targets)
    finally:
        if rd is not None:
            rd.close()
    return (out, peft_model) if return_model else out


def _train_run(
    cfg: IA2TrainConfig,
    rd: RunDir | None,
    dist: distributed.Dist,
    path: Path,
    peft_model,
    tok,
    items,
    tfile,
    from_cache,
    t_targets,
) -> Path:
    """The training loop; ``rd`` is the open run directory on rank 0, None on the other ranks."""
    seed = _seed(cfg)
    torch.manual_seed(seed)
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    params = [p for p in peft_model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=cfg.lr)
    train_items, dev_items = items["train"], items["dev"]
    n = len(train_items)
    bs = min(cfg.batch_size, n)
    mb = cfg.micro_batch_size or bs
    spe = math.ceil(n / bs)
    total = cfg.num_epochs * spe if cfg.max_steps is None else min(cfg.max_steps, cfg.num_epochs * spe)
    ckpt = path / CKPT_DIR / CKPT_FILE
    counters = {"step": 0, "best_dev": None, "bad_evals": 0, "early_stopped": False, "train_time": 0.0}
    best_state = None
    resumed = load_checkpoint(ckpt, peft_model, opt)  # every rank reads rank 0's checkpoint
    if resumed is not None:
        best_state, counters = resumed
        if dist.is_main:
            log.info("ia2: resuming %s from step %d", path.name, counters["step"])
    if rd is not None:
        rd.reset_metrics(keep_until_step=counters["step"])  # each step exactly once in metrics.jsonl
    if cfg.gradient_checkpointing:  # the adapters train on a frozen base: the inputs need grads (as PEFT does)
        from actlab.core.gradckpt import enable_gradient_checkpointing

        enable_gradient_checkpointing(peft_model, frozen_base=True)
    peft_model.train()
    bar = (
        progress(total=total, desc=f"{cfg.training_method} {path.name}", initial=counters["step"])
        if dist.is_main
        else tqdm(disable=True)
    )
    step = counters["step"]
    t_loop = time.perf_counter()
    while step < total and not counters["early_stopped"]:
        epoch, b = divmod(step, spe)
        order = _epoch_order(n, seed, epoch)  # the same global order on every rank
        idx = order[b * bs : (b + 1) * bs]
        mine = dist.shard(idx)  # this rank's contiguous slice of the global batch
        sums: dict[str, float] = {}
        for s in range(0, len(mine), mb):
            chunk = [train_items[i] for i in mine[s : s + mb]]
            with contextlib.ExitStack() as hooks:  # checkpointed layers rerun the capture hooks in backward
                ls = losses.compute_losses(
                    peft_model,
                    chunk,
                    cfg.stage_objective,
                    pad_id=pad_id,
                    site=cfg.act_site,
                    layers=cfg.act_layers,
                    ce_loss_weight=cfg.ce_loss_weight,
                    keep_hooks=hooks if cfg.gradient_checkpointing else None,
                )
                (ls["loss"] * (len(chunk) / len(idx))).backward()  # its share of the global batch
            for k, v in ls.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach()) * len(chunk) / len(idx)
        dist.sum_grads(params)  # the ranks' shares sum to the whole batch's gradient
        sums = dist.sum_floats(sums, keys_may_differ=len(idx) < dist.world)
        if not all(math.isfinite(v) for v in sums.values()):
            raise ActlabError(f"non-finite loss at step {step + 1} ({sums}); try a smaller --lr")
        opt.step()
        opt.zero_grad(set_to_none=True)
        step += 1
        row = {"step": step, "epoch": epoch, **{f"train/{k}": v for k, v in sums.items()}}
        end_of_epoch = b == spe - 1
        if dev_items and (step % cfg.dev_eval_steps == 0 or end_of_epoch):
            dev = _evaluate(peft_model, dev_items, cfg, pad_id, dist)  # the same numbers on every rank
            row.update({f"dev/{k}": v for k, v in dev.items()})
            if counters["best_dev"] is None or dev["loss"] < counters["best_dev"]:
                counters["best_dev"], counters["bad_evals"] = dev["loss"], 0
                best_state = adapters.adapter_state(peft_model)
            else:
                counters["bad_evals"] += 1
                if counters["bad_evals"] >= cfg.patience:
                    counters["early_stopped"] = True
                    if best_state is not None:
                        adapters.load_adapter_state(peft_model, best_state)
            row.update({"dev/best": counters["best_dev"], "dev/patience": counters["bad_evals"]})
        if rd is not None:
            rd.log(row)
        bar.update(1)
        bar.set_postfix(loss=f"{sums['loss']:.4g}", dev=f"{counters['best_dev'] or float('nan'):.4g}")
        counters["step"] = step
        if step % cfg.checkpoint_every == 0 and step < total and not counters["early_stopped"]:
            counters["train_time"] += time.perf_counter() - t_loop
            t_loop = time.perf_counter()
            if rd is not None:
                save_checkpoint(ckpt, peft_model, opt, best_state, counters)
    bar.close()
    counters["train_time"] += time.perf_counter() - t_loop
    if rd is not None:
        _save_adapter(peft_model, path)
        summary = {
            "steps": step,
            "epochs": (step - 1) // spe + 1 if step else 0,
            "steps_per_epoch": spe,
            "best_dev_loss": counters["best_dev"],
            "early_stopped": counters["early_stopped"],
            "train_time_s": counters["train_time"],
            "step_time_s": counters["train_time"] / max(step, 1),
            "target_time_s": t_targets,
            "targets_from_cache": from_cache,
            "target_cache": None if tfile is None else str(tfile),
            "n_train": n,
            "n_dev": len(dev_items),
            "world_size": dist.world,
            "trainable_params": sum(p.numel() for p in params),
        }
        rd.write_json("train_summary.json", summary)
        rd.mark_complete(summary)
        shutil.rmtree(path / CKPT_DIR, ignore_errors=True)
    dist.barrier()  # the run is complete when any rank returns
    return path


def _save_adapter(model, path: Path) -> None:
    """``save_pretrained`` into a temp dir, then move the files in (a kill never leaves a half-written adapter)."""
    import os

    tmp = path / ".adapter.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp), safe_serialization=True)
    umask_modes(tmp.iterdir())
    for f in tmp.iterdir():
        os.replace(f, path / f.name)
    shutil.rmtree(tmp, ignore_errors=True)


def load_trained(run_path: str | Path, model=None, tok=None):
    """A trained run's base model + adapter (eval mode), and the tokenizer: ``(peft_model, tok, config dict)``."""
    from actlab.core.io import read_json
    from actlab.core.models import load

    run_path = Path(run_path)
    if not is_complete(run_path):
        raise ActlabError(f"{run_path} is not a complete IA2 run")
    cfg = read_json(run_path / "config.json")
    if model is None:
        model, tok = load(cfg["model_id"], dtype=cfg.get("dtype"), device=cfg.get("device"))
    pm = adapters.load_adapter(model, run_path, trainable=False)
    pm.eval()
    return pm, tok, cfg
