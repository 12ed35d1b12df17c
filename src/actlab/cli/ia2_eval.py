"""IA2 evaluation verbs (evaluate, plot, plot-all, analyze, demo), added to ``actlab ia2`` by ``cli/ia2.py``.

Flags keep the seed's names (``evaluate_batch_optimized.py``, ``plot_unified.py``, ``plot_all_unified.py``).
"""

from __future__ import annotations

from actlab.cli.common import positive_int


def add_verbs(verbs) -> None:
    """Add the evaluation verbs to the ``actlab ia2`` subparsers."""
    p = verbs.add_parser("evaluate", help="evaluate base (with/without ICL) and trained adapters; skips existing results",
                         description="The seed's evaluate_batch_optimized.py: finds trained runs by filters, scores "
                                     "them without demos (and with, on --eval_with_icl), and the base model with and "
                                     "without ICL demos drawn from each run's remaining pool.")
    p.add_argument("--model_types", nargs="+", default=["base", "tok", "act", "tna", "a2t"],
                   help="base and/or trained methods (tok act tna a2t t2a, ia3-tok, prompt-act, prefix-tna, ...)")
    p.add_argument("--trained_datasets", nargs="+")
    p.add_argument("--eval_datasets", nargs="+", help="default: the trained dataset")
    p.add_argument("--icl_source_datasets", nargs="+", help="default: the trained dataset (differs from eval = OOD)")
    p.add_argument("--icl_max_demos", type=int, default=5)
    p.add_argument("--lora_types", nargs="+")
    p.add_argument("--num_examples", nargs="+", type=int, help="filter on N (num_train_examples)")
    p.add_argument("--lrs", nargs="+", type=float)
    p.add_argument("--run_indices", nargs="+", type=int)
    p.add_argument("--model_id", default="tiny", help="base model when no trained run names one")
    p.add_argument("--uncertainty_analysis", action="store_true")
    p.add_argument("--eval_with_icl", action="store_true", help="also score trained models with demos")
    p.add_argument("--num_eval_examples", type=positive_int, default=500)
    p.add_argument("--num_generated_tokens_eval", type=positive_int, default=1)
    p.add_argument("--batch_size", type=positive_int, default=16)
    p.add_argument("--no_prefix_cache", dest="use_prefix_cache", action="store_false",
                   help="disable the shared-demo KV cache (same results, slower)")
    p.add_argument("--outputs_dir", default="outputs")
    p.add_argument("--data_dir", default="data")
    p.add_argument("--device")
    p.add_argument("--dtype")
    p.add_argument("--force", action="store_true", help="recompute existing results")
    p.set_defaults(func=_evaluate)

    p = verbs.add_parser("plot", help="plots + report.html for one experiment (the seed's plot_unified.py)")
    p.add_argument("--trained_dataset", required=True)
    p.add_argument("--eval_dataset")
    p.add_argument("--icl_source_dataset")
    p.add_argument("--icl_max_demos", type=int, default=5)
    p.add_argument("--model_types", nargs="+")
    p.add_argument("--uncertainty_mode", action="store_true")
    p.add_argument("--plot_types", nargs="+", default=["all"], choices=["all", "accuracy", "uncertainty"])
    p.add_argument("--outputs_dir", default="outputs")
    p.add_argument("--plots_dir", default="plots")
    p.set_defaults(func=_plot)

    p = verbs.add_parser("plot-all", help="plots + report.html for every experiment with results")
    p.add_argument("--trained_datasets", nargs="+")
    p.add_argument("--eval_datasets", nargs="+")
    p.add_argument("--icl_source_datasets", nargs="+")
    p.add_argument("--icl_max_demos", nargs="+", type=int)
    p.add_argument("--include_uncertainty", action="store_true", default=True)
    p.add_argument("--no_uncertainty", dest="include_uncertainty", action="store_false")
    p.add_argument("--include_standard", action="store_true", default=True)
    p.add_argument("--no_standard", dest="include_standard", action="store_false")
    p.add_argument("--outputs_dir", default="outputs")
    p.add_argument("--plots_dir", default="plots")
    p.set_defaults(func=_plot_all)

    p = verbs.add_parser("analyze", help="activation-similarity | subspace-overlap")
    p.set_defaults(_parser=p)
    sub = p.add_subparsers(dest="analysis", metavar="<analysis>", parser_class=type(p))
    a = sub.add_parser("activation-similarity",
                       help="cosine between base-with-ICL and trained-without-ICL attention outputs")
    _filters(a)
    a.add_argument("--num_samples", type=positive_int, default=100)
    a.add_argument("--num_generated_tokens", type=positive_int, default=1)
    a.add_argument("--icl_max_demos", type=int, default=5)
    a.add_argument("--site", default="attn_output")
    a.set_defaults(func=_asim)
    s = sub.add_parser("subspace-overlap", help="overlap of LoRA update subspaces between methods")
    _filters(s)
    s.add_argument("--methods", nargs="+", default=["tok", "act", "tna", "a2t"])
    s.set_defaults(func=_overlap)

    p = verbs.add_parser("demo", help="the whole IA2 pipeline on the embedded tiny model (resumable)")
    p.add_argument("--work_dir", default="ia2_demo", help="where data/, outputs/ and plots/ go")
    p.add_argument("--model_id", default="tiny")
    p.add_argument("--dataset", default=None, help="default: syn_sst2_remap")
    p.add_argument("--num_runs", type=positive_int, default=3)
    p.add_argument("--N", type=positive_int, default=None)
    p.add_argument("--quick", action="store_true", help="smaller everything (smoke test)")
    p.set_defaults(func=_demo)


def _filters(p) -> None:
    p.add_argument("--trained_datasets", nargs="+")
    p.add_argument("--num_examples", nargs="+", type=int)
    p.add_argument("--lrs", nargs="+", type=float)
    p.add_argument("--run_indices", nargs="+", type=int)
    p.add_argument("--model_types", nargs="+", default=["tok", "act", "tna", "a2t"])
    p.add_argument("--model_id", default="tiny")
    p.add_argument("--outputs_dir", default="outputs")
    p.add_argument("--data_dir", default="data")
    p.add_argument("--plots_dir", default="plots")


def _evaluate(args) -> int:
    from actlab.ia2.evaluate import config_from_args, evaluate

    paths = evaluate(config_from_args(args))
    print(f"{len(paths)} results under {args.outputs_dir}/evaluations/")
    return 0


def _plot(args) -> int:
    from actlab.ia2.plots import plot

    paths = plot(args.trained_dataset, args.eval_dataset, args.icl_source_dataset, args.icl_max_demos,
                 args.model_types, args.outputs_dir, args.plots_dir, args.uncertainty_mode, args.plot_types)
    print(f"wrote {len(paths)} files to {paths[-1].parent}/ (report: {paths[-1]})")
    return 0


def _plot_all(args) -> int:
    from actlab.ia2.plots import plot_all

    paths = plot_all(args.outputs_dir, args.plots_dir, args.trained_datasets, args.eval_datasets,
                     args.icl_source_datasets, args.icl_max_demos, args.include_uncertainty, args.include_standard)
    reports = sorted({str(p) for p in paths if p.name == "report.html"})
    print(f"wrote {len(paths)} files; reports: {' '.join(reports)}")
    return 0


def _asim(args) -> int:
    from actlab.ia2.analyze import activation_similarity, config_from_args

    out = activation_similarity(config_from_args(args), num_samples=args.num_samples,
                                num_generated_tokens=args.num_generated_tokens, site=args.site,
                                plots_dir=args.plots_dir)
    return 0 if out else 1


def _overlap(args) -> int:
    from actlab.ia2.analyze import config_from_args, subspace_overlap

    out = subspace_overlap(config_from_args(args), methods=args.methods, plots_dir=args.plots_dir)
    return 0 if out else 1


def _demo(args) -> int:
    from actlab.ia2.demo import DemoConfig, run_demo

    cfg = DemoConfig(work_dir=args.work_dir, model_id=args.model_id, num_runs=args.num_runs, quick=args.quick,
                     **({"dataset": args.dataset} if args.dataset else {}), **({"N": args.N} if args.N else {}))
    run_demo(cfg)
    return 0
