"""``actlab data prepare``: load a dataset (hub, synthetic, or given rows), format it, write its pools.

Layout (upstream's, ``scripts/prepare_data.py``)::

    data/{name}/main.json     {"metadata": {...}, "train_examples": [...], "val_examples": [...]}

``name`` is the registry name: ``sst2``, ``sst2_remap`` (``--label_template remap``), ``hmath_algebra``
(``--dataset hmath --subset algebra``), ``gsm8ks``, ... Each example is ``{"idx", "prompt", "answer", "label",
"gold"}`` (upstream calls ``prompt`` "question"). Pools are at most ``num_train_samples`` / ``num_val_samples`` rows,
taken after the seed-42 shuffle; eval-only sets (poems, bbcnews) have an empty train pool.
"""

from __future__ import annotations

import hashlib
import statistics
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from actlab.core.config import check_out_dir
from actlab.core.errors import ActlabError
from actlab.core.io import atomic_write_json, read_json
from actlab.core.progress import progress
from actlab.data.registry import SEED, DatasetSpec, resolve
from actlab.data.sources import load_hub, load_rows

POOL_FILE = "main.json"


def pool_path(name: str, data_dir: str | Path = "data") -> Path:
    return Path(data_dir) / name / POOL_FILE


def _hub_loader(spec: DatasetSpec) -> Callable[[str], Any]:
    cache: dict[str, Any] = {}

    def load(split: str):
        if split not in cache:
            cache[split] = load_hub(spec.hub_path, spec.hub_config, split, dataset=spec.name)
        return cache[split]

    return load


def _synthetic_loader(spec: DatasetSpec, n_train: int, n_val: int) -> Callable[[str], Any]:
    train_split, val_split = spec.splits
    base = spec.base or spec.name

    def load(split: str):
        return load_rows(base, split, n_train if split == train_split else n_val, SEED)

    return load


def _rows_loader(spec: DatasetSpec, rows: Any) -> Callable[[str], Any]:
    def load(split: str):
        if isinstance(rows, Mapping):
            if split not in rows:
                raise ActlabError(
                    f"dataset {spec.name!r} needs rows for split {split!r}; "
                    f"given: {', '.join(map(str, rows)) or 'none'}"
                )
            return rows[split]
        return rows

    return load


def _check_columns(spec: DatasetSpec, rows: list[dict]) -> None:
    if not rows or not spec.columns:
        return
    missing = [c for c in spec.columns if c not in rows[0]]
    if missing:
        raise ActlabError(
            f"dataset {spec.name!r}: rows lack column(s) {', '.join(missing)} "
            f"(expected {', '.join(spec.columns)}; got {', '.join(sorted(rows[0]))})"
        )


def _stats(values: list[int]) -> dict[str, float]:
    if not values:
        return {}
    return {
        "min": min(values),
        "max": max(values),
        "mean": round(statistics.fmean(values), 2),
        "median": statistics.median(values),
    }


def fingerprint(examples: list[dict]) -> str:
    """A short hash of a pool's prompts and answers (train files record the pool they were cut from)."""
    h = hashlib.sha1()
    for ex in examples:
        h.update(ex["prompt"].encode())
        h.update(b"\x00")
        h.update(ex["answer"].encode())
        h.update(b"\x01")
    return h.hexdigest()[:16]


def pool_rows(
    spec: DatasetSpec, num_train_samples: int = 2000, num_val_samples: int = 500, rows: Any = None
) -> tuple[list[dict], list[dict]]:
    """``spec``'s raw train-pool and eval-pool rows (shuffled, filtered, cut and preprocessed; not formatted)."""
    if not spec.supported:
        raise ActlabError(f"dataset {spec.name!r} is not supported yet: {spec.notes}")
    if num_train_samples < 0 or num_val_samples < 0:
        raise ActlabError(
            f"num_train_samples and num_val_samples must be >= 0, got {num_train_samples}, {num_val_samples}"
        )
    if rows is not None:
        load = _rows_loader(spec, rows)
    elif spec.source == "synthetic":
        load = _synthetic_loader(spec, num_train_samples, num_val_samples)
    else:
        load = _hub_loader(spec)
    assert spec.pipeline is not None
    try:
        train_rows, val_rows = spec.pipeline(spec, load, num_train_samples, num_val_samples)
    except KeyError as e:  # a filter/cut read a column the rows do not have
        raise ActlabError(f"dataset {spec.name!r}: rows lack column {e} (expected {', '.join(spec.columns)})") from e
    _check_columns(spec, train_rows or val_rows)
    if spec.preprocess is not None:
        spec.preprocess(train_rows, val_rows, spec)
    return train_rows, val_rows


def build_pools(
    spec: DatasetSpec, num_train_samples: int = 2000, num_val_samples: int = 500, rows: Any = None
) -> dict[str, Any]:
    """Load and format ``spec``'s pools; returns the ``main.json`` document (nothing is written)."""
    train_rows, val_rows = pool_rows(spec, num_train_samples, num_val_samples, rows)

    def fmt(split_rows: list[dict], desc: str) -> list[dict]:
        out = []
        for i, row in enumerate(progress(split_rows, total=len(split_rows), desc=desc)):
            try:
                out.append({"idx": i, **spec.format_example(row)})
            except (KeyError, TypeError, IndexError) as e:
                raise ActlabError(
                    f"dataset {spec.name!r}: cannot format row {i} ({type(e).__name__}: {e}); "
                    f"expected columns {', '.join(spec.columns)}"
                ) from e
        return out

    train = fmt(train_rows, f"{spec.name} train")
    val = fmt(val_rows, f"{spec.name} eval")
    meta = {
        "dataset": spec.name,
        "base": spec.base,
        "source": spec.source if rows is None else "rows",
        "hub_path": spec.hub_path,
        "hub_config": spec.hub_config,
        "splits": list(spec.splits),
        "task_type": spec.task_type,
        "labels": spec.labels,
        "max_choices": spec.num_labels or "free",
        "remap_dict": {str(i): w for i, w in enumerate(spec.labels)} if spec.remap and spec.labels else None,
        "max_new_tokens": spec.max_new_tokens,
        "stop_strings": list(spec.stop_strings),
        "eval_only": spec.eval_only,
        "seed": SEED,
        "num_train_samples": num_train_samples,
        "num_val_samples": num_val_samples,
        "num_train_examples": len(train),
        "num_val_examples": len(val),
        "query_length_chars": _stats([len(e["prompt"]) for e in train + val]),
        "answer_length_chars": _stats([len(e["answer"]) for e in train + val]),
        "train_fingerprint": fingerprint(train),
    }
    return {"metadata": meta, "train_examples": train, "val_examples": val}


def prepare(
    name: str,
    data_dir: str | Path = "data",
    num_train_samples: int = 2000,
    num_val_samples: int = 500,
    label_template: str | None = None,
    subset: str | None = None,
    rows: Any = None,
    force: bool = False,
) -> Path:
    """Write ``{data_dir}/{name}/main.json`` and return its path (an existing file is kept unless ``force``).

    Args:
        name: a registry name, ``X_remap``, or ``hmath`` (with ``subset``).
        label_template: ``"remap"`` writes ``{name}_remap`` with the remapped label words (single-token sets only).
        subset: the hendrycks_math subset for ``name="hmath"`` (default ``algebra``).
        rows: rows in the hub's column schema instead of loading: a list (used for every split the dataset reads)
            or ``{split: rows}``. Otherwise rows come from :func:`actlab.data.sources.load_rows` (the world or the hub).
    """
    spec = resolve(name, label_template, subset)
    out = pool_path(spec.name, data_dir)
    if out.exists() and not force:
        return out
    doc = build_pools(spec, num_train_samples, num_val_samples, rows=rows)
    atomic_write_json(out, doc)
    return out


def missing_pool_error(name: str, path: Path) -> ActlabError:
    return ActlabError(
        f"dataset {name!r} is not prepared: {path} does not exist; "
        f"create it with `actlab data prepare --dataset {name} --data_dir {path.parent.parent}`"
    )


def read_pool(name: str, data_dir: str | Path = "data") -> dict[str, Any]:
    """The whole ``main.json`` document of a prepared dataset."""
    path = pool_path(name, data_dir)
    if not path.exists():
        raise missing_pool_error(name, path)
    return read_json(path)


def load_pool(name: str, data_dir: str | Path = "data", split: str = "train") -> list[dict]:
    """The formatted examples of one pool: ``split`` is ``"train"`` or ``"val"`` (``"eval"`` is accepted)."""
    key = {"train": "train_examples", "val": "val_examples", "eval": "val_examples"}.get(split)
    if key is None:
        raise ActlabError(f"unknown pool split {split!r}; valid: eval, train, val")
    return read_pool(name, data_dir)[key]


# ------------------------------------------------------------------------------------------------ verb configs
@dataclass
class PrepareConfig:
    """``actlab data prepare``: load + format datasets and write ``{data_dir}/{name}/main.json`` (seed-42 shuffle)."""

    dataset: list[str] = field(metadata={"help": "dataset name(s); see `actlab data list`", "metavar": "NAME"})
    num_train_samples: int = field(default=2000, metadata={"help": "train pool size"})
    num_val_samples: int = field(default=500, metadata={"help": "eval pool size"})
    label_template: str = field(
        default="normal",
        metadata={
            "choices": ["normal", "remap"],
            "help": "remap: write label words (apple, Friday, ...) into {name}_remap",
        },
    )
    subset: str | None = field(
        default=None, metadata={"help": "hendrycks_math subset for --dataset hmath (default algebra)"}
    )
    data_dir: str = field(default="data", metadata={"help": "output root"})
    force: bool = field(default=False, metadata={"help": "rewrite existing files"})

    def __post_init__(self) -> None:
        if isinstance(self.dataset, str):
            self.dataset = [self.dataset]
        if not self.dataset:
            raise ActlabError("--dataset needs at least one dataset name; see `actlab data list`")
        for name in ("num_train_samples", "num_val_samples"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ActlabError(f"--{name} must be an integer >= 0, got {v!r}")
        if self.label_template not in ("normal", "remap"):
            raise ActlabError(f"--label_template {self.label_template!r} is not valid; valid: normal, remap")
        check_out_dir("--data_dir", self.data_dir)
        template = None if self.label_template == "normal" else self.label_template
        for n in self.dataset:  # every name checked before any work
            resolve(n, template, self.subset)


def run_prepare(cfg: PrepareConfig) -> list[dict[str, Any]]:
    """Prepare every dataset of ``cfg``; returns ``[{"name", "path", "skipped", "metadata"}]``."""
    template = None if cfg.label_template == "normal" else cfg.label_template
    out = []
    for name in cfg.dataset:
        spec = resolve(name, template, cfg.subset)
        existed = pool_path(spec.name, cfg.data_dir).exists()
        path = prepare(
            name, cfg.data_dir, cfg.num_train_samples, cfg.num_val_samples, template, cfg.subset, force=cfg.force
        )
        skipped = existed and not cfg.force
        out.append(
            {
                "name": spec.name,
                "path": path,
                "skipped": skipped,
                "metadata": None if skipped else read_json(path)["metadata"],
            }
        )
    return out


@dataclass
class DataListConfig:
    """``actlab data list``: the registered datasets (source, task type, labels, prepared or not)."""

    data_dir: str = field(default="data", metadata={"help": "where prepared datasets live"})

    def __post_init__(self) -> None:
        check_out_dir("--data_dir", self.data_dir)


def list_rows(cfg: DataListConfig | None = None) -> list[tuple[str, ...]]:
    """Rows ``(name, source, task, labels, prepared)`` of every registered dataset."""
    from actlab.data.registry import get_dataset, list_datasets

    cfg = cfg or DataListConfig()
    rows = [("name", "source", "task", "labels", "prepared")]
    for name in list_datasets():
        s = get_dataset(name)
        src = s.hub_path + (f" [{s.hub_config}]" if s.hub_config else "") if s.hub_path else "synthetic (zoo)"
        if not s.supported:
            src += " (not supported yet)"
        labels = ",".join(s.labels) if s.labels else "-"
        task = s.task_type + (" eval-only" if s.eval_only else "")
        rows.append((name, src, task, labels, "yes" if pool_path(name, cfg.data_dir).exists() else "-"))
    return rows
