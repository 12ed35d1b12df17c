"""``actlab data list | prepare | make-train`` — the dataset registry on the command line.

    actlab data list [--data_dir data]
    actlab data prepare --dataset sst2 agnews --num_train_samples 2000 --num_val_samples 500 [--label_template remap]
    actlab data prepare --dataset hmath --subset algebra
    actlab data make-train --datasets sst2 --num_train_examples 2 4 8 --num_runs 5 --max_icl_demos 256 --num_dev_examples 48

Flags keep the names of upstream's ``prepare_data.py`` / ``create_all_training_datasets.py``; they come from
:class:`~actlab.data.prepare.PrepareConfig`, :class:`~actlab.data.make_train.MakeTrainConfig` and
:class:`~actlab.data.prepare.DataListConfig`.
"""

from __future__ import annotations

import sys

from actlab.cli.common import Family, Verb, print_table


def _list(cfg) -> int:
    from actlab.data.prepare import list_rows

    print_table(list_rows(cfg))
    return 0


def _prepare(cfg) -> int:
    from actlab.data.prepare import run_prepare

    for r in run_prepare(cfg):
        if r["skipped"]:
            print(f"{r['name']}: {r['path']} exists, skipped (use --force to rewrite)", file=sys.stderr)
        else:
            meta = r["metadata"]
            print(
                f"{r['name']}: wrote {r['path']} ({meta['num_train_examples']} train, {meta['num_val_examples']} eval)"
            )
    return 0


def _make_train(cfg) -> int:
    from actlab.data.make_train import run_make_train

    paths = run_make_train(cfg)
    print(f"{len(paths)} run files under {cfg.data_dir}/ ({', '.join(cfg.datasets)})")
    return 0


FAMILY = Family(
    "data",
    "dataset registry: list, prepare pools, make train/dev/demo runs",
    [
        Verb(
            "list",
            "list the registered datasets",
            "actlab.data.prepare:DataListConfig",
            _list,
            api="actlab.data.prepare:list_rows",
        ),
        Verb(
            "prepare",
            "load + format datasets, write data/{name}/main.json",
            "actlab.data.prepare:PrepareConfig",
            _prepare,
            api="actlab.data.prepare:run_prepare",
            description="Load datasets (hub, or the zoo's synthetic rows), shuffle with seed 42, format them and write "
            "data/{name}/main.json (train and eval pools).",
        ),
        Verb(
            "make-train",
            "cut runs: data/{name}/train/{N}_{run}.json",
            "actlab.data.make_train:MakeTrainConfig",
            _make_train,
            api="actlab.data.make_train:run_make_train",
            description="Cut prepared train pools into runs of N examples with dev examples and ICL demo lists (numpy "
            "seed = run index), as upstream's create_training_datasets.py.",
        ),
    ],
)
