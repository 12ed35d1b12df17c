"""``actlab ia2 plot`` / ``plot-all`` (the seed's ``plot_unified.py`` / ``plot_all_unified.py``) and result tables.

One *experiment* is (trained dataset, eval dataset, ICL source, ICL demos). Its results are gathered from
``outputs/evaluations/`` (:func:`collect`), the learning rate (and other hyperparameters) of each method is chosen per
N by the highest mean **without-ICL top-1 accuracy** over runs (the official rule, which selects on the eval set),
and the plots go to ``plots/unified/{trained}/{eval}_{source}_{demos}/``:

* ``{model}_accuracy_without_icl.png`` / ``{model}_accuracy_with_icl.png``: accuracy vs N per method, mean with
  95 % CI error bars over runs (:mod:`actlab.core.stats`);
* uncertainty mode: ``{model}_top1_accuracy_with_icl.png``, ``{model}_label_accuracy_with_icl.png``,
  ``{model}_uncertainty_with_icl.png``, ``{model}_ece_with_icl.png`` (base with ICL vs trained models without),
  and ``{model}_reliability.png`` (equal-count reliability diagrams);
* ``{model}_family_comparison.png`` when several adapter families (LoRA / IA3 / prompt / prefix) were evaluated;
* ``{model}_hyperparameters.png`` (the seed's "hyperparameter optimisation insights") when a sweep tried more than
  one setting: without-ICL accuracy against the learning rate per method, one line per N (and per value of any
  other swept hyperparameter), mean with 95 % CI over runs, the chosen setting ringed (:func:`hyperparameter_rows`
  gives the same numbers as a table);
* ``report.html`` (:mod:`actlab.ia2.report`): the tables and the plots together.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from actlab.core.errors import ActlabError
from actlab.core.io import read_json
from actlab.core.metrics import calibration_bins
from actlab.core.stats import CI, fmt, mean_ci, paired_diff
from actlab.ia2.config import EXTRA_OBJECTIVES, FAMILIES, OBJECTIVES, method_parts, method_sort_key

ICL, NO_ICL = "icl", "base"
PRETTY = {
    "base": "Base (no ICL)",
    "icl": "ICL (base + demos)",
    "tok": "SFT",
    "act": "IA2",
    "tna": "IA2+SFT",
    "a2t": "IA2→SFT",
    "t2a": "SFT→IA2",
    "tokl": "SFT (soft labels)",
}
FAMILY_PRETTY = {"lora": "LoRA", "ia3": "IA3", "prompt": "Prompt", "prefix": "Prefix"}
HP_KEYS = ("lr", "ce_loss_weight", "label_type", "lora_type", "lora_r", "lora_alpha", "ia3_type", "num_virtual_tokens")


def pretty(method: str) -> str:
    if method in (ICL, NO_ICL):
        return PRETTY[method]
    parts = method_parts(method)
    if parts is None:
        return method
    fam, var = parts
    name = PRETTY[var]
    return name if fam == "lora" else f"{name} ({FAMILY_PRETTY[fam]})"


@dataclass
class Experiment:
    trained_dataset: str
    eval_dataset: str
    icl_source: str
    icl_max_demos: int
    model: str  # short model name
    uncertainty: bool = False
    # method -> N -> list of per-run result docs (after hyperparameter selection); NO_ICL -> {0: [doc]}
    entries: dict[str, dict[int, list[dict]]] = field(default_factory=dict)
    chosen: dict[str, dict[int, dict]] = field(default_factory=dict)
    # method -> N -> hyperparameter tuple (HP_KEYS order) -> runs: every setting tried, before the selection
    groups: dict[str, dict[int, dict[tuple, list[dict]]]] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.eval_dataset}_{self.icl_source}_{self.icl_max_demos}"

    def plot_dir(self, plots_dir: str | Path = "plots") -> Path:
        return Path(plots_dir) / "unified" / self.trained_dataset / self.key

    def metrics(self, method: str, N: int) -> list[dict]:
        """The per-run metric dicts of ``method`` at ``N`` (ICL: with demos; trained and base: without)."""
        part = "with_icl" if method == ICL else "without_icl"
        return [d[part] for d in self.entries.get(method, {}).get(N, []) if d.get(part)]

    def methods(self) -> list[str]:
        """Base, ICL, then the trained methods by family and objective (:func:`actlab.ia2.config.method_sort_key`)."""
        first = (NO_ICL, ICL)
        return sorted(self.entries, key=lambda m: (0, first.index(m), m) if m in first else (1, *method_sort_key(m)))

    def Ns(self) -> list[int]:
        return sorted({n for m, d in self.entries.items() if m != NO_ICL for n in d})


# -------------------------------------------------------------------------------------------------- gathering
def load_results(outputs_dir: str | Path = "outputs", uncertainty: bool | None = None) -> list[dict]:
    """Every result JSON under ``outputs/evaluations/`` (``uncertainty`` filters on the ``_uncertainty`` dirs)."""
    root = Path(outputs_dir) / "evaluations"
    docs = []
    for p in sorted(root.glob("*/*/*.json")):
        is_unc = p.parts[-3].endswith("_uncertainty")
        if uncertainty is not None and is_unc != uncertainty:
            continue
        try:
            d = read_json(p)
        except (OSError, ValueError):
            continue
        if "config" in d:
            d["_path"] = str(p)
            d["_uncertainty"] = is_unc
            docs.append(d)
    return docs


def experiments_in(docs: Sequence[dict]) -> list[tuple[str, str, str, int, str]]:
    """(trained, eval, source, demos, model) of every experiment with results (base-only ones: trained = source)."""
    from actlab.core.models import short_name

    keys = set()
    for d in docs:
        c = d["config"]
        td = c.get("trained_dataset") or c["icl_source_dataset"]
        keys.add((td, c["eval_dataset"], c["icl_source_dataset"], int(c["icl_max_demos"]), short_name(c["model_id"])))
    return sorted(keys)


def _hp(doc: dict) -> tuple:
    t = doc["config"].get("trained") or {}
    return tuple(str(t.get(k)) for k in HP_KEYS)


def collect(
    docs: Sequence[dict],
    trained_dataset: str,
    eval_dataset: str,
    icl_source: str,
    icl_max_demos: int,
    model: str | None = None,
    uncertainty: bool | None = None,
) -> Experiment:
    """Gather one experiment's results and choose, per method and N, the best hyperparameters."""
    from actlab.core.models import short_name

    exp = Experiment(trained_dataset, eval_dataset, icl_source, icl_max_demos, model or "", bool(uncertainty))
    trained: dict[str, dict[int, dict[tuple, list[dict]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(list))
    )
    for d in docs:
        c = d["config"]
        if uncertainty is not None and d.get("_uncertainty", False) != uncertainty:
            continue
        if model and short_name(c["model_id"]) != model:
            continue
        if c["eval_dataset"] != eval_dataset:
            continue
        if c["model_type"] == "base":
            if d.get("with_icl") is None and d.get("without_icl") is not None:
                exp.entries.setdefault(NO_ICL, {}).setdefault(0, []).append(d)
            elif c["icl_source_dataset"] == icl_source and int(c["icl_max_demos"]) == icl_max_demos:
                exp.entries.setdefault(ICL, {}).setdefault(int(c["num_train_examples"]), []).append(d)
            exp.model = exp.model or short_name(c["model_id"])
            continue
        if (
            c.get("trained_dataset") != trained_dataset
            or c["icl_source_dataset"] != icl_source
            or int(c["icl_max_demos"]) != icl_max_demos
        ):
            continue
        exp.model = exp.model or short_name(c["model_id"])
        trained[c["model_type"]][int(c["num_train_examples"])][_hp(d)].append(d)
    for method, byN in trained.items():
        for N, groups in byN.items():

            def score(item):
                ci = mean_ci([x.get("without_icl_accuracy") for x in item[1]])
                return (-1.0 if ci.n == 0 else ci.mean, len(item[1]))

            hp, runs = max(groups.items(), key=score)
            exp.groups.setdefault(method, {})[N] = {
                h: sorted(r, key=lambda x: x["config"].get("run_idx") or 0) for h, r in groups.items()
            }
            exp.entries.setdefault(method, {})[N] = sorted(runs, key=lambda x: x["config"].get("run_idx") or 0)
            exp.chosen.setdefault(method, {})[N] = dict(zip(HP_KEYS, hp, strict=True))
    # keep only the ICL Ns that trained methods use, when there are trained methods
    tN = {n for m, d in exp.entries.items() if m not in (ICL, NO_ICL) for n in d}
    if tN and ICL in exp.entries:
        exp.entries[ICL] = {n: v for n, v in exp.entries[ICL].items() if n in tN} or exp.entries[ICL]
    return exp


# ---------------------------------------------------------------------------------------------------- tables
METRIC_COLUMNS = (
    ("accuracy", "Accuracy (%)", 100.0),
    ("ece", "ECE", 1.0),
    ("label_accuracy", "Label acc (%)", 100.0),
    ("entropy", "Entropy", 1.0),
)


def summary_rows(exp: Experiment) -> list[dict[str, Any]]:
    """One row per (method, N): mean ± 95 % CI (a :class:`~actlab.core.stats.CI`) over runs of accuracy, ECE,
    label-set accuracy, entropy."""
    rows = []
    for m in exp.methods():
        for N in sorted(exp.entries[m]):
            ms = exp.metrics(m, N)
            row: dict[str, Any] = {"method": m, "name": pretty(m), "N": None if m == NO_ICL else N, "runs": len(ms)}
            for key, _, _ in METRIC_COLUMNS:
                row[key] = mean_ci([x.get(key) for x in ms])
            if m in exp.chosen and N in exp.chosen[m]:
                row["hp"] = exp.chosen[m][N]
            rows.append(row)
    return rows


def fmt_cell(ci: CI, scale: float, sign: bool = False) -> str:
    """Percent-scaled metrics with 1 decimal, the others with 3."""
    return fmt(ci, scale, 1 if scale != 1 else 3, sign=sign)


def _by_run(exp: Experiment, method: str, N: int, key: str) -> dict[int, float]:
    """``{run_idx: metric}`` of ``method`` at ``N`` (ICL with demos; trained models without)."""
    part = "with_icl" if method == ICL else "without_icl"
    out = {}
    for d in exp.entries.get(method, {}).get(N, []):
        ri = d["config"].get("run_idx")
        if ri is not None and d.get(part) and d[part].get(key) is not None:
            out[int(ri)] = float(d[part][key])
    return out


def paired_rows(exp: Experiment, key: str = "accuracy", references: Sequence[str] = ("tok", ICL)) -> list[dict]:
    """Method vs reference at each N: the paired difference over the runs both have (same run index = same
    training examples and demo pool), as ``{"name", "N", "vs", "diff": CI}``."""
    rows = []
    for ref in references:
        for m in exp.methods():
            if m in (NO_ICL, ICL, ref) or ref not in exp.entries:
                continue
            for N in sorted(exp.entries[m]):
                a, b = _by_run(exp, m, N, key), _by_run(exp, ref, N, key)
                runs = sorted(set(a) & set(b))
                if not runs:
                    continue
                rows.append(
                    {
                        "method": m,
                        "name": pretty(m),
                        "N": N,
                        "vs": pretty(ref),
                        "runs": len(runs),
                        "diff": paired_diff([a[r] for r in runs], [b[r] for r in runs]),
                    }
                )
    return rows


def _text_table(head: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    widths = [max(len(x[i]) for x in [head, *body]) for i in range(len(head))]
    line = "  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True))
    out = [line, "-" * len(line)]
    out += ["  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) for cells in body]
    return "\n".join(out)


def format_table(rows: Sequence[dict], columns=METRIC_COLUMNS[:2]) -> str:
    """A plain-text table (mean ± 95 % CI over runs)."""
    head = ["Method", "N", "runs", *[c[1] for c in columns]]
    body = []
    for r in rows:
        cells = [r["name"], "—" if r["N"] is None else str(r["N"]), str(r["runs"])]
        cells += [fmt_cell(r[key], scale) for key, _, scale in columns]
        body.append(cells)
    return _text_table(head, body)


def format_paired(rows: Sequence[dict], label: str = "Δ accuracy (points)", scale: float = 100.0) -> str:
    """A plain-text table of paired differences (mean ± 95 % CI over runs; * = the CI excludes 0)."""
    head = ["Method", "vs", "N", "runs", label]
    body = [
        [
            r["name"],
            r["vs"],
            str(r["N"]),
            str(r["runs"]),
            fmt_cell(r["diff"], scale, sign=True) + (" *" if r["diff"].excludes_zero() else ""),
        ]
        for r in rows
    ]
    return _text_table(head, body)


# ---------------------------------------------------------------------------------------------------- plotting
def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _half(ci: CI) -> float:
    return ci.half if np.isfinite(ci.half) else 0.0


def _series(exp: Experiment, method: str, key: str) -> tuple[list[int], list[float], list[float]]:
    """N, mean and 95 % CI half-width (0 with one run) of ``key`` over runs."""
    xs, ms, hs = [], [], []
    for N in sorted(exp.entries.get(method, {})):
        ci = mean_ci([x.get(key) for x in exp.metrics(method, N)])
        if ci.n:
            xs.append(N)
            ms.append(ci.mean)
            hs.append(_half(ci))
    return xs, ms, hs


def _metric_plot(
    exp: Experiment,
    key: str,
    ylabel: str,
    path: Path,
    methods: Sequence[str],
    title: str,
    with_icl_trained: bool = False,
) -> Path | None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    drawn = 0
    for m in methods:
        if m == NO_ICL:
            ms = exp.metrics(NO_ICL, 0)
            ci = mean_ci([x.get(key) for x in ms])
            if ci.n:
                ax.axhline(ci.mean, color="gray", ls="--", label=pretty(m))
                drawn += 1
            continue
        if with_icl_trained and m != ICL:
            xs, mu, hw = [], [], []
            for N in sorted(exp.entries.get(m, {})):
                ci = mean_ci([d["with_icl"].get(key) for d in exp.entries[m][N] if d.get("with_icl")])
                if ci.n:
                    xs.append(N)
                    mu.append(ci.mean)
                    hw.append(_half(ci))
        else:
            xs, mu, hw = _series(exp, m, key)
        if not xs:
            continue
        ax.errorbar(
            xs,
            mu,
            yerr=hw,
            marker="o",
            capsize=3,
            label=pretty(m) + (" + ICL" if with_icl_trained and m != ICL else ""),
        )
        drawn += 1
    if not drawn:
        plt.close(fig)
        return None
    Ns = exp.Ns()
    if len(Ns) > 1 and min(Ns) > 0:
        ax.set_xscale("log", base=2)
    if Ns:
        ax.set_xticks(Ns)
        ax.set_xticklabels([str(n) for n in Ns])
    ax.set_xlabel("N (training examples)")
    ax.set_ylabel(ylabel + " (mean, 95 % CI over runs)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    from actlab.core.io import save_figure

    return save_figure(fig, path)


def _reliability(exp: Experiment, path: Path) -> Path | None:
    """Equal-count (15-bin) reliability diagram per method, pooled over runs at the largest N."""
    plt = _plt()
    panels = []
    for m in exp.methods():
        Ns = sorted(exp.entries[m])
        if not Ns:
            continue
        N = Ns[-1]
        part = "with_icl" if m == ICL else "without_icl"
        conf, corr = [], []
        for d in exp.entries[m][N]:
            for r in (d.get("predictions") or {}).get(part, []):
                if "confidence" in r:
                    conf.append(r["confidence"])
                    corr.append(float(r["correct"]))
        if conf:
            panels.append((m, N, calibration_bins(conf, corr, 15), len(conf)))
    if not panels:
        return None
    from actlab.core.metrics import ece

    fig, axes = plt.subplots(1, len(panels), figsize=(3.0 * len(panels), 3.2), squeeze=False)
    for ax, (m, N, bins, n) in zip(axes[0], panels, strict=True):
        c = [b["confidence"] for b in bins]
        a = [b["accuracy"] for b in bins]
        e = sum(b["count"] / n * abs(b["accuracy"] - b["confidence"]) for b in bins)
        ax.plot([0, 1], [0, 1], ls="--", color="gray", lw=1)
        ax.plot(c, a, marker="o", ms=3)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_title(f"{pretty(m)}" + ("" if m == NO_ICL else f" N={N}") + f"\nECE {e:.3f}", fontsize=8)
        ax.set_xlabel("confidence", fontsize=8)
        ax.set_ylabel("accuracy", fontsize=8)
    _ = ece  # (the per-bin sum above is ECE over the pooled runs)
    fig.tight_layout()
    from actlab.core.io import save_figure

    return save_figure(fig, path)


def _family_comparison(exp: Experiment, path: Path) -> Path | None:
    """Grouped bars: objective × adapter family, mean ± std accuracy at the largest common N."""
    fams: dict[str, dict[str, str]] = defaultdict(dict)
    for m in exp.entries:
        parts = method_parts(m)
        if parts is not None:
            fams[parts[1]][parts[0]] = m
    families = sorted({f for d in fams.values() for f in d}, key=FAMILIES.index)
    if len(families) < 2:
        return None
    plt = _plt()
    objectives = sorted(fams, key=(OBJECTIVES + EXTRA_OBJECTIVES).index)
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    width = 0.8 / len(families)
    for i, fam in enumerate(families):
        mus, sds = [], []
        for var in objectives:
            m = fams[var].get(fam)
            if m is None:
                mus.append(np.nan)
                sds.append(0)
                continue
            N = max(exp.entries[m])
            ci = mean_ci([x.get("accuracy") for x in exp.metrics(m, N)])
            mus.append(ci.mean)
            sds.append(_half(ci))
        ax.bar(np.arange(len(objectives)) + i * width, mus, width, yerr=sds, label=FAMILY_PRETTY[fam], capsize=3)
    if ICL in exp.entries:
        ci = mean_ci([x.get("accuracy") for N in exp.entries[ICL] for x in exp.metrics(ICL, N)])
        if ci.n:
            ax.axhline(ci.mean, color="gray", ls="--", label="ICL")
    ax.set_xticks(np.arange(len(objectives)) + width * (len(families) - 1) / 2)
    ax.set_xticklabels([PRETTY.get(v, v) for v in objectives])
    ax.set_ylabel("accuracy without ICL (95 % CI over runs)")
    ax.set_title(f"adapter families — {exp.trained_dataset} → {exp.eval_dataset}", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    from actlab.core.io import save_figure

    return save_figure(fig, path)


def hyperparameter_rows(exp: Experiment, key: str = "accuracy") -> list[dict[str, Any]]:
    """Every hyperparameter setting tried per (method, N): its without-ICL ``key`` as mean ± 95 % CI over runs and
    whether the selection rule chose it (highest mean without-ICL accuracy; ties → more runs)."""
    rows = []
    for method in exp.methods():
        for N, groups in sorted(exp.groups.get(method, {}).items()):
            chosen = tuple(str(v) for v in exp.chosen.get(method, {}).get(N, {}).values())
            for hp, runs in groups.items():
                vals = [d["without_icl"].get(key) for d in runs if d.get("without_icl")]
                rows.append(
                    {
                        "method": method,
                        "N": N,
                        "hp": dict(zip(HP_KEYS, hp, strict=True)),
                        "ci": mean_ci(vals),
                        "chosen": hp == chosen,
                    }
                )
    return rows


def _varying(rows: Sequence[dict]) -> list[str]:
    """The hyperparameters (other than lr) that take more than one value among ``rows``."""
    return [k for k in HP_KEYS if k != "lr" and len({r["hp"][k] for r in rows}) > 1]


def _hyperparameter_plot(exp: Experiment, path: Path) -> Path | None:
    """The seed's "hyperparameter optimisation insights": for each trained method, without-ICL accuracy against the
    learning rate (log axis), one line per N (and per value of any other hyperparameter the sweep varied, e.g. the
    CE weight of tna), mean with 95 % CI over runs; the setting the selection rule chose is ringed. Only methods
    with more than one setting at some N are drawn (None when there is none)."""
    rows = hyperparameter_rows(exp)
    methods = [m for m in exp.methods() if any(len(g) > 1 for g in exp.groups.get(m, {}).values())]
    if not methods:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, len(methods), figsize=(4.6 * len(methods), 4.0), squeeze=False)
    for ax, m in zip(axes[0], methods):
        mine = [r for r in rows if r["method"] == m and r["ci"].n]
        other = _varying(mine)
        lines: dict[tuple, list[dict]] = defaultdict(list)
        for r in mine:
            lines[(r["N"], *(r["hp"][k] for k in other))].append(r)
        for lk, pts in sorted(lines.items(), key=lambda kv: tuple(str(x) for x in kv[0])):
            pts = sorted(pts, key=lambda r: float(r["hp"]["lr"]))
            xs = [float(r["hp"]["lr"]) for r in pts]
            label = f"N={lk[0]}" + "".join(f", {k}={v}" for k, v in zip(other, lk[1:]))
            eb = ax.errorbar(
                xs,
                [100 * r["ci"].mean for r in pts],
                yerr=[100 * _half(r["ci"]) for r in pts],
                marker="o",
                capsize=3,
                label=label,
            )
            for r, x in zip(pts, xs):
                if r["chosen"]:
                    ax.plot([x], [100 * r["ci"].mean], marker="o", ms=13, mfc="none", color=eb[0].get_color())
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("accuracy without ICL (%, mean, 95 % CI over runs)")
        ax.set_title(f"{pretty(m)} (ringed: chosen)", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"{exp.model}: {exp.trained_dataset} → {exp.eval_dataset}, hyperparameter sensitivity", fontsize=10)
    fig.tight_layout()
    from actlab.core.io import save_figure

    return save_figure(fig, path)


def plot_experiment(
    exp: Experiment, plots_dir: str | Path = "plots", plot_types: Sequence[str] = ("all",)
) -> list[Path]:
    """Write the experiment's PNGs (and ``report.html``); returns the written paths."""
    from actlab.ia2.report import write_report

    if not exp.entries:
        raise ActlabError(
            f"no results for {exp.trained_dataset} → {exp.eval_dataset} (demos from {exp.icl_source}, "
            f"{exp.icl_max_demos} demos)"
        )
    d = exp.plot_dir(plots_dir)
    m = exp.model or "model"
    want = set(plot_types)
    every = "all" in want
    trained = [x for x in exp.methods() if x not in (ICL, NO_ICL)]
    title = f"{m}: {exp.trained_dataset} → {exp.eval_dataset} (ICL from {exp.icl_source}, ≤{exp.icl_max_demos} demos)"
    out: list[Path | None] = []
    if every or "accuracy" in want:
        out.append(
            _metric_plot(
                exp,
                "accuracy",
                "accuracy",
                d / f"{m}_accuracy_without_icl.png",
                [NO_ICL, ICL, *trained],
                title + "\ntrained models without ICL",
            )
        )
        out.append(
            _metric_plot(
                exp,
                "accuracy",
                "accuracy",
                d / f"{m}_accuracy_with_icl.png",
                [NO_ICL, ICL, *trained],
                title + "\nwith ICL",
                with_icl_trained=True,
            )
        )
    if exp.uncertainty or every or "uncertainty" in want:
        for key, fname, label in (
            ("top1_accuracy", "top1_accuracy", "top-1 accuracy"),
            ("label_accuracy", "label_accuracy", "label-set accuracy"),
            ("uncertainty", "uncertainty", "uncertainty (1 − p₁)"),
            ("ece", "ece", "ECE (15 equal-count bins)"),
        ):
            out.append(
                _metric_plot(
                    exp,
                    key,
                    label,
                    d / f"{m}_{fname}_with_icl.png",
                    [NO_ICL, ICL, *trained],
                    title + "\nbase with ICL vs trained without",
                )
            )
        out.append(_reliability(exp, d / f"{m}_reliability.png"))
    out.append(_family_comparison(exp, d / f"{m}_family_comparison.png"))
    if every or "accuracy" in want:
        out.append(_hyperparameter_plot(exp, d / f"{m}_hyperparameters.png"))
    paths = [p for p in out if p is not None]
    paths.append(write_report(exp, d, paths))
    return paths


# --------------------------------------------------------------------------------------------------- commands
def plot(
    trained_dataset: str,
    eval_dataset: str | None = None,
    icl_source_dataset: str | None = None,
    icl_max_demos: int = 5,
    model_types: Sequence[str] | None = None,
    outputs_dir: str = "outputs",
    plots_dir: str = "plots",
    uncertainty_mode: bool = False,
    plot_types: Sequence[str] = ("all",),
    model: str | None = None,
) -> list[Path]:
    """``actlab ia2 plot``: one experiment."""
    docs = load_results(outputs_dir, uncertainty=True if uncertainty_mode else None)
    if not docs:
        raise ActlabError(
            f"no evaluation results in {outputs_dir}/evaluations/"
            f"{' (uncertainty mode)' if uncertainty_mode else ''}; run `actlab ia2 evaluate` first"
        )
    ev = eval_dataset or trained_dataset
    src = icl_source_dataset or trained_dataset
    if not uncertainty_mode and any(d["_uncertainty"] for d in docs) and not any(not d["_uncertainty"] for d in docs):
        uncertainty_mode = True
    exp = collect(
        docs,
        trained_dataset,
        ev,
        src,
        icl_max_demos,
        model=model,
        uncertainty=True if uncertainty_mode else (False if any(not d["_uncertainty"] for d in docs) else None),
    )
    if model_types:
        keep = set(model_types) | ({ICL, NO_ICL} if "base" in model_types else set())
        exp.entries = {k: v for k, v in exp.entries.items() if k in keep}
    if not exp.entries:
        have = "; ".join(f"{t}→{e} src={s} demos={k}" for t, e, s, k, _ in experiments_in(docs)[:6])
        raise ActlabError(
            f"no results for trained={trained_dataset} eval={ev} source={src} demos={icl_max_demos}; "
            f"results exist for: {have}"
        )
    exp.uncertainty = uncertainty_mode
    return plot_experiment(exp, plots_dir, plot_types)


def plot_all(
    outputs_dir: str = "outputs",
    plots_dir: str = "plots",
    trained_datasets: Sequence[str] | None = None,
    eval_datasets: Sequence[str] | None = None,
    icl_source_datasets: Sequence[str] | None = None,
    icl_max_demos: Sequence[int] | None = None,
    include_uncertainty: bool = True,
    include_standard: bool = True,
) -> list[Path]:
    """``actlab ia2 plot-all``: every experiment with results (optionally filtered)."""
    docs = load_results(outputs_dir)
    if not docs:
        raise ActlabError(f"no evaluation results in {outputs_dir}/evaluations/; run `actlab ia2 evaluate` first")
    paths: list[Path] = []
    done = 0
    for td, ev, src, k, model in experiments_in(docs):
        if trained_datasets and td not in trained_datasets or eval_datasets and ev not in eval_datasets:
            continue
        if icl_source_datasets and src not in icl_source_datasets or icl_max_demos and k not in icl_max_demos:
            continue
        for unc in ([False] if include_standard else []) + ([True] if include_uncertainty else []):
            sub = [d for d in docs if d["_uncertainty"] == unc]
            exp = collect(sub, td, ev, src, k, model=model, uncertainty=unc)
            if not any(m not in (NO_ICL,) for m in exp.entries):
                continue
            exp.uncertainty = unc
            paths += plot_experiment(exp, plots_dir)
            done += 1
    if not done:
        raise ActlabError(
            "no evaluation results match the filters "
            f"(trained={trained_datasets}, eval={eval_datasets}, source={icl_source_datasets}, "
            f"demos={icl_max_demos})"
        )
    return paths
