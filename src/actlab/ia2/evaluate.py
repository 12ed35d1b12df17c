"""``actlab ia2 evaluate`` (the seed's ``evaluate_batch_optimized.py``): base with/without ICL and trained adapters.

What it does (as the official ``evaluate_batch_optimized.py``):

* **eval set**: the first ``num_eval_examples`` (default 500) examples of the eval dataset's ``val_examples`` pool;
* **ICL**: ``min(icl_max_demos, N - 1)`` demos drawn (``np.random.RandomState(run)``, no replacement) from the
  run's ``remaining_indices`` of the ICL source dataset; the same demos precede every query of that run, so they are
  prefilled **once** and their KV cache is reused by every batch of queries (:func:`shared_prefix_next_token_logits`);
* **single-token tasks**: one forward, ``p = softmax(last logits)``, top-10 kept; top-1 accuracy
  ``decode(top1).strip() == gold``; top-k accuracy; label-set accuracy (gold label's first token has the highest p
  among the labels' first tokens); entropy and uncertainty ``1 - p1`` on the renormalised top-10; ECE (15
  equal-count bins, confidence = renormalised top-1 p, correctness = top-1 correct);
* **multi-token tasks**: greedy decoding (``max_new_tokens`` and stop strings of the registry), the registry's
  parser on prediction and gold, exact match; ``None`` counts as wrong.

Results land in the seed's layout (``outputs/evaluations/{type}[_uncertainty]/{trained_dataset}/{name}.json``; base
runs under ``evaluations/base[_uncertainty]/{eval_dataset}/``). A trained model's file name carries its run
directory's name (which holds the training T, label type, lr, run, …), so two runs never share a result file.

Every result records its **identity** (:func:`result_identity`): every setting that changes its numbers (the trained
run's whole config, the eval set size, the generation length, with/without ICL, …). An existing result is skipped
only when its recorded identity matches the one asked for (a result with ICL also serves a request without);
otherwise it is recomputed and the log line says which settings differ.

Generation length (multi-token tasks): ``num_generated_tokens_eval`` when given, else the dataset registry's
``max_new_tokens``. Single-token tasks always score the next token (one forward).
"""

from __future__ import annotations

import gc
import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from actlab.core.errors import ActlabError
from actlab.core.io import COMPLETE, atomic_write_json, read_json
from actlab.core.lazy import callable_module
from actlab.core.metrics import ece, entropy, label_set_accuracy
from actlab.ia2.config import EXTRA_OBJECTIVES, OBJECTIVES, method_parts, split_method

log = logging.getLogger(__name__)

TOP_K = 10
N_BINS = 15


# ------------------------------------------------------------------------------------------------------- config
@dataclass
class EvalConfig:
    """Settings of ``actlab ia2 evaluate``; list-valued filters select trained runs (None = any).

    Args:
        model_types: ``base`` and/or trained methods (``tok act tna a2t t2a``, ``ia3-tok``, ``prompt-act``, …).
        trained_datasets: datasets the adapters were trained on (default: every one found).
        eval_datasets: datasets whose eval pool is scored (default: the trained dataset).
        icl_source_datasets: where ICL demos come from (default: the trained dataset; OOD when it differs from eval).
        icl_max_demos: at most this many demos (``min(icl_max_demos, N - 1)``).
        lora_types / num_examples / lrs / run_indices: filters on the trained runs' config fields.
        model_id: the base model when no trained run names it (``tiny`` by default).
        uncertainty_analysis: write to ``{type}_uncertainty`` (single-token stats are always computed).
        eval_with_icl: also score trained models with demos.
        num_eval_examples: eval-set size (the paper's 500).
        num_generated_tokens_eval: generation length for multi-token tasks (None: the dataset registry's).
        batch_size / use_prefix_cache: speed knobs; results are the same either way.
    """

    model_types: list[str] = field(default_factory=lambda: ["base", "tok", "act", "tna", "a2t"])
    trained_datasets: list[str] | None = None
    eval_datasets: list[str] | None = None
    icl_source_datasets: list[str] | None = None
    icl_max_demos: int = 5
    lora_types: list[str] | None = None
    num_examples: list[int] | None = None
    lrs: list[float] | None = None
    run_indices: list[int] | None = None
    model_id: str = "tiny"
    uncertainty_analysis: bool = False
    eval_with_icl: bool = False
    num_eval_examples: int = 500
    num_generated_tokens_eval: int | None = None
    top_k: int = TOP_K
    batch_size: int = 16
    use_prefix_cache: bool = True
    outputs_dir: str = "outputs"
    data_dir: str = "data"
    device: str | None = None
    dtype: str | None = None
    force: bool = False

    def __post_init__(self):
        if self.icl_max_demos < 0:
            raise ActlabError(f"icl_max_demos must be >= 0, got {self.icl_max_demos}")
        if self.num_eval_examples < 1:
            raise ActlabError(f"num_eval_examples must be >= 1, got {self.num_eval_examples}")
        if self.num_generated_tokens_eval is not None and self.num_generated_tokens_eval < 1:
            raise ActlabError(f"num_generated_tokens_eval must be >= 1, got {self.num_generated_tokens_eval}")
        if self.batch_size < 1:
            raise ActlabError(f"batch_size must be >= 1, got {self.batch_size}")
        if not self.model_types:
            raise ActlabError("model_types is empty; give base and/or trained methods (tok act tna a2t ...)")
        for t in self.model_types:
            if t != "base" and method_parts(t) is None:
                raise ActlabError(
                    f"unknown model type {t!r}; valid: base, {', '.join(OBJECTIVES + EXTRA_OBJECTIVES)} "
                    f"(optionally prefixed ia3-/prompt-/prefix-)"
                )


# ---------------------------------------------------------------------------------------------- run discovery
def _run_field(cfg: dict, key: str):
    return cfg.get(key)


def discover_runs(outputs_dir: str | Path = "outputs") -> list[dict]:
    """Every COMPLETE trained run under ``outputs/{method}/{dataset}/{run}/`` as its config dict + ``run_dir``."""
    runs = []
    root = Path(outputs_dir)
    for cfg_path in sorted(root.glob("*/*/*/config.json")):
        if cfg_path.parts[-4] == "evaluations":
            continue
        run_dir = cfg_path.parent
        if not (run_dir / COMPLETE).exists():
            continue
        try:
            cfg = read_json(cfg_path)
        except (OSError, ValueError):
            continue
        cfg = {k: v for k, v in cfg.items() if k != "_meta"}
        cfg["method"] = cfg.get("method") or cfg.get("training_method") or cfg_path.parts[-4]
        cfg.setdefault("dataset", cfg_path.parts[-3])
        cfg["run_dir"] = str(run_dir)
        runs.append(cfg)
    return runs


def _close(a, b) -> bool:
    try:
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
    except (TypeError, ValueError):
        return False


def filter_runs(runs: list[dict], cfg: EvalConfig) -> list[dict]:
    """The runs matching every filter of ``cfg``."""
    types = [t for t in cfg.model_types if t != "base"]
    out = []
    for r in runs:
        if r.get("method") not in types:
            continue
        if cfg.trained_datasets and r.get("dataset") not in cfg.trained_datasets:
            continue
        if cfg.lora_types and split_method(r["method"])[0] == "lora" and r.get("lora_type") not in cfg.lora_types:
            continue
        if cfg.num_examples and int(r.get("num_train_examples", -1)) not in cfg.num_examples:
            continue
        if cfg.lrs and not any(_close(r.get("lr"), x) for x in cfg.lrs):
            continue
        if cfg.run_indices and int(r.get("run_idx", -1)) not in cfg.run_indices:
            continue
        out.append(r)
    return out


def describe_filters(cfg: EvalConfig) -> str:
    parts = [f"model_types={' '.join(t for t in cfg.model_types if t != 'base')}"]
    for name in ("trained_datasets", "lora_types", "num_examples", "lrs", "run_indices"):
        v = getattr(cfg, name)
        if v:
            parts.append(f"{name}={' '.join(map(str, v))}")
    return ", ".join(parts)


def describe_existing(runs: list[dict]) -> str:
    if not runs:
        return "no trained runs exist"
    from collections import Counter

    c = Counter(f"{r.get('method')}/{r.get('dataset')} N={r.get('num_train_examples')} lr={r.get('lr')}" for r in runs)
    items = [f"{k} ×{v}" for k, v in sorted(c.items())]
    more = f" (+{len(items) - 6} more)" if len(items) > 6 else ""
    return "existing: " + "; ".join(items[:6]) + more


# ------------------------------------------------------------------------------------------------ result paths
def result_path(
    cfg_or_root: EvalConfig | str | Path,
    model_type: str,
    *,
    model_id: str,
    eval_dataset: str,
    icl_source: str,
    icl_max_demos: int,
    T: int = 1,
    uncertainty: bool = False,
    run: dict | None = None,
    N: int | None = None,
    run_idx: int | None = None,
    with_icl: bool = True,
) -> Path:
    """The seed's directory layout; file names carry the eval settings and, for trained models, the run's name."""
    from actlab.core.models import short_name

    root = Path(cfg_or_root.outputs_dir if isinstance(cfg_or_root, EvalConfig) else cfg_or_root) / "evaluations"
    m = short_name(model_id)
    suffix = "_uncertainty" if uncertainty else ""
    if model_type == "base":
        d = root / f"base{suffix}" / eval_dataset
        if not with_icl:
            return d / f"{m}_base_without_icl_T{T}.json"
        return d / f"{m}_base_on_{icl_source}_demos{icl_max_demos}_T{T}_N{N}_{run_idx}.json"
    if run is None or not run.get("run_dir"):
        raise ValueError("a trained result path needs the run's config with its run_dir")
    # the run directory's name holds every training setting of the seed's run name (T, label type, lr, run, ...)
    name = f"{m}_{eval_dataset}_on_{icl_source}_demos{icl_max_demos}_T{T}_{Path(run['run_dir']).name}"
    return root / f"{model_type}{suffix}" / run.get("dataset", "unknown") / f"{name}.json"


# ------------------------------------------------------------------------------------------ batched scoring
def common_prefix_len(seqs: Sequence[Sequence[int]]) -> int:
    if not seqs:
        return 0
    first = seqs[0]
    n = min(len(s) for s in seqs)
    for i in range(n):
        t = first[i]
        if any(s[i] != t for s in seqs):
            return i
    return n


def _cacheable(model) -> bool:
    from actlab.core.models import peft_type, prompt_offset

    return prompt_offset(model) == 0 and peft_type(model) not in ("PREFIX_TUNING",)


def _expand_cache(cache, b: int, config):
    from transformers import DynamicCache

    data = [(layer.keys.expand(b, -1, -1, -1), layer.values.expand(b, -1, -1, -1)) for layer in cache.layers]
    return DynamicCache(ddp_cache_data=data, config=config)


@torch.no_grad()
def shared_prefix_next_token_logits(
    model, tok, prompts: Sequence[str], batch_size: int = 16, min_prefix: int = 4
) -> torch.Tensor:
    """Next-token logits (fp32, ``[n, vocab]``) of ``prompts`` that share a long token prefix (the ICL demos).

    The longest common token prefix of the *full* tokenizations is run once; its KV cache is expanded (a view, no
    copy) to each batch of right-padded suffixes, whose positions continue after the prefix. Every row thus sees
    exactly the tokens it would see alone. Falls back to :func:`actlab.core.models.next_token_logits` when the
    shared prefix is short or the model shifts positions (prompt tuning) or owns the cache (prefix tuning).
    """
    from actlab.core.models import next_token_logits, pad_right

    enc = [tok(p)["input_ids"] for p in prompts]
    if not enc:
        return torch.empty(0)
    plen = min(common_prefix_len(enc), min(len(e) for e in enc) - 1)
    if plen < min_prefix or not _cacheable(model):
        return next_token_logits(model, tok, prompts, batch_size=batch_size)
    dev = next(model.parameters()).device
    pre = torch.tensor([enc[0][:plen]], device=dev)
    out = model(input_ids=pre, attention_mask=torch.ones_like(pre), use_cache=True)
    cache = out.past_key_values
    config = getattr(model, "config", None)
    rows = []
    for start in range(0, len(enc), batch_size):
        suff = [e[plen:] for e in enc[start : start + batch_size]]
        b = len(suff)
        ids, mask = pad_right(suff, tok.pad_token_id)
        full_mask = torch.cat([torch.ones(b, plen, dtype=mask.dtype), mask], dim=1)
        pos = (plen + torch.arange(ids.shape[1])).unsqueeze(0).expand(b, -1)
        o = model(
            input_ids=ids.to(dev),
            attention_mask=full_mask.to(dev),
            position_ids=pos.to(dev),
            past_key_values=_expand_cache(cache, b, config),
            use_cache=True,
        )
        last = (mask.sum(1) - 1).to(o.logits.device)
        rows.append(o.logits[torch.arange(b, device=o.logits.device), last].float().cpu())
    return torch.cat(rows)


def label_first_tokens(tok, prompt: str, labels: Sequence[str]) -> list[int]:
    """The first token of each label as it follows ``prompt`` (prompt+label tokenized together, prompt removed)."""
    base = tok(prompt)["input_ids"]
    out = []
    for lab in labels:
        ids = tok(prompt + lab)["input_ids"]
        k = common_prefix_len([base, ids])
        if k >= len(ids):
            raise ActlabError(f"label {lab!r} adds no token after the prompt")
        out.append(int(ids[k]))
    return out


def score_logits(
    logits: torch.Tensor,
    tok,
    golds: Sequence[str],
    labels: Sequence[str] | None,
    label_token_ids: Sequence[int] | None,
    gold_labels: Sequence[int | None] | None,
    top_k: int = TOP_K,
) -> tuple[dict, list[dict]]:
    """Single-token metrics and per-example records from next-token logits (see the module docstring)."""
    probs = torch.softmax(logits.float(), dim=-1)
    k = min(top_k, probs.shape[-1])
    top_p, top_i = probs.topk(k, dim=-1)
    records, confs, corr = [], [], []
    lab_rows, lab_gold = [], []
    for i in range(probs.shape[0]):
        toks = [tok.decode([int(t)]) for t in top_i[i]]
        pk = top_p[i].tolist()
        s = sum(pk)
        p1 = pk[0] / s if s > 0 else 0.0
        gold = str(golds[i])
        ok = toks[0].strip() == gold
        rec = {
            "pred": toks[0].strip(),
            "gold": gold,
            "correct": bool(ok),
            "confidence": p1,
            "topk_correct": any(t.strip() == gold for t in toks),
            "entropy": entropy(pk),
            "top_k_tokens": toks,
            "top_k_probs": pk,
        }
        if label_token_ids is not None and gold_labels is not None and gold_labels[i] is not None:
            lp = [float(probs[i, t]) for t in label_token_ids]
            rec["label_probs"] = dict(zip(labels, lp, strict=True))
            rec["label_correct"] = lp[int(gold_labels[i])] >= max(lp)  # ties count as correct (the reference's rule)
            lab_rows.append(lp)
            lab_gold.append(int(gold_labels[i]))
        records.append(rec)
        confs.append(p1)
        corr.append(ok)
    n = len(records)
    metrics = {
        "n": n,
        "accuracy": float(np.mean(corr)) if n else float("nan"),
        "top1_accuracy": float(np.mean(corr)) if n else float("nan"),
        f"top{k}_accuracy": float(np.mean([r["topk_correct"] for r in records])) if n else float("nan"),
        "label_accuracy": label_set_accuracy(lab_rows, lab_gold) if lab_rows else None,
        "entropy": float(np.mean([r["entropy"] for r in records])) if n else float("nan"),
        "uncertainty": float(np.mean([1 - c for c in confs])) if n else float("nan"),
        "confidence": float(np.mean(confs)) if n else float("nan"),
        "ece": ece(confs, corr, N_BINS),
    }
    return metrics, records


def score_generations(texts: Sequence[str], golds: Sequence[str | None], spec) -> tuple[dict, list[dict]]:
    """Multi-token: parse each generation with the dataset's parser, exact match with the gold; None is wrong."""
    records = []
    for text, gold in zip(texts, golds, strict=True):
        pred = spec.parse(text)
        ok = pred is not None and gold is not None and str(pred) == str(gold)
        records.append({"generation": text, "pred": pred, "gold": gold, "correct": bool(ok)})
    n = len(records)
    return {"n": n, "accuracy": float(np.mean([r["correct"] for r in records])) if n else float("nan")}, records


def evaluate_prompts(
    model, tok, spec, prompts: Sequence[str], examples: Sequence[dict], cfg: EvalConfig, shared_prefix: bool
) -> tuple[dict, list[dict]]:
    """Score ``prompts`` (one per example) with the task's mode; ``shared_prefix`` enables the KV-cache path."""
    from actlab.core.models import generate, next_token_logits

    golds = [ex.get("gold") if ex.get("gold") is not None else ex.get("answer") for ex in examples]
    if spec.task_type == "single_token":
        if shared_prefix and cfg.use_prefix_cache:
            logits = shared_prefix_next_token_logits(model, tok, prompts, batch_size=cfg.batch_size)
        else:
            logits = next_token_logits(model, tok, prompts, batch_size=cfg.batch_size)
        labels = spec.labels
        lab_ids = label_first_tokens(tok, examples[0]["prompt"], labels) if labels else None
        return score_logits(logits, tok, golds, labels, lab_ids, [ex.get("label") for ex in examples], cfg.top_k)
    texts = generate(
        model,
        tok,
        list(prompts),
        max_new_tokens=eval_T(cfg, spec),
        batch_size=cfg.batch_size,
        stop_strings=list(spec.stop_strings),
    )
    return score_generations(texts, golds, spec)


def eval_T(cfg: EvalConfig, spec) -> int:
    """Tokens scored per example: 1 for single-token tasks; else ``num_generated_tokens_eval`` or the registry's."""
    if spec.task_type == "single_token":
        return 1
    return int(cfg.num_generated_tokens_eval or spec.max_new_tokens)


# ------------------------------------------------------------------------------------------- result identity
#: keys of a trained run's config that do not change its evaluation (paths, logging, devices)
_NOT_IDENTITY = frozenset(
    {
        "run_dir",
        "output_dir",
        "data_dir",
        "cache_dir",
        "device",
        "checkpoint_every",
        "wandb_log",
        "wandb_project",
        "report_to",
        "force",
        "_meta",
        "method",
    }
)


def result_identity(task: Task, cfg: EvalConfig) -> dict:
    """Every setting that changes a result's numbers, as a JSON-normal dict (recorded in the result as ``identity``).

    Kept small and local so that a project-wide config fingerprint can replace it.
    """
    from actlab.data import get_dataset

    spec = get_dataset(task.eval_dataset)
    ident: dict[str, Any] = {
        "kind": task.kind,
        "model_type": task.model_type,
        "model_id": task.model_id,
        "eval_dataset": task.eval_dataset,
        "num_eval_examples": cfg.num_eval_examples,
        "num_generated_tokens_eval": eval_T(cfg, spec),
        "top_k": cfg.top_k,
        "dtype": cfg.dtype,
        "with_icl": task.kind == "base_with" or (task.kind == "trained" and cfg.eval_with_icl),
    }
    if task.kind != "base_without":
        ident.update(icl_source=task.icl_source, icl_max_demos=cfg.icl_max_demos, N=task.N, run_idx=task.run_idx)
    if task.run is not None:
        ident["trained"] = {k: v for k, v in sorted(task.run.items()) if k not in _NOT_IDENTITY}
    return json.loads(json.dumps(ident, sort_keys=True, default=str))


def identity_diff(recorded: dict | None, wanted: dict) -> list[str]:
    """``["key: recorded -> wanted", ...]`` (dotted keys for nested settings) where a recorded result does not serve
    ``wanted`` (:func:`actlab.core.io.diff_configs`). A result computed with ICL also serves a request without it
    (its without-ICL numbers are the same)."""
    from actlab.core.io import diff_configs

    if not isinstance(recorded, dict):
        return ["no recorded settings"]
    serves_icl = recorded.get("with_icl") or not wanted.get("with_icl")
    return diff_configs(recorded, wanted, exclude=("with_icl",) if serves_icl else ())


# ----------------------------------------------------------------------------------------------- data helpers
def eval_examples(name: str, cfg: EvalConfig) -> list[dict]:
    from actlab.data import get_dataset, read_pool

    get_dataset(name)
    pool = read_pool(name, cfg.data_dir)  # one-line error naming the prepare command when missing
    val = pool.get("val_examples") or []
    if not val:
        raise ActlabError(f"dataset {name!r} has an empty eval pool in {cfg.data_dir}/{name}/main.json")
    return val[: cfg.num_eval_examples]


_RUN_CACHE: dict[tuple, tuple] = {}


def draw_demos(source: str, N: int, run_idx: int, icl_max_demos: int, data_dir: str) -> list[dict]:
    """``min(icl_max_demos, N - 1)`` demos drawn with ``RandomState(run_idx)`` from run (N, run_idx)'s remaining pool."""
    from actlab.data import load_run

    key = (source, N, run_idx, str(Path(data_dir).resolve()))
    path = Path(data_dir) / source / "train" / f"{N}_{run_idx}.json"
    stamp = path.stat().st_mtime_ns if path.exists() else None
    if key not in _RUN_CACHE or _RUN_CACHE[key][0] != stamp:
        _RUN_CACHE[key] = (stamp, load_run(source, N, run_idx, data_dir))
    run = _RUN_CACHE[key][1]
    pool = run["remaining"]
    k = min(icl_max_demos, max(N - 1, 0))
    if icl_max_demos > len(pool):
        raise ActlabError(
            f"--icl_max_demos {icl_max_demos} is larger than the demo pool of {source!r} run N={N} "
            f"run={run_idx} ({len(pool)} remaining examples); use --icl_max_demos <= {len(pool)}"
        )
    if k == 0:
        return []
    rng = np.random.RandomState(run_idx)
    idx = rng.choice(len(pool), k, replace=False)
    return [{"prompt": pool[int(i)]["prompt"], "answer": pool[int(i)]["answer"]} for i in idx]


def available_runs(source: str, data_dir: str) -> list[tuple[int, int]]:
    d = Path(data_dir) / source / "train"
    out = []
    for p in sorted(d.glob("*_*.json")):
        try:
            n, r = p.stem.split("_")
            out.append((int(n), int(r)))
        except ValueError:
            continue
    return sorted(out)


# ------------------------------------------------------------------------------------------------ the planner
@dataclass
class Task:
    kind: str  # "base_without" | "base_with" | "trained"
    model_type: str
    model_id: str
    eval_dataset: str
    icl_source: str
    path: Path
    N: int | None = None
    run_idx: int | None = None
    run: dict | None = None

    def label(self) -> str:
        if self.kind == "trained":
            return f"{self.model_type} {Path(self.run['run_dir']).name} on {self.eval_dataset}"
        if self.kind == "base_with":
            return f"base+ICL({self.icl_source}) N={self.N} run={self.run_idx} on {self.eval_dataset}"
        return f"base without ICL on {self.eval_dataset}"


def plan(cfg: EvalConfig) -> list[Task]:
    """The evaluation tasks ``cfg`` asks for (existing results included; :func:`evaluate` skips them)."""
    from actlab.data import get_dataset

    for name in (cfg.eval_datasets or []) + (cfg.icl_source_datasets or []) + (cfg.trained_datasets or []):
        get_dataset(name)
    trained_types = [t for t in cfg.model_types if t != "base"]
    all_runs = discover_runs(cfg.outputs_dir)
    runs = filter_runs(all_runs, cfg) if trained_types else []
    if trained_types and not runs:
        raise ActlabError(
            f"no trained model in {cfg.outputs_dir}/ matches the filters ({describe_filters(cfg)}); "
            f"{describe_existing(all_runs)}"
        )
    tasks: list[Task] = []
    unc = cfg.uncertainty_analysis
    trained_ds = cfg.trained_datasets or sorted({r["dataset"] for r in runs})
    if not trained_ds and not cfg.eval_datasets:
        raise ActlabError("nothing to evaluate: give --trained_datasets or --eval_datasets for a base-only evaluation")
    for tds in trained_ds or (cfg.eval_datasets or []):
        evals = cfg.eval_datasets or [tds]
        sources = cfg.icl_source_datasets or [tds]
        for ev in evals:
            T = eval_T(cfg, get_dataset(ev))
            for src in sources:
                for r in (x for x in runs if x["dataset"] == tds):
                    mid = r.get("model_id", cfg.model_id)
                    p = result_path(
                        cfg,
                        r["method"],
                        model_id=mid,
                        eval_dataset=ev,
                        icl_source=src,
                        icl_max_demos=cfg.icl_max_demos,
                        T=T,
                        uncertainty=unc,
                        run=r,
                    )
                    tasks.append(
                        Task(
                            "trained", r["method"], mid, ev, src, p, int(r["num_train_examples"]), int(r["run_idx"]), r
                        )
                    )
                if "base" in cfg.model_types:
                    mids = sorted({r.get("model_id", cfg.model_id) for r in runs if r["dataset"] == tds}) or [
                        cfg.model_id
                    ]
                    pairs = sorted(
                        {(int(r["num_train_examples"]), int(r["run_idx"])) for r in runs if r["dataset"] == tds}
                    )
                    if not pairs:
                        pairs = available_runs(src, cfg.data_dir)
                        if cfg.num_examples:
                            pairs = [p for p in pairs if p[0] in cfg.num_examples]
                        if cfg.run_indices:
                            pairs = [p for p in pairs if p[1] in cfg.run_indices]
                    if not pairs:
                        from actlab.data import pool_path

                        pool_path(src, cfg.data_dir)
                        raise ActlabError(
                            f"no run files for ICL source {src!r} in {cfg.data_dir}/{src}/train/ "
                            f"(num_examples={cfg.num_examples}, run_indices={cfg.run_indices}); make "
                            f"them with `actlab data make-train --datasets {src}`"
                        )
                    for mid in mids:
                        tasks.append(
                            Task(
                                "base_without",
                                "base",
                                mid,
                                ev,
                                src,
                                result_path(
                                    cfg,
                                    "base",
                                    model_id=mid,
                                    eval_dataset=ev,
                                    icl_source=src,
                                    icl_max_demos=cfg.icl_max_demos,
                                    T=T,
                                    uncertainty=unc,
                                    with_icl=False,
                                ),
                            )
                        )
                        for N, ri in pairs:
                            tasks.append(
                                Task(
                                    "base_with",
                                    "base",
                                    mid,
                                    ev,
                                    src,
                                    result_path(
                                        cfg,
                                        "base",
                                        model_id=mid,
                                        eval_dataset=ev,
                                        icl_source=src,
                                        icl_max_demos=cfg.icl_max_demos,
                                        T=T,
                                        uncertainty=unc,
                                        N=N,
                                        run_idx=ri,
                                    ),
                                    N,
                                    ri,
                                )
                            )
    seen, out = set(), []
    for t in tasks:
        if t.path not in seen:
            seen.add(t.path)
            out.append(t)
    # base-without first: the with-ICL results copy its numbers for accuracy_delta
    out.sort(key=lambda t: {"base_without": 0, "base_with": 1, "trained": 2}[t.kind])
    return out


# ------------------------------------------------------------------------------------------------- model cache
def find_adapter_dir(run_dir: str | Path) -> Path:
    run_dir = Path(run_dir)
    for cand in (run_dir, run_dir / "adapter", run_dir / "final", *sorted(run_dir.glob("*/"))):
        if (cand / "adapter_config.json").exists():
            return cand
    raise ActlabError(f"no PEFT adapter (adapter_config.json) in {run_dir}")


class _Models:
    """Keeps one base model loaded; adapters are attached and removed around each trained evaluation."""

    def __init__(self, cfg: EvalConfig, preloaded: dict | None = None):
        self.cfg = cfg
        self.cache: dict[str, tuple[Any, Any]] = dict(preloaded or {})

    def base(self, model_id: str):
        if model_id not in self.cache:
            from actlab.core.models import load

            for k in list(self.cache):  # one base model at a time
                del self.cache[k]
            gc.collect()
            self.cache[model_id] = load(model_id, dtype=self.cfg.dtype, device=self.cfg.device)
        return self.cache[model_id]

    def with_adapter(self, model_id: str, run_dir: str):
        from actlab.core.adapters import load_adapter

        model, tok = self.base(model_id)
        return load_adapter(model, find_adapter_dir(run_dir)).eval(), tok

    def release(self, model_id: str, peft_model) -> None:
        from actlab.core.models import peft_type

        kind = peft_type(peft_model)
        base = peft_model.unload() if kind in ("LORA", "IA3") else peft_model.get_base_model()
        self.cache[model_id] = (base.eval(), self.cache[model_id][1])


# -------------------------------------------------------------------------------------------------- evaluation
def _metrics_only(m: dict) -> dict:
    return {k: v for k, v in m.items()}


def run_task(task: Task, cfg: EvalConfig, models: _Models) -> dict:
    from actlab.data import build_icl_prompt, get_dataset

    spec = get_dataset(task.eval_dataset)
    examples = eval_examples(task.eval_dataset, cfg)
    doc: dict[str, Any] = {
        "identity": result_identity(task, cfg),
        "config": {
            "model_type": task.model_type,
            "model_id": task.model_id,
            "eval_dataset": task.eval_dataset,
            "icl_source_dataset": task.icl_source,
            "icl_max_demos": cfg.icl_max_demos,
            "num_generated_tokens_eval": eval_T(cfg, spec),
            "num_eval_examples": len(examples),
            "uncertainty_analysis": cfg.uncertainty_analysis,
            "task_type": spec.task_type,
            "num_train_examples": task.N,
            "run_idx": task.run_idx,
            "ood": task.icl_source != task.eval_dataset,
        },
    }
    if task.run is not None:
        doc["config"]["trained"] = {k: v for k, v in task.run.items()}
        doc["config"]["trained_dataset"] = task.run.get("dataset")
    queries = [ex["prompt"] for ex in examples]
    t0 = time.perf_counter()
    with_m = without_m = None
    preds: dict[str, list] = {}
    if task.kind == "base_without":
        model, tok = models.base(task.model_id)
        without_m, preds["without_icl"] = evaluate_prompts(model, tok, spec, queries, examples, cfg, False)
    elif task.kind == "base_with":
        model, tok = models.base(task.model_id)
        demos = draw_demos(task.icl_source, task.N, task.run_idx, cfg.icl_max_demos, cfg.data_dir)
        doc["config"]["num_demos"] = len(demos)
        prompts = [build_icl_prompt(demos, ex) for ex in examples]
        with_m, preds["with_icl"] = evaluate_prompts(model, tok, spec, prompts, examples, cfg, True)
        wo = result_path(
            cfg,
            "base",
            model_id=task.model_id,
            eval_dataset=task.eval_dataset,
            icl_source=task.icl_source,
            icl_max_demos=cfg.icl_max_demos,
            T=eval_T(cfg, spec),
            uncertainty=cfg.uncertainty_analysis,
            with_icl=False,
        )
        if wo.exists():
            without_m = read_json(wo).get("without_icl")
    else:
        model, tok = models.with_adapter(task.model_id, task.run["run_dir"])
        try:
            without_m, preds["without_icl"] = evaluate_prompts(model, tok, spec, queries, examples, cfg, False)
            if cfg.eval_with_icl:
                demos = draw_demos(task.icl_source, task.N, task.run_idx, cfg.icl_max_demos, cfg.data_dir)
                doc["config"]["num_demos"] = len(demos)
                prompts = [build_icl_prompt(demos, ex) for ex in examples]
                with_m, preds["with_icl"] = evaluate_prompts(model, tok, spec, prompts, examples, cfg, True)
        finally:
            models.release(task.model_id, model)
    doc["with_icl"], doc["without_icl"] = with_m, without_m
    doc["with_icl_accuracy"] = with_m["accuracy"] if with_m else None
    doc["without_icl_accuracy"] = without_m["accuracy"] if without_m else None
    doc["accuracy_delta"] = doc["with_icl_accuracy"] - doc["without_icl_accuracy"] if with_m and without_m else None
    doc["predictions"] = preds
    doc["seconds"] = time.perf_counter() - t0
    return doc


def _recorded_identity(path: Path) -> dict | None:
    try:
        doc = read_json(path)
    except (OSError, ValueError):
        return None
    return doc.get("identity") if isinstance(doc, dict) else None


def evaluate(cfg: EvalConfig, preloaded: dict | None = None, log=None) -> list[Path]:
    """Run every planned task without a result that serves it (all with ``force``); returns the result paths.

    A result serves a task when its recorded identity matches (:func:`identity_diff`); one whose settings differ is
    recomputed, and the log names the differing settings. ``preloaded`` maps a model id to an already loaded
    ``(model, tokenizer)`` (tests, the demo). ``log``: where the status lines go (default: this module's logger).
    """
    from actlab.core.progress import progress

    log = log or logging.getLogger(__name__).info

    tasks = plan(cfg)
    todo = []
    for t in tasks:
        if cfg.force or not t.path.exists():
            todo.append(t)
            continue
        diff = identity_diff(_recorded_identity(t.path), result_identity(t, cfg))
        if diff:
            if log:
                more = f"; +{len(diff) - 4} more" if len(diff) > 4 else ""
                log(f"evaluate: recomputing {t.path.name}: recorded settings differ ({'; '.join(diff[:4])}{more})")
            todo.append(t)
    for t in todo:  # bad demo settings / missing run files fail before anything is written
        if t.kind == "base_with" or (t.kind == "trained" and cfg.eval_with_icl):
            draw_demos(t.icl_source, t.N, t.run_idx, cfg.icl_max_demos, cfg.data_dir)
        eval_examples(t.eval_dataset, cfg)
    if log and len(todo) < len(tasks):
        log(f"evaluate: {len(tasks) - len(todo)} of {len(tasks)} results exist, skipped")
    models = _Models(cfg, preloaded)
    for t in progress(todo, total=len(todo), desc="ia2 evaluate"):
        doc = run_task(t, cfg, models)
        atomic_write_json(t.path, doc)
    return [t.path for t in tasks]


callable_module(__name__, "evaluate")  # actlab.ia2.evaluate(cfg): the family's evaluate (see actlab.ia2)
