"""``actlab ia2 analyze``: activation similarity and adapter subspace overlap (as the official IA2 scripts
``activation_similarity_analysis.py`` and ``subspace_overlap_analysis.py``).

* **activation-similarity** — for each trained run and eval example: the base model *with* ICL demos and the trained
  model *without* them each greedily generate ``T`` tokens from their own prompt; the attention outputs at the
  positions that predict those tokens are captured (``actlab.core.capture``, site ``attn_output``) and compared by
  cosine similarity over ``d`` for each (layer, token). Averages: overall, per layer, per token. Demos are the
  evaluation's demos (``min(icl_max_demos, N-1)`` from the run's remaining pool, seed = run index).
* **subspace-overlap** — for two LoRA adapters of the same (dataset, N, run): per adapted module, ``U = svd(B)`` left
  singular vectors (first ``r``), overlap ``||U1ᵀ U2||_F² / r`` ∈ [0, 1]; averaged over layers and modules. Two random
  ``r``-dim subspaces of ``R^d`` give about ``r / d``.

Results: ``outputs/analysis/{activation_similarity,subspace_overlap}/{dataset}/….json``; plots in
``plots/unified/{dataset}/analysis/``.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from actlab.core.errors import ActlabError
from actlab.core.io import atomic_write_json, read_json, save_figure
from actlab.core.stats import mean_ci
from actlab.ia2.evaluate import EvalConfig, describe_existing, describe_filters, discover_runs, filter_runs

log = logging.getLogger(__name__)


def _runs(cfg: EvalConfig) -> list[dict]:
    all_runs = discover_runs(cfg.outputs_dir)
    runs = filter_runs(all_runs, cfg)
    if not runs:
        raise ActlabError(
            f"no trained model in {cfg.outputs_dir}/ matches the filters ({describe_filters(cfg)}); "
            f"{describe_existing(all_runs)}"
        )
    return runs


# ------------------------------------------------------------------------------------------ activation similarity
@torch.no_grad()
def _acts_on_own_tokens(model, tok, prompt: str, T: int, site: str) -> torch.Tensor:
    """``[L, t, d]`` activations at the positions predicting the model's own ≤T greedy tokens after ``prompt``."""
    from actlab.core.capture import capture
    from actlab.core.models import forward_right_padded, generate

    gen = generate(model, tok, [prompt], max_new_tokens=T, return_ids=True)[0][:T]
    ids = tok(prompt)["input_ids"]
    dp = len(ids) - 1
    seq = ids + gen[:-1] if gen else ids
    n = max(1, len(gen))
    pos = torch.arange(dp, dp + n).unsqueeze(0)
    with capture(model, site, layers=None, positions=pos) as cap:
        forward_right_padded(model, [seq], tok.pad_token_id)
    return cap.stack()[:, 0].float()  # [L, n, d]


@torch.no_grad()
def _last_token_acts(model, tok, prompts: Sequence[str], site: str, batch_size: int = 16) -> list[torch.Tensor]:
    """T = 1 fast path: ``[L, 1, d]`` per prompt at its last token (the position predicting the first response
    token, which does not depend on what is generated), in right-padded batches."""
    from actlab.core.capture import capture
    from actlab.core.models import forward_right_padded

    enc = [tok(p)["input_ids"] for p in prompts]
    out: list[torch.Tensor] = []
    for i in range(0, len(enc), batch_size):
        seqs = enc[i : i + batch_size]
        pos = torch.tensor([len(s) - 1 for s in seqs])
        with capture(model, site, layers=None, positions=pos) as cap:
            forward_right_padded(model, seqs, tok.pad_token_id)
        acts = cap.stack().float()  # [L, B, d]
        out += [acts[:, j].unsqueeze(1) for j in range(len(seqs))]
    return out


def _acts(model, tok, prompts: Sequence[str], T: int, site: str) -> list[torch.Tensor]:
    if T == 1:
        return _last_token_acts(model, tok, prompts, site)
    return [_acts_on_own_tokens(model, tok, p, T, site) for p in prompts]


def cosine_by_layer_token(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosine similarity over the last axis of ``[L, t, d]`` tensors (common ``t``) → ``[L, t]``."""
    t = min(a.shape[1], b.shape[1])
    return torch.nn.functional.cosine_similarity(a[:, :t], b[:, :t], dim=-1)


def activation_similarity(
    cfg: EvalConfig,
    num_samples: int = 100,
    num_generated_tokens: int = 1,
    site: str = "attn_output",
    plots_dir: str = "plots",
    preloaded: dict | None = None,
    log=None,
) -> dict:
    """Per run: overall / per-layer / per-token cosine; returns ``{method: mean overall over runs}``."""
    from actlab.core.adapters import load_adapter
    from actlab.core.models import load
    from actlab.data import build_icl_prompt
    from actlab.ia2.evaluate import draw_demos, eval_examples, find_adapter_dir

    runs = _runs(cfg)
    base_cache = dict(preloaded or {})
    root = Path(cfg.outputs_dir) / "analysis" / "activation_similarity"
    results = []
    teacher_cache: dict[tuple, list] = {}
    for r in runs:
        out = root / r["dataset"] / f"{Path(r['run_dir']).name}__{r['method']}_T{num_generated_tokens}.json"
        if out.exists() and not cfg.force:
            results.append(read_json(out))
            continue
        mid = r.get("model_id", cfg.model_id)
        if mid not in base_cache:
            base_cache.clear()
            base_cache[mid] = load(mid, dtype=cfg.dtype, device=cfg.device)
        base, tok = base_cache[mid]
        examples = eval_examples(r["dataset"], dataclasses.replace(cfg, num_eval_examples=num_samples))
        demos = draw_demos(
            r["dataset"], int(r["num_train_examples"]), int(r["run_idx"]), cfg.icl_max_demos, cfg.data_dir
        )
        tkey = (mid, r["dataset"], int(r["num_train_examples"]), int(r["run_idx"]), len(examples))
        if tkey not in teacher_cache:  # the base+ICL side is shared by every method of the same (N, run)
            teacher_cache[tkey] = _acts(
                base, tok, [build_icl_prompt(demos, ex) for ex in examples], num_generated_tokens, site
            )
        teacher = teacher_cache[tkey]
        peft_model = load_adapter(base, find_adapter_dir(r["run_dir"])).eval()
        try:
            student = _acts(peft_model, tok, [ex["prompt"] for ex in examples], num_generated_tokens, site)
            sims = [cosine_by_layer_token(t, s) for t, s in zip(teacher, student, strict=True)]
        finally:
            from actlab.core.models import peft_type

            kind = peft_type(peft_model)
            base = peft_model.unload() if kind in ("LORA", "IA3") else peft_model.get_base_model()
            base_cache[mid] = (base, tok)
        L = sims[0].shape[0]
        T = max(s.shape[1] for s in sims)
        per_token = [float(np.mean([s[:, t].mean().item() for s in sims if s.shape[1] > t])) for t in range(T)]
        doc = {
            "run_dir": r["run_dir"],
            "method": r["method"],
            "dataset": r["dataset"],
            "num_train_examples": r["num_train_examples"],
            "lr": r.get("lr"),
            "run_idx": r["run_idx"],
            "site": site,
            "num_samples": len(examples),
            "num_generated_tokens": num_generated_tokens,
            "overall": float(np.mean([s.mean().item() for s in sims])),
            "per_layer": [float(np.mean([s[layer].mean().item() for s in sims])) for layer in range(L)],
            "per_token": per_token,
        }
        atomic_write_json(out, doc)
        results.append(doc)
    _plot_asim(results, Path(plots_dir))
    by_method: dict[str, list[float]] = defaultdict(list)
    for d in results:
        by_method[d["method"]].append(d["overall"])
    summary = {m: round(mean_ci(v).mean, 4) for m, v in sorted(by_method.items())}
    if log:
        log(f"activation similarity (overall cosine, mean over runs): {summary}")
    return summary


def _plot_asim(results: Sequence[dict], plots_dir: Path) -> list[Path]:
    from actlab.ia2.plots import _plt, pretty

    plt = _plt()
    paths = []
    for ds in sorted({d["dataset"] for d in results}):
        sub = [d for d in results if d["dataset"] == ds]
        methods = sorted({d["method"] for d in sub})
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.8))
        mus, sds = [], []
        for m in methods:
            ci = mean_ci([d["overall"] for d in sub if d["method"] == m])
            mus.append(ci.mean)
            sds.append(ci.half if np.isfinite(ci.half) else 0.0)  # 95 % CI over runs
            layers = np.array([d["per_layer"] for d in sub if d["method"] == m])
            a2.plot(range(layers.shape[1]), layers.mean(0), marker="o", label=pretty(m))
        a1.bar([pretty(m) for m in methods], mus, yerr=sds, capsize=3)
        a1.set_ylabel("cosine(base+ICL, trained w/o ICL)\n(mean, 95 % CI over runs)")
        a1.set_title(f"{ds}: overall activation similarity", fontsize=10)
        a2.set_xlabel("layer")
        a2.set_ylabel("cosine")
        a2.set_title("per layer", fontsize=10)
        a2.legend(fontsize=8)
        fig.tight_layout()
        paths.append(save_figure(fig, plots_dir / "unified" / ds / "analysis" / "activation_similarity.png"))
    return paths


# ------------------------------------------------------------------------------------------------ subspace overlap
def lora_B_matrices(adapter_dir: str | Path) -> dict[str, torch.Tensor]:
    """``{module path: lora_B weight [out, r]}`` of a saved LoRA adapter (safetensors)."""
    from safetensors.torch import load_file

    path = Path(adapter_dir) / "adapter_model.safetensors"
    if not path.exists():
        raise ActlabError(f"no adapter_model.safetensors in {adapter_dir}")
    return {
        k.replace(".lora_B.weight", "").replace(".lora_B.default.weight", ""): v.float()
        for k, v in load_file(str(path)).items()
        if ".lora_B" in k
    }


def subspace_overlap_matrices(B1: torch.Tensor, B2: torch.Tensor, r: int | None = None) -> float:
    """``||U1ᵀ U2||_F² / r`` with ``U = `` the first ``r`` left singular vectors of each ``B``."""
    r = r or min(B1.shape[1], B2.shape[1])
    U1 = torch.linalg.svd(B1.double(), full_matrices=False).U[:, :r]  # float64: 1 stays 1 to ~1e-15
    U2 = torch.linalg.svd(B2.double(), full_matrices=False).U[:, :r]
    return float((U1.T @ U2).pow(2).sum() / r)


def subspace_overlap(
    cfg: EvalConfig, methods: Sequence[str] = ("tok", "act", "tna", "a2t"), plots_dir: str = "plots", log=None
) -> dict:
    """Mean overlap per method pair over matched runs (same dataset, N, run index, lr when both have it)."""
    from actlab.ia2.evaluate import find_adapter_dir

    cfg = dataclasses.replace(cfg, model_types=list(methods))
    runs = [r for r in _runs(cfg) if r["method"] in methods]
    groups: dict[tuple, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for r in runs:
        groups[(r["dataset"], int(r["num_train_examples"]), int(r["run_idx"]))][r["method"]].append(r)
    pairs: dict[str, list[float]] = defaultdict(list)
    rows = []
    for (ds, N, ri), by_m in sorted(groups.items()):
        for m1, m2 in itertools.combinations([m for m in methods if m in by_m], 2):
            for r1 in by_m[m1]:
                cands = [r2 for r2 in by_m[m2] if r2.get("lr") == r1.get("lr")] or by_m[m2]
                r2 = cands[0]
                try:
                    B1 = lora_B_matrices(find_adapter_dir(r1["run_dir"]))
                    B2 = lora_B_matrices(find_adapter_dir(r2["run_dir"]))
                except ActlabError:
                    continue  # not a LoRA adapter
                common = sorted(set(B1) & set(B2))
                if not common:
                    continue
                vals = [subspace_overlap_matrices(B1[k], B2[k]) for k in common]
                d = B1[common[0]].shape[0]
                rows.append(
                    {
                        "dataset": ds,
                        "N": N,
                        "run_idx": ri,
                        "pair": f"{m1} vs {m2}",
                        "overlap": float(np.mean(vals)),
                        "per_module": dict(zip(common, vals, strict=True)),
                        "run_dirs": [r1["run_dir"], r2["run_dir"]],
                        "random_baseline": B1[common[0]].shape[1] / d,
                    }
                )
                pairs[f"{m1} vs {m2}"].append(float(np.mean(vals)))
    if not rows:
        raise ActlabError(
            f"no pair of LoRA adapters of different methods ({' '.join(methods)}) shares a dataset, N and "
            f"run index in {cfg.outputs_dir}/; {describe_existing(runs)}"
        )
    out = Path(cfg.outputs_dir) / "analysis" / "subspace_overlap" / "overlap.json"
    atomic_write_json(out, {"rows": rows})
    _plot_overlap(rows, Path(plots_dir))
    summary = {k: round(mean_ci(v).mean, 4) for k, v in sorted(pairs.items())}
    if log:
        log(f"subspace overlap (mean over runs; random ≈ {rows[0]['random_baseline']:.3f}): {summary}")
    return summary


def _plot_overlap(rows: Sequence[dict], plots_dir: Path) -> list[Path]:
    from actlab.ia2.plots import _plt, pretty

    plt = _plt()
    paths = []
    for ds in sorted({r["dataset"] for r in rows}):
        sub = [r for r in rows if r["dataset"] == ds]
        names = sorted({r["pair"] for r in sub})
        data = [[r["overlap"] for r in sub if r["pair"] == n] for n in names]
        fig, ax = plt.subplots(figsize=(1.6 * len(names) + 2, 3.6))
        ax.boxplot(data, showmeans=True)
        ax.set_xticks(range(1, len(names) + 1))
        ax.set_xticklabels([" vs ".join(pretty(x) for x in n.split(" vs ")) for n in names], fontsize=8)
        ax.axhline(sub[0]["random_baseline"], color="gray", ls="--", label="random subspaces (r/d)")
        ax.set_ylabel("subspace overlap ||U1ᵀU2||²/r")
        ax.set_title(f"{ds}: LoRA update subspace overlap", fontsize=10)
        ax.legend(fontsize=8)
        fig.tight_layout()
        paths.append(save_figure(fig, plots_dir / "unified" / ds / "analysis" / "subspace_overlap.png"))
    return paths
