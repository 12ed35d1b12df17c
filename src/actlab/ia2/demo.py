"""``actlab ia2 demo`` — the whole IA2 pipeline on the embedded ``tiny`` model, resumable, a few minutes on 2 cores.

prepare (synthetic sst2, remapped labels) → run files (N, 30 runs) → train tok / act / tna / a2t → evaluate base with
and without ICL and the trained models (uncertainty mode) → plots + report.html → subspace overlap and activation
similarity → a results table (accuracy and ECE, mean ± 95 % CI over runs) and the paired differences between
methods (per-run differences, mean ± 95 % CI), returned as ``text`` (``actlab ia2 demo`` prints it on stdout; the
step lines are logged at info).

Every step skips what is already done (pools and run files are kept, complete training runs are skipped, existing
evaluation results are reused), so a rerun only redraws the plots and remakes the table.
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from actlab.core.errors import ActlabError

log = logging.getLogger(__name__)

METHODS = ("tok", "act", "tna", "a2t")


@dataclass
class DemoConfig:
    """Settings of the demo (small on purpose: 2 CPU cores, minutes).

    dataset: a single-token synthetic set with remapped labels (labels only knowable from the demos).
    N / num_runs / icl_max_demos: training examples per run, runs, demos per ICL prompt (min(demos, N-1)).
    num_eval_examples: size of the eval set (the paper uses 500).
    lr / ce_loss_weight / num_epochs / patience: training settings for every method (one lr, no sweep).
    """

    work_dir: str = "ia2_demo"
    model_id: str = "tiny"
    dataset: str = "syn_sst2_remap"
    N: int = 8
    num_runs: int = 30
    icl_max_demos: int = 7
    num_train_samples: int = 300
    num_eval_examples: int = 500
    lr: float = 1e-3
    ce_loss_weight: float = 0.1
    label_type: str = "ground_truth"
    lora_r: int = 8
    num_epochs: int = 50  # the official code's cap (early stopping on the dev loss, patience 5)
    patience: int = 5
    methods: tuple[str, ...] = METHODS
    asim_samples: int = 32
    quick: bool = False
    extra_train: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.quick:
            self.num_runs = min(self.num_runs, 2)
            self.num_eval_examples = min(self.num_eval_examples, 40)
            self.num_epochs = min(self.num_epochs, 3)
            self.asim_samples = min(self.asim_samples, 8)
        if self.N < 2:
            raise ActlabError(f"demo N must be >= 2 (ICL needs N-1 >= 1 demos), got {self.N}")

    @property
    def data_dir(self) -> str:
        return str(Path(self.work_dir) / "data")

    @property
    def outputs_dir(self) -> str:
        return str(Path(self.work_dir) / "outputs")

    @property
    def plots_dir(self) -> str:
        return str(Path(self.work_dir) / "plots")


def _step(msg: str) -> float:
    log.info(f"[ia2 demo] {msg}")
    return time.perf_counter()


def train_configs(cfg: DemoConfig) -> list:
    """The training configs of the demo, parents (act) before sequential children (a2t)."""
    from actlab.ia2.config import IA2TrainConfig

    out = []
    order = sorted(cfg.methods, key=lambda m: (m == "a2t" or m == "t2a", m))
    for run in range(cfg.num_runs):
        for m in order:
            kw = dict(
                training_method=m,
                dataset=cfg.dataset,
                model_id=cfg.model_id,
                num_train_examples=cfg.N,
                run_idx=run,
                lr=cfg.lr,
                lora_r=cfg.lora_r,
                lora_alpha=cfg.lora_r,
                num_epochs=cfg.num_epochs,
                patience=cfg.patience,
                output_dir=cfg.outputs_dir,
                data_dir=cfg.data_dir,
                max_icl_demos=cfg.icl_max_demos,
                **cfg.extra_train,
            )
            if m in ("tok", "a2t", "t2a"):
                kw["label_type"] = cfg.label_type
            if m == "tna":
                kw["label_type"] = cfg.label_type
                kw["ce_loss_weight"] = cfg.ce_loss_weight
            out.append(IA2TrainConfig(**kw))
    return out


def run_demo(cfg: DemoConfig | None = None, preloaded: tuple | None = None) -> dict:
    """Run (or resume) the demo; returns ``{"text": str, "table": str, "report": Path, "seconds": float, ...}``
    (``text``: the results table, paired differences, analyses, report path and timings, as the CLI prints them).

    ``preloaded`` = ``(model, tokenizer)`` skips loading ``cfg.model_id`` (tests use a micro model).
    """
    from actlab.data import make_train, prepare
    from actlab.data.registry import get_dataset
    from actlab.ia2 import trainer
    from actlab.ia2.evaluate import EvalConfig, evaluate
    from actlab.ia2.plots import (
        collect,
        format_paired,
        format_table,
        load_results,
        paired_rows,
        plot_experiment,
        summary_rows,
    )

    cfg = cfg or DemoConfig()
    t_all = time.perf_counter()
    timings: dict[str, float] = {}
    spec = get_dataset(cfg.dataset)
    if spec.task_type != "single_token":
        raise ActlabError(f"the demo needs a single-token dataset, got {cfg.dataset!r} ({spec.task_type})")

    t = _step(f"model {cfg.model_id} (the zoo builds tiny on first use, ~8 min on 2 cores)")
    if preloaded is None:
        from actlab.core.models import load

        preloaded = load(cfg.model_id)
    model, tok = preloaded
    timings["model"] = time.perf_counter() - t

    t = _step(f"data: prepare {cfg.dataset} and cut N={cfg.N} × {cfg.num_runs} runs into {cfg.data_dir}/")
    base_name = spec.base or spec.name
    prepare(
        base_name,
        cfg.data_dir,
        num_train_samples=cfg.num_train_samples,
        num_val_samples=cfg.num_eval_examples,
        label_template="remap" if spec.remap else None,
    )
    make_train(cfg.dataset, cfg.data_dir, num_train_examples=[cfg.N], num_runs=cfg.num_runs)
    timings["data"] = time.perf_counter() - t

    cfgs = train_configs(cfg)
    t = _step(f"train {' '.join(cfg.methods)} × {cfg.num_runs} runs ({len(cfgs)} runs; complete ones are skipped)")
    for tc in cfgs:
        trainer.train(tc, model=copy.deepcopy(model), tok=tok)
    timings["train"] = time.perf_counter() - t

    t = _step(f"evaluate base ± ICL and the trained models on {cfg.num_eval_examples} eval examples")
    ecfg = EvalConfig(
        model_types=["base", *cfg.methods],
        trained_datasets=[cfg.dataset],
        icl_max_demos=cfg.icl_max_demos,
        num_examples=[cfg.N],
        lrs=[cfg.lr],
        run_indices=list(range(cfg.num_runs)),
        model_id=cfg.model_id,
        uncertainty_analysis=True,
        num_eval_examples=cfg.num_eval_examples,
        outputs_dir=cfg.outputs_dir,
        data_dir=cfg.data_dir,
    )
    evaluate(ecfg, preloaded={cfg.model_id: (model, tok)}, log=lambda m: _step(m))
    timings["evaluate"] = time.perf_counter() - t

    t = _step("plots + report")
    from actlab.core.models import short_name

    docs = [
        d
        for d in load_results(cfg.outputs_dir, uncertainty=True)
        if d["config"].get("num_eval_examples") == cfg.num_eval_examples
        and short_name(d["config"]["model_id"]) == short_name(cfg.model_id)
    ]
    exp = collect(
        docs,
        cfg.dataset,
        cfg.dataset,
        cfg.dataset,
        cfg.icl_max_demos,
        model=short_name(cfg.model_id),
        uncertainty=True,
    )
    exp.uncertainty = True
    paths = plot_experiment(exp, cfg.plots_dir)
    timings["plots"] = time.perf_counter() - t

    t = _step("analyses: subspace overlap and activation similarity")
    analyses = {}
    try:
        from actlab.ia2.analyze import activation_similarity, subspace_overlap

        acfg = EvalConfig(
            model_types=list(cfg.methods),
            trained_datasets=[cfg.dataset],
            num_examples=[cfg.N],
            lrs=[cfg.lr],
            run_indices=list(range(cfg.num_runs)),
            model_id=cfg.model_id,
            icl_max_demos=cfg.icl_max_demos,
            outputs_dir=cfg.outputs_dir,
            data_dir=cfg.data_dir,
        )
        analyses["subspace_overlap"] = subspace_overlap(acfg, methods=cfg.methods, plots_dir=cfg.plots_dir, log=None)
        analyses["activation_similarity"] = activation_similarity(
            acfg,
            num_samples=cfg.asim_samples,
            plots_dir=cfg.plots_dir,
            preloaded={cfg.model_id: (model, tok)},
            log=None,
        )
    except ActlabError as e:  # analyses are extras: report, don't fail the demo
        analyses["error"] = str(e)
    timings["analyses"] = time.perf_counter() - t

    rows = summary_rows(exp)
    table = format_table(rows)
    prows = paired_rows(exp)
    paired = format_paired(prows)
    seconds = time.perf_counter() - t_all
    report = paths[-1]
    lines = [
        "",
        f"IA2 demo — {short_name(cfg.model_id)} on {cfg.dataset}, N={cfg.N}, {cfg.num_runs} runs, "
        f"{cfg.num_eval_examples} eval examples, ≤{cfg.icl_max_demos} ICL demos (mean ± 95 % CI over runs)",
        table,
        "",
        "paired differences, trained method − reference, same runs (mean ± 95 % CI; * = excludes 0)",
        paired,
        width_note(rows),
    ]
    if "subspace_overlap" in analyses:
        lines.append(f"subspace overlap of LoRA updates: {_fmt(analyses['subspace_overlap'])}")
    if "activation_similarity" in analyses:
        lines.append(
            f"activation similarity to base+ICL (cosine, attn_output): {_fmt(analyses['activation_similarity'])}"
        )
    if "error" in analyses:
        lines.append(f"analyses skipped: {analyses['error']}")
    lines += [f"report: {report}", f"plots:  {report.parent}/  ({len(paths) - 1} PNGs)"]
    import resource

    ru = resource.getrusage(resource.RUSAGE_SELF)
    cpu = ru.ru_utime + ru.ru_stime
    lines.append(
        f"time: {seconds:.0f} s wall, {cpu:.0f} s CPU ("
        + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items())
        + ")"
    )
    return {
        "text": "\n".join(lines),
        "table": table,
        "paired": paired,
        "paired_rows": prows,
        "report": report,
        "paths": paths,
        "seconds": seconds,
        "cpu_seconds": cpu,
        "timings": timings,
        "rows": rows,
        "analyses": analyses,
    }


def width_note(rows, limit: float = 0.05) -> str:
    """One line on whether the accuracy CIs are within ±``limit`` (5 points), naming the rows that are wider."""
    import math

    wide = [
        f"{r['name']} (±{100 * r['accuracy'].half:.1f})"
        for r in rows
        if math.isfinite(r["accuracy"].half) and r["accuracy"].half > limit
    ]
    if not wide:
        return f"every accuracy CI is within ±{100 * limit:.0f} points"
    return (
        f"accuracy CIs wider than ±{100 * limit:.0f} points: {', '.join(wide)} — these rows cannot be told apart "
        f"at that resolution"
    )


def _fmt(d: dict) -> str:
    from actlab.ia2.plots import pretty

    parts = []
    for k, v in d.items():
        name = " vs ".join(pretty(x) for x in k.split(" vs ")) if " vs " in k else pretty(k)
        parts.append(f"{name} {v:.3f}")
    return ", ".join(parts)
