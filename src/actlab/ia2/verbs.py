"""The IA2 verbs that had no config dataclass of their own, as Python functions taking one.

    from actlab.ia2.verbs import PlotConfig, plot
    plot(PlotConfig(trained_dataset="syn_sst2", outputs_dir="outputs"))

``ia2 train`` is :func:`actlab.ia2.trainer.train` (:class:`~actlab.ia2.config.IA2TrainConfig`), ``ia2 evaluate``
:func:`actlab.ia2.evaluate.evaluate` (:class:`~actlab.ia2.evaluate.EvalConfig`), ``ia2 demo``
:func:`actlab.ia2.demo.run_demo` (:class:`~actlab.ia2.demo.DemoConfig`), ``ia2 sweep`` :func:`sweep`
(:func:`sweep_cli_config`).
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from pathlib import Path

from actlab.core.config import check_positive
from actlab.core.errors import ActlabError
from actlab.ia2.evaluate import EvalConfig

PLOT_TYPES = ("all", "accuracy", "uncertainty")


@dataclass
class PlotConfig:
    """``actlab ia2 plot``: plots + report.html for one experiment (the seed's ``plot_unified.py``)."""

    trained_dataset: str = field(metadata={"help": "the dataset the adapters were trained on"})
    eval_dataset: str | None = field(default=None, metadata={"help": "default: the trained dataset"})
    icl_source_dataset: str | None = field(default=None, metadata={"help": "default: the trained dataset"})
    icl_max_demos: int = field(default=5, metadata={"help": "the evaluation's demo cap (selects its results)"})
    model_types: list[str] | None = field(default=None, metadata={"help": "methods to show (default: all found)"})
    uncertainty_mode: bool = field(default=False, metadata={"help": "read the *_uncertainty results"})
    plot_types: list[str] = field(
        default_factory=lambda: ["all"], metadata={"choices": PLOT_TYPES, "help": "which plots"}
    )
    outputs_dir: str = field(default="outputs", metadata={"help": "where `ia2 evaluate` wrote evaluations/"})
    plots_dir: str = field(default="plots", metadata={"help": "output root"})

    def __post_init__(self) -> None:
        check_positive("icl_max_demos", self.icl_max_demos, integer=True, allow_zero=True)
        for t in self.plot_types:
            if t not in PLOT_TYPES:
                raise ActlabError(f"--plot_types {t!r} is not valid; valid: {', '.join(PLOT_TYPES)}")


def plot(cfg: PlotConfig) -> list[Path]:
    """Write the plots and report of one experiment; returns the paths (the report last)."""
    from actlab.ia2.plots import plot as _plot

    return _plot(
        cfg.trained_dataset,
        cfg.eval_dataset,
        cfg.icl_source_dataset,
        cfg.icl_max_demos,
        cfg.model_types,
        cfg.outputs_dir,
        cfg.plots_dir,
        cfg.uncertainty_mode,
        cfg.plot_types,
    )


@dataclass
class PlotAllConfig:
    """``actlab ia2 plot-all``: plots + report.html for every experiment with results."""

    trained_datasets: list[str] | None = field(default=None, metadata={"help": "filter (default: all)"})
    eval_datasets: list[str] | None = field(default=None, metadata={"help": "filter (default: all)"})
    icl_source_datasets: list[str] | None = field(default=None, metadata={"help": "filter (default: all)"})
    icl_max_demos: list[int] | None = field(default=None, metadata={"help": "filter (default: all)"})
    include_uncertainty: bool = field(
        default=True, metadata={"no_aliases": ["--no_uncertainty"], "help": "also the uncertainty experiments"}
    )
    include_standard: bool = field(
        default=True, metadata={"no_aliases": ["--no_standard"], "help": "also the standard experiments"}
    )
    outputs_dir: str = field(default="outputs", metadata={"help": "where `ia2 evaluate` wrote evaluations/"})
    plots_dir: str = field(default="plots", metadata={"help": "output root"})

    def __post_init__(self) -> None:
        for v in self.icl_max_demos or []:
            check_positive("icl_max_demos", v, integer=True, allow_zero=True)


def plot_all(cfg: PlotAllConfig) -> list[Path]:
    from actlab.ia2.plots import plot_all as _plot_all

    return _plot_all(
        cfg.outputs_dir,
        cfg.plots_dir,
        cfg.trained_datasets,
        cfg.eval_datasets,
        cfg.icl_source_datasets,
        cfg.icl_max_demos,
        cfg.include_uncertainty,
        cfg.include_standard,
    )


def _runs_field():
    return field(
        default_factory=lambda: EvalConfig(model_types=["tok", "act", "tna", "a2t"]),
        metadata={"help": "which trained runs (the filters of `ia2 evaluate`)"},
    )


@dataclass
class ActivationSimilarityConfig:
    """``actlab ia2 analyze activation-similarity``: cosine between base-with-ICL and trained-without-ICL
    activations. ``runs`` holds the run filters (model_types, trained_datasets, num_examples, lrs, ...)."""

    runs: EvalConfig = _runs_field()
    num_samples: int = field(default=100, metadata={"help": "eval examples per run"})
    num_generated_tokens: int = field(default=1, metadata={"help": "tokens compared per example"})
    site: str = field(default="attn_output", metadata={"help": "activation site"})
    plots_dir: str = field(default="plots", metadata={"help": "output root"})

    def __post_init__(self) -> None:
        check_positive("num_samples", self.num_samples, integer=True)
        check_positive("num_generated_tokens", self.num_generated_tokens, integer=True)


def activation_similarity(cfg: ActivationSimilarityConfig) -> dict:
    from actlab.ia2.analyze import activation_similarity as _asim

    return _asim(
        cfg.runs,
        num_samples=cfg.num_samples,
        num_generated_tokens=cfg.num_generated_tokens,
        site=cfg.site,
        plots_dir=cfg.plots_dir,
    )


@dataclass
class SubspaceOverlapConfig:
    """``actlab ia2 analyze subspace-overlap``: overlap of LoRA update subspaces between methods."""

    runs: EvalConfig = _runs_field()
    methods: list[str] = field(
        default_factory=lambda: ["tok", "act", "tna", "a2t"], metadata={"help": "methods compared pairwise"}
    )
    plots_dir: str = field(default="plots", metadata={"help": "output root"})


def subspace_overlap(cfg: SubspaceOverlapConfig) -> dict:
    from actlab.ia2.analyze import subspace_overlap as _overlap

    return _overlap(cfg.runs, methods=cfg.methods, plots_dir=cfg.plots_dir)


# ------------------------------------------------------------------------------------------------------- sweep
#: sweep axes: IA2TrainConfig field -> the multi-valued flag (the seed's spelling)
SWEEP_AXES = {
    "dataset": "datasets",
    "num_train_examples": "num_train_examples",
    "lr": "lrs",
    "run_idx": "run_indices",
    "ce_loss_weight": "ce_loss_weights",
    "lora_type": "lora_types",
    "lora_r": "lora_rs",
    "lora_alpha": "lora_alphas",
    "ia3_type": "ia3_types",
    "num_virtual_tokens": "num_virtual_tokens",
}
_SWEEP_HELP = {
    "training_methods": "methods of the grid",
    "include_sequential": "add a2t and t2a for each adapter family in --training_methods (parents added too)",
    "sequential_first": "train every parent (act/tok) before any a2t/t2a run",
    "max_parallel": "worker processes (one GPU each when GPUs exist)",
    "label_types": "label types for tok/a2t/t2a",
    "dry_run": "print the grid and exit",
    "launcher": "local: worker processes on this machine; slurm: submitit jobs (pip install 'actlab[slurm]')",
    "slurm_partition": "Slurm partition (default: the cluster's)",
    "slurm_time": "time limit of each run's job, minutes (a timed-out job is requeued and resumes)",
    "slurm_gpus_per_node": "GPUs per run's job",
    "slurm_cluster": "submitit executor: auto (slurm "
    "where sbatch exists, else local), slurm, local (no cluster), debug (in this process)",
}
_SWEEP_CHOICES = {"launcher": ("local", "slurm"), "slurm_cluster": ("auto", "slurm", "local", "debug")}


@functools.cache
def sweep_cli_config() -> type:
    """The ``ia2 sweep`` schema: SweepConfig's own fields + a nested ``grid`` of IA2TrainConfig fields where the
    axes are lists. Made from the two dataclasses, so no field or default is written twice."""
    import typing

    from actlab.ia2.config import IA2TrainConfig
    from actlab.ia2.sweep import SweepConfig

    hints = typing.get_type_hints(IA2TrainConfig)
    grid_fields = []
    for f in dataclasses.fields(IA2TrainConfig):
        if f.name in ("training_method", "continue_training") or f.metadata.get("cli", True) is False:
            continue
        meta = dict(f.metadata)
        if f.name in SWEEP_AXES:
            base = typing.get_args(hints[f.name])[0] if f.default is None else hints[f.name]
            meta["aliases"] = [f"--{f.name}"] if SWEEP_AXES[f.name] != f.name else []
            name = SWEEP_AXES[f.name]
            dflt = (
                field(default=None, metadata=meta)
                if f.default is None
                else field(default_factory=functools.partial(list, [f.default]), metadata=meta)
            )
            grid_fields.append((name, list[base] | None, dflt))
        else:
            kw = (
                {"default_factory": f.default_factory}
                if f.default_factory is not dataclasses.MISSING
                else {"default": f.default}
            )
            grid_fields.append((f.name, hints[f.name], field(metadata=meta, **kw)))
    Grid = dataclasses.make_dataclass("SweepGrid", grid_fields)
    shints = typing.get_type_hints(SweepConfig)
    own = []
    for f in dataclasses.fields(SweepConfig):
        if f.name == "base":
            continue
        meta = {"help": _SWEEP_HELP.get(f.name, "")}
        if f.name == "training_methods":
            meta["metavar"] = "METHOD"
        if f.name in _SWEEP_CHOICES:
            meta["choices"] = list(_SWEEP_CHOICES[f.name])
        kw = {"metadata": meta}
        if f.default is not dataclasses.MISSING:
            kw["default"] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            kw["default_factory"] = f.default_factory
        own.append((f.name, shints[f.name], field(**kw)))
    own.append(("grid", Grid, field(default_factory=Grid)))
    return dataclasses.make_dataclass("IA2SweepCLIConfig", own, namespace={"__module__": __name__})


def sweep_config(cli_cfg) -> object:
    """The :class:`~actlab.ia2.sweep.SweepConfig` of an ``ia2 sweep`` command line."""
    from actlab.ia2.sweep import SweepConfig

    back = {v: k for k, v in SWEEP_AXES.items()}
    own = {f.name: getattr(cli_cfg, f.name) for f in dataclasses.fields(cli_cfg) if f.name != "grid"}
    base = {back.get(k, k): v for k, v in dataclasses.asdict(cli_cfg.grid).items()}
    return SweepConfig(**own, base=base)


def sweep(cli_cfg) -> list[dict]:
    """``ia2 sweep`` from its CLI config (or a :class:`~actlab.ia2.sweep.SweepConfig`)."""
    from actlab.ia2.sweep import SweepConfig
    from actlab.ia2.sweep import sweep as _sweep

    cfg = cli_cfg if isinstance(cli_cfg, SweepConfig) else sweep_config(cli_cfg)
    return _sweep(cfg)
