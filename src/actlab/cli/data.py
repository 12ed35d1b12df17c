"""``actlab data list | prepare | make-train`` — the dataset registry on the command line.

    actlab data list [--data_dir data]
    actlab data prepare --dataset sst2 agnews --num_train_samples 2000 --num_val_samples 500 [--label_template remap]
    actlab data prepare --dataset hmath --subset algebra
    actlab data make-train --datasets sst2 --num_train_examples 2 4 8 --num_runs 5 --max_icl_demos 256 --num_dev_examples 48

Flags keep the names of upstream's ``prepare_data.py`` / ``create_all_training_datasets.py``.
"""

from __future__ import annotations

import sys

from actlab.cli.common import family_parser, positive_int


def _nonneg_int(s: str) -> int:
    import argparse

    v = int(s)
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, got {s!r}")
    return v


def register(sub) -> None:
    verbs = family_parser(sub, "data", "dataset registry: list, prepare pools, make train/dev/demo runs")

    p = verbs.add_parser("list", help="list the registered datasets",
                         description="List the registered datasets (source, task type, labels, prepared or not).")
    p.add_argument("--data_dir", default="data", help="where prepared datasets live (default: data)")
    p.set_defaults(func=_list)

    p = verbs.add_parser("prepare", help="load + format datasets, write data/{name}/main.json",
                         description="Load datasets (hub, or the zoo's synthetic rows), shuffle with seed 42, format "
                                     "them and write data/{name}/main.json (train and eval pools).")
    p.add_argument("--dataset", nargs="+", required=True, metavar="NAME", help="dataset name(s); see `actlab data list`")
    p.add_argument("--num_train_samples", type=_nonneg_int, default=2000, help="train pool size (default 2000)")
    p.add_argument("--num_val_samples", type=_nonneg_int, default=500, help="eval pool size (default 500)")
    p.add_argument("--label_template", choices=["normal", "remap"], default="normal",
                   help="remap: write label words (apple, Friday, ...) into {name}_remap")
    p.add_argument("--subset", default=None, help="hendrycks_math subset for --dataset hmath (default algebra)")
    p.add_argument("--data_dir", default="data", help="output root (default: data)")
    p.add_argument("--force", action="store_true", help="rewrite existing files")
    p.set_defaults(func=_prepare)

    p = verbs.add_parser("make-train", help="cut runs: data/{name}/train/{N}_{run}.json",
                         description="Cut prepared train pools into runs of N examples with dev examples and ICL "
                                     "demo lists (numpy seed = run index), as upstream's create_training_datasets.py.")
    p.add_argument("--datasets", "--dataset", dest="datasets", nargs="+", required=True, metavar="NAME")
    p.add_argument("--num_train_examples", "--num_examples", dest="num_train_examples", nargs="+", type=positive_int,
                   default=[2, 4, 8, 16, 32], metavar="N", help="run sizes (default 2 4 8 16 32)")
    p.add_argument("--num_runs", type=positive_int, default=5, help="runs per N (default 5)")
    p.add_argument("--max_icl_demos", type=_nonneg_int, default=256, help="demos per example, capped at N-1 (default 256)")
    p.add_argument("--num_dev_examples", type=_nonneg_int, default=48, help="dev examples, capped at N//2 (default 48)")
    p.add_argument("--data_dir", default="data", help="data root (default: data)")
    p.add_argument("--force", action="store_true", help="rewrite existing files")
    p.set_defaults(func=_make_train)


def _list(args) -> int:
    from actlab.data.prepare import pool_path
    from actlab.data.registry import get_dataset, list_datasets

    rows = [("name", "source", "task", "labels", "prepared")]
    for name in list_datasets():
        s = get_dataset(name)
        src = s.hub_path + (f" [{s.hub_config}]" if s.hub_config else "") if s.hub_path else "synthetic (zoo)"
        if not s.supported:
            src += " (not supported yet)"
        labels = ",".join(s.labels) if s.labels else "-"
        task = s.task_type + (" eval-only" if s.eval_only else "")
        rows.append((name, src, task, labels, "yes" if pool_path(name, args.data_dir).exists() else "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return 0


def _prepare(args) -> int:
    from actlab.data.prepare import prepare
    from actlab.data.registry import resolve

    template = None if args.label_template == "normal" else args.label_template
    specs = [resolve(n, template, args.subset) for n in args.dataset]  # all names checked before any work
    for name, spec in zip(args.dataset, specs, strict=True):
        from actlab.data.prepare import pool_path

        existed = pool_path(spec.name, args.data_dir).exists()
        path = prepare(name, args.data_dir, args.num_train_samples, args.num_val_samples, template, args.subset,
                       force=args.force)
        if existed and not args.force:
            print(f"{spec.name}: {path} exists, skipped (use --force to rewrite)", file=sys.stderr)
        else:
            from actlab.core.io import read_json

            meta = read_json(path)["metadata"]
            print(f"{spec.name}: wrote {path} ({meta['num_train_examples']} train, {meta['num_val_examples']} eval)")
    return 0


def _make_train(args) -> int:
    from actlab.data.make_train import make_train

    paths = make_train(args.datasets, args.data_dir, args.num_train_examples, args.num_runs, args.max_icl_demos,
                       args.num_dev_examples, force=args.force)
    print(f"{len(paths)} run files under {args.data_dir}/ ({', '.join(args.datasets)})")
    return 0
