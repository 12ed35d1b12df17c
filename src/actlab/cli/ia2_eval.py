"""IA2 evaluation verbs (evaluate, plot, plot-all, analyze, demo), part of ``actlab ia2`` (``cli/ia2.py``).

Flags keep the seed's names (``evaluate_batch_optimized.py``, ``plot_unified.py``, ``plot_all_unified.py``).
"""

from __future__ import annotations

from actlab.cli.common import Verb
from actlab.cli.common import add_verbs as _add_verbs
from actlab.core.errors import ActlabError

#: help for EvalConfig's fields (the dataclass lives in actlab.ia2.evaluate)
EVAL_META = {
    # the singular spellings are the original single-evaluation script's flags (one value each, or several)
    "model_types": {
        "aliases": ["--model_type"],
        "help": "base and/or trained methods (tok act tna a2t t2a, ia3-tok, prompt-act, ...)",
    },
    "trained_datasets": {
        "aliases": ["--trained_dataset"],
        "help": "datasets the adapters were trained on (default: every one found)",
    },
    "eval_datasets": {"aliases": ["--eval_dataset_name", "--eval_dataset"], "help": "default: the trained dataset"},
    "icl_source_datasets": {
        "aliases": ["--icl_source_dataset"],
        "help": "default: the trained dataset (differs from eval = OOD)",
    },
    "num_generated_tokens_eval": {"aliases": ["--num_gen_tokens_eval"], "help": "tokens to generate during eval"},
    "icl_max_demos": {"help": "at most this many demos (min(icl_max_demos, N - 1))"},
    "lora_types": {"help": "filter on the LoRA type"},
    "num_examples": {"help": "filter on N (num_train_examples)"},
    "lrs": {"help": "filter on the learning rate"},
    "run_indices": {"help": "filter on the run index"},
    "model_id": {"help": "base model when no trained run names one"},
    "eval_with_icl": {"help": "also score trained models with demos"},
    "use_prefix_cache": {
        "no_aliases": ["--no_prefix_cache"],
        "help": "share the demos' KV cache (same results, faster)",
    },
    "force": {"help": "recompute existing results"},
}


def _check_evaluate(cfg) -> None:
    from actlab.core.config import check_device, check_dtype, check_model, check_out_dir, check_positive

    check_model("model_id", cfg.model_id)
    check_out_dir("outputs_dir", cfg.outputs_dir)
    check_out_dir("data_dir", cfg.data_dir)
    if cfg.num_generated_tokens_eval is not None:  # None: the dataset registry's length
        check_positive("num_generated_tokens_eval", cfg.num_generated_tokens_eval, integer=True)
    check_positive("top_k", cfg.top_k, integer=True)
    for lr in cfg.lrs or []:
        check_positive("lrs", lr)
    check_device("device", cfg.device)
    check_dtype("dtype", cfg.dtype)


def _check_runs(cfg) -> None:
    from actlab.core.config import check_out_dir

    _check_evaluate(cfg.runs)
    check_out_dir("plots_dir", cfg.plots_dir)


def _check_plots(cfg) -> None:
    from actlab.core.config import check_out_dir

    check_out_dir("plots_dir", cfg.plots_dir)
    check_out_dir("outputs_dir", cfg.outputs_dir)


def _check_demo(cfg) -> None:
    from actlab.core.config import check_out_dir, check_positive, check_range
    from actlab.data.registry import get_dataset
    from actlab.ia2.config import LABEL_TYPES

    check_out_dir("work_dir", cfg.work_dir)
    for name in (
        "N",
        "num_runs",
        "num_train_samples",
        "num_eval_examples",
        "lora_r",
        "num_epochs",
        "patience",
        "asim_samples",
    ):
        check_positive(name, getattr(cfg, name), integer=True)
    check_positive("icl_max_demos", cfg.icl_max_demos, integer=True, allow_zero=True)
    check_positive("lr", cfg.lr)
    check_range("ce_loss_weight", cfg.ce_loss_weight, 0.0, 1.0, hi_open=False)
    if cfg.label_type not in LABEL_TYPES:
        raise ActlabError(f"--label_type {cfg.label_type!r} is not valid; valid: {', '.join(LABEL_TYPES)}")
    get_dataset(cfg.dataset)


def _evaluate(cfg) -> int:
    from actlab.ia2.evaluate import evaluate

    paths = evaluate(cfg)
    print(f"{len(paths)} results under {cfg.outputs_dir}/evaluations/")
    return 0


def _plot(cfg) -> int:
    from actlab.ia2.verbs import plot

    paths = plot(cfg)
    print(f"wrote {len(paths)} files to {paths[-1].parent}/ (report: {paths[-1]})")
    return 0


def _plot_all(cfg) -> int:
    from actlab.ia2.verbs import plot_all

    paths = plot_all(cfg)
    reports = sorted({str(p) for p in paths if p.name == "report.html"})
    print(f"wrote {len(paths)} files; reports: {' '.join(reports)}")
    return 0


def _asim(cfg) -> int:
    from actlab.ia2.verbs import activation_similarity

    summary = activation_similarity(cfg)
    print(f"activation similarity (overall cosine, mean over runs): {summary}")
    return 0 if summary else 1


def _overlap(cfg) -> int:
    from pathlib import Path

    from actlab.core.io import read_json
    from actlab.ia2.verbs import subspace_overlap

    summary = subspace_overlap(cfg)
    rows = read_json(Path(cfg.runs.outputs_dir) / "analysis" / "subspace_overlap" / "overlap.json")["rows"]
    print(f"subspace overlap (mean over runs; random ≈ {rows[0]['random_baseline']:.3f}): {summary}")
    return 0 if summary else 1


def _demo(cfg) -> int:
    from actlab.ia2.demo import run_demo

    print(run_demo(cfg)["text"])
    return 0


EVAL_VERBS = [
    Verb(
        "evaluate",
        "evaluate base (with/without ICL) and trained adapters; skips existing results",
        "actlab.ia2.evaluate:EvalConfig",
        _evaluate,
        api="actlab.ia2.evaluate:evaluate",
        meta=EVAL_META,
        check=_check_evaluate,
        description="The seed's evaluate_batch_optimized.py: finds trained runs by filters, scores them without "
        "demos (and with, on --eval_with_icl), and the base model with and without ICL demos drawn "
        "from each run's remaining pool.",
    ),
    Verb(
        "plot",
        "plots + report.html for one experiment (the seed's plot_unified.py)",
        "actlab.ia2.verbs:PlotConfig",
        _plot,
        api="actlab.ia2.verbs:plot",
        check=_check_plots,
    ),
    Verb(
        "plot-all",
        "plots + report.html for every experiment with results",
        "actlab.ia2.verbs:PlotAllConfig",
        _plot_all,
        api="actlab.ia2.verbs:plot_all",
        check=_check_plots,
    ),
    Verb(
        "analyze",
        "activation-similarity | subspace-overlap",
        verbs=[
            Verb(
                "activation-similarity",
                "cosine between base-with-ICL and trained-without-ICL attention outputs",
                "actlab.ia2.verbs:ActivationSimilarityConfig",
                _asim,
                api="actlab.ia2.verbs:activation_similarity",
                meta=EVAL_META,
                check=_check_runs,
            ),
            Verb(
                "subspace-overlap",
                "overlap of LoRA update subspaces between methods",
                "actlab.ia2.verbs:SubspaceOverlapConfig",
                _overlap,
                api="actlab.ia2.verbs:subspace_overlap",
                meta=EVAL_META,
                check=_check_runs,
            ),
        ],
    ),
    Verb(
        "demo",
        "the whole IA2 pipeline on the embedded tiny model (resumable)",
        "actlab.ia2.demo:DemoConfig",
        _demo,
        api="actlab.ia2.demo:run_demo",
        check=_check_demo,
        meta={
            "work_dir": {"help": "where data/, outputs/ and plots/ go"},
            "methods": {"cli": False},
            "quick": {"help": "smaller everything (smoke test)"},
        },
    ),
]


def add_verbs(verbs) -> None:
    """Add every evaluation verb, with its flags, to the ``actlab ia2`` subparsers ``verbs``."""
    _add_verbs(verbs, EVAL_VERBS)
