"""``actlab zoo build NAME [--force] [--seed S]`` and ``actlab zoo list`` — the embedded model zoo.

    actlab zoo list
    actlab zoo build tiny            # ~6-8 min on 2 CPU cores, then cached under $ACTLAB_HOME/models/tiny
    actlab zoo build tiny --force    # rebuild (e.g. after a corrupt cache)
"""

from __future__ import annotations

from actlab.cli.common import family_parser


def _seed(s: str) -> int:
    import argparse

    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, got {s!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, got {s!r}")
    return v


def register(sub) -> None:
    verbs = family_parser(sub, "zoo", "embedded tiny models, trained offline on a synthetic world: build, list")
    p = verbs.add_parser("build", help="build (train) a zoo model, or resume an interrupted build",
                         description="Train zoo model NAME offline into $ACTLAB_HOME/models/NAME (a resumable "
                                     "NAME.partial checkpoint dir while it runs). Does nothing if already built.")
    p.add_argument("name", metavar="NAME", help="zoo model name (see `actlab zoo list`)")
    p.add_argument("--force", action="store_true", help="rebuild even if a (possibly corrupt) build exists")
    p.add_argument("--seed", type=_seed, default=None, help="training seed (default: the entry's own seed)")
    p.set_defaults(func=_build)
    p = verbs.add_parser("list", help="list zoo models: built?, path, params, measured ICL accuracies",
                         description="List the zoo's models with their build state and manifest numbers.")
    p.set_defaults(func=_list)


def _build(args) -> int:
    from actlab.core.errors import ActlabError
    from actlab.zoo.build import ensure_built, get_spec, read_manifest, validate

    get_spec(args.name, args.seed)  # unknown name -> one line
    if not args.force:
        try:
            d = validate(args.name, args.seed)
            print(f"{args.name}: already built at {d} (use --force to rebuild)")
            return 0
        except ActlabError as e:
            if "corrupt" in str(e):
                raise
    d = ensure_built(args.name, force=args.force, seed=args.seed)
    man = read_manifest(args.name, args.seed)
    icl = man["icl_accuracy"]["held_out_tasks"]
    print(f"{args.name}: {d} ({man['n_params']:,} params, built in {man['build_seconds']:.0f} s); "
          f"ICL accuracy by demos: " + ", ".join(f"k={k}: {v:.2f}" for k, v in icl.items()))
    return 0


def _list(args) -> int:
    from actlab.core.errors import ActlabError
    from actlab.core.io import read_json
    from actlab.zoo.build import model_dir, read_manifest
    from actlab.zoo.specs import ZOO

    rows = [("name", "built", "params", "icl k=0/1/2/4/8", "build s", "path")]
    for name in ZOO:
        d = model_dir(name)
        try:
            man = read_manifest(name)
            icl = man["icl_accuracy"]["held_out_tasks"]
            rows.append((name, "yes", f"{man['n_params']:,}", "/".join(f"{icl[k]:.2f}" for k in sorted(icl, key=int)),
                         f"{man['build_seconds']:.0f}", str(d)))  # fmt: skip
        except ActlabError as e:
            state = "CORRUPT" if "corrupt" in str(e) else "STALE" if "stale" in str(e) else "no"
            ck = d.with_name(d.name + ".partial") / "checkpoint.json"
            if state == "no" and ck.is_file():
                try:
                    state = f"partial (step {read_json(ck)['step']}/{ZOO[name].train.steps})"
                except Exception:  # noqa: BLE001 - a checkpoint being written right now
                    state = "partial"
            rows.append((name, state, "-", "-", "-", str(d)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    for name, spec in ZOO.items():
        print(f"  {name}: {spec.description}")
    return 0
