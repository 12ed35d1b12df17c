"""``actlab demo`` — the main job run by ``make demo``.

1. build the default zoo model ``tiny`` if it is missing and show whether it learns in context: accuracy on
   held-out synthetic tasks with remapped labels, with 0 vs 4 demos (and the numbers the build measured);
2. run the IA2 pipeline on it (``actlab ia2 demo``: prepare → train tok/act/tna/a2t × 3 runs → evaluate →
   plots + report.html → results table). Finished steps are skipped on a rerun.
"""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("demo", help="the main job: build the tiny model if missing and run the IA2 pipeline on it")
    p.add_argument("--model", default="tiny", help="zoo model to use (default: tiny)")
    p.add_argument("--n_tasks", type=int, default=200, help="held-out tasks per demo count (default 200)")
    p.add_argument("--work_dir", default="ia2_demo", help="where the IA2 demo writes data/, outputs/, plots/")
    p.add_argument("--skip_ia2", action="store_true", help="only the ICL check (step 1)")
    p.set_defaults(func=run)


def run(args) -> int:
    import time

    from actlab.core.errors import ActlabError
    from actlab.zoo import ensure_built, icl_accuracy, is_zoo_name, read_manifest
    from actlab.zoo.specs import ZOO_NAMES

    if not is_zoo_name(args.model):
        from actlab.core.errors import unknown_choice

        raise unknown_choice("zoo model", args.model, ZOO_NAMES)
    if args.n_tasks <= 0:
        raise ActlabError(f"--n_tasks must be positive, got {args.n_tasks}")
    t0 = time.perf_counter()
    d = ensure_built(args.model)
    man = read_manifest(args.model)
    from actlab.core.models import load

    model, tok = load(args.model)
    seed = 4242  # held out: differs from the build's eval seed
    acc = {k: icl_accuracy(model, tok, k, args.n_tasks, seed) for k in (0, 4)}
    print(f"zoo model {args.model!r} at {d} ({man['n_params']:,} params; build took {man['build_seconds']:.0f} s)")
    print(f"held-out remapped-label tasks (n={args.n_tasks}, 2- and 4-class, labels Monday..orange):")
    print(f"  0 demos: {acc[0]:.3f}   4 demos: {acc[4]:.3f}   gain: {acc[4] - acc[0]:+.3f} (target >= +0.25)")
    man_icl = man["icl_accuracy"]
    print("manifest (build-time eval): " + ", ".join(f"k={k}: {v:.2f}" for k, v in man_icl["held_out_tasks"].items()))
    for ds in ("syn_sst2_remap", "syn_agnews_remap"):
        if ds in man_icl:
            print(f"  {ds}: 0 demos {man_icl[ds]['0']:.2f}, 4 demos {man_icl[ds]['4']:.2f}")
    print(f"ICL check done in {time.perf_counter() - t0:.0f} s", flush=True)
    if args.skip_ia2:
        return 0
    from actlab.ia2.demo import DemoConfig, run_demo

    run_demo(DemoConfig(work_dir=args.work_dir, model_id=args.model), preloaded=(model, tok))
    return 0
