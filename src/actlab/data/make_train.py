"""``actlab data make-train``: cut a prepared train pool into N-example runs with their ICL demo lists.

Upstream's ``create_training_datasets.py`` algorithm, draw for draw (``np.random.RandomState(run)``):

1. shuffle the pool indices; train = the first N, dev = the next ``min(num_dev_examples, N // 2)``,
   ``remaining_indices`` = the rest (the eval script draws its ICL demos from them);
2. each train example i gets ``min(max_icl_demos, N - 1)`` *other* train examples as demos (``rng.choice`` without
   replacement when there are more candidates than that, then ``rng.shuffle``);
3. dev example j reuses train example j's demo list.

So every method (SFT, IA2, ...) trained on run r of size N sees the same data. File layout::

    data/{name}/train/{N}_{run}.json
      {"dataset", "N", "run", "max_icl_demos", "num_dev_examples", "demo_type": "unique",
       "train": {"indices": [pool idx], "examples": [...], "demos": [[position in train.examples]]},
       "dev":   {"indices": [...], "examples": [...], "demos": [[position in train.examples]]},
       "remaining_indices": [pool idx], "pool_fingerprint": str}

Eval-only sets (empty train pool) get ``{"demo_type": "eval_only", "remaining_indices": all eval-pool indices}``,
as upstream does.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from actlab.core.errors import ActlabError
from actlab.core.io import atomic_write_json, read_json
from actlab.core.progress import progress
from actlab.data.prepare import fingerprint, read_pool
from actlab.data.registry import get_dataset

DEFAULT_N = (2, 4, 8, 16, 32)


def train_path(name: str, N: int, run: int, data_dir: str | Path = "data") -> Path:
    return Path(data_dir) / name / "train" / f"{N}_{run}.json"


def cut_run(pool_size: int, N: int, run: int, max_icl_demos: int = 256, num_dev_examples: int = 48) -> dict:
    """The index lists of one run (pure; no files): train/dev/remaining pool indices and demo positions."""
    if N < 1:
        raise ActlabError(f"num_train_examples must be >= 1, got {N}")
    if N > pool_size:
        raise ActlabError(
            f"num_train_examples {N} exceeds the train pool ({pool_size} examples); "
            f"prepare a larger pool (--num_train_samples) or use N <= {pool_size}"
        )
    rng = np.random.RandomState(run)
    order = list(range(pool_size))
    rng.shuffle(order)
    n_dev = min(num_dev_examples, N // 2)
    train_idx = order[:N]
    dev_idx = order[N : N + n_dev]
    remaining = order[N + n_dev :]
    k = min(max_icl_demos, N - 1) if N > 1 else 0
    demos: list[list[int]] = []
    for i in range(N):
        candidates = [j for j in range(N) if j != i]
        chosen = list(rng.choice(candidates, k, replace=False)) if len(candidates) > k else candidates
        rng.shuffle(chosen)
        demos.append([int(j) for j in chosen])
    return {
        "train": [int(i) for i in train_idx],
        "dev": [int(i) for i in dev_idx],
        "remaining": [int(i) for i in remaining],
        "train_demos": demos,
        "dev_demos": demos[:n_dev],
    }


def make_run(name: str, pool: dict, N: int, run: int, max_icl_demos: int = 256, num_dev_examples: int = 48) -> dict:
    """The document of ``data/{name}/train/{N}_{run}.json`` for a loaded pool."""
    train_pool = pool["train_examples"]
    if not train_pool:  # eval-only set
        return {
            "dataset": name,
            "N": N,
            "run": run,
            "demo_type": "eval_only",
            "remaining_indices": list(range(len(pool["val_examples"]))),
        }
    cut = cut_run(len(train_pool), N, run, max_icl_demos, num_dev_examples)
    return {
        "dataset": name,
        "N": N,
        "run": run,
        "max_icl_demos": max_icl_demos,
        "num_dev_examples": num_dev_examples,
        "demo_type": "unique",
        "train": {
            "indices": cut["train"],
            "examples": [train_pool[i] for i in cut["train"]],
            "demos": cut["train_demos"],
        },
        "dev": {"indices": cut["dev"], "examples": [train_pool[i] for i in cut["dev"]], "demos": cut["dev_demos"]},
        "remaining_indices": cut["remaining"],
        "pool_fingerprint": fingerprint(train_pool),
    }


def make_train(
    names: str | Iterable[str],
    data_dir: str | Path = "data",
    num_train_examples: int | Sequence[int] = DEFAULT_N,
    num_runs: int = 5,
    max_icl_demos: int = 256,
    num_dev_examples: int = 48,
    force: bool = False,
) -> list[Path]:
    """Write ``data/{name}/train/{N}_{run}.json`` for every name × N × run; existing files are kept unless ``force``.

    Returns the paths of all the run files (written or already there).
    """
    names = [names] if isinstance(names, str) else list(names)
    Ns = [num_train_examples] if isinstance(num_train_examples, int) else list(num_train_examples)
    if num_runs < 1:
        raise ActlabError(f"num_runs must be >= 1, got {num_runs}")
    if max_icl_demos < 0 or num_dev_examples < 0:
        raise ActlabError(f"max_icl_demos and num_dev_examples must be >= 0, got {max_icl_demos}, {num_dev_examples}")
    bad = [n for n in Ns if n < 1]
    if bad:
        raise ActlabError(f"num_train_examples must be >= 1, got {bad[0]}")
    for name in names:
        get_dataset(name)  # unknown name -> one-line error before any work
    paths: list[Path] = []
    for name in names:
        pool = read_pool(name, data_dir)
        if pool["train_examples"]:
            too_big = [n for n in Ns if n > len(pool["train_examples"])]
            if too_big:
                cut_run(len(pool["train_examples"]), too_big[0], 0)  # raises the one-line error
        jobs = [(N, r) for N in Ns for r in range(num_runs)]
        for N, r in progress(jobs, total=len(jobs), desc=f"{name} runs"):
            path = train_path(name, N, r, data_dir)
            if force or not path.exists():
                atomic_write_json(path, make_run(name, pool, N, r, max_icl_demos, num_dev_examples))
            paths.append(path)
    return paths


def _strip(ex: dict) -> dict:
    return {k: v for k, v in ex.items() if k != "demos"}


def load_run(name: str, N: int, run: int, data_dir: str | Path = "data") -> dict[str, Any]:
    """One run with its demos resolved to example dicts.

    Returns ``{"dataset", "N", "run", "train": [ex + {"demos": [ex, ...]}], "dev": [...],
    "remaining_indices": [...], "remaining": [pool examples], "eval": [eval-pool examples]}``. For eval-only sets,
    ``train``/``dev`` are empty and ``remaining_indices`` index the eval pool.
    """
    get_dataset(name)
    pool = read_pool(name, data_dir)
    path = train_path(name, N, run, data_dir)
    if not path.exists():
        raise ActlabError(
            f"run N={N} run={run} of dataset {name!r} is not made: {path} does not exist; create it "
            f"with `actlab data make-train --datasets {name} --num_train_examples {N} "
            f"--num_runs {run + 1} --data_dir {Path(data_dir)}`"
        )
    doc = read_json(path)
    val = pool["val_examples"]
    if doc.get("demo_type") == "eval_only":
        rem = doc["remaining_indices"]
        return {
            "dataset": name,
            "N": N,
            "run": run,
            "train": [],
            "dev": [],
            "remaining_indices": rem,
            "remaining": [val[i] for i in rem],
            "eval": val,
        }
    train_pool = pool["train_examples"]
    if doc.get("pool_fingerprint") != fingerprint(train_pool):
        raise ActlabError(
            f"{path} was cut from a different pool than {name}/main.json (re-prepared since?); "
            f"rerun `actlab data make-train --datasets {name} --num_train_examples {N} --force`"
        )
    train_ex = doc["train"]["examples"]

    def resolve(part: dict) -> list[dict]:
        return [
            dict(_strip(ex), demos=[_strip(train_ex[j]) for j in demos])
            for ex, demos in zip(part["examples"], part["demos"], strict=True)
        ]

    rem = doc["remaining_indices"]
    return {
        "dataset": name,
        "N": N,
        "run": run,
        "train": resolve(doc["train"]),
        "dev": resolve(doc["dev"]),
        "remaining_indices": rem,
        "remaining": [train_pool[i] for i in rem],
        "eval": val,
    }


@dataclass
class MakeTrainConfig:
    """``actlab data make-train``: cut prepared train pools into runs of N examples with dev examples and ICL demo
    lists (numpy seed = run index), as upstream's ``create_training_datasets.py``."""

    datasets: list[str] = field(
        metadata={"aliases": ["--dataset"], "metavar": "NAME", "help": "prepared dataset name(s)"}
    )
    num_train_examples: list[int] = field(
        default_factory=lambda: list(DEFAULT_N),
        metadata={"aliases": ["--num_examples"], "metavar": "N", "help": "run sizes"},
    )
    num_runs: int = field(default=5, metadata={"help": "runs per N"})
    max_icl_demos: int = field(default=256, metadata={"help": "demos per example, capped at N-1"})
    num_dev_examples: int = field(default=48, metadata={"help": "dev examples, capped at N//2"})
    data_dir: str = field(default="data", metadata={"help": "data root"})
    force: bool = field(default=False, metadata={"help": "rewrite existing files"})

    def __post_init__(self) -> None:
        from actlab.core.config import check_out_dir

        if isinstance(self.datasets, str):
            self.datasets = [self.datasets]
        if isinstance(self.num_train_examples, int):
            self.num_train_examples = [self.num_train_examples]
        if not self.datasets:
            raise ActlabError("--datasets needs at least one dataset name; see `actlab data list`")
        bad = [n for n in self.num_train_examples if isinstance(n, bool) or not isinstance(n, int) or n < 1]
        if bad or not self.num_train_examples:
            raise ActlabError(f"--num_train_examples must be integers >= 1, got {bad[0] if bad else '[]'!r}")
        if isinstance(self.num_runs, bool) or not isinstance(self.num_runs, int) or self.num_runs < 1:
            raise ActlabError(f"--num_runs must be an integer >= 1, got {self.num_runs!r}")
        for name in ("max_icl_demos", "num_dev_examples"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ActlabError(f"--{name} must be an integer >= 0, got {v!r}")
        check_out_dir("--data_dir", self.data_dir)
        for name in self.datasets:
            get_dataset(name)  # unknown name -> one line before any work

    def check_inputs(self) -> None:
        from actlab.core.config import check_json_doc
        from actlab.data.prepare import pool_path

        for name in self.datasets:
            check_json_doc(
                f"dataset {name!r} pool", pool_path(name, self.data_dir), ("train_examples", "val_examples")
            )


def run_make_train(cfg: MakeTrainConfig) -> list[Path]:
    """:func:`make_train` with a :class:`MakeTrainConfig`; returns the run files' paths."""
    return make_train(
        cfg.datasets,
        cfg.data_dir,
        cfg.num_train_examples,
        cfg.num_runs,
        cfg.max_icl_demos,
        cfg.num_dev_examples,
        force=cfg.force,
    )
