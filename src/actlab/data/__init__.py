"""Datasets: the registry (hub sources, prompt formats, label sets, parsers), the rows of every dataset (the
synthetic world offline, the hub otherwise), pool preparation and run files.

    from actlab.data import get_dataset, load_rows, load_hub, prepare, make_train, load_run, load_pool

See docs/data.md for the registry table and the file layout.
"""

from actlab.data.make_train import load_run, make_train, train_path
from actlab.data.parsers import parse_answer_gsm8k, parse_boxed, parse_hash
from actlab.data.prepare import load_pool, pool_path, prepare, read_pool
from actlab.data.registry import DatasetSpec, build_icl_prompt, get_dataset, list_datasets, remap_words
from actlab.data.sources import hub_error, load_hub, load_rows

__all__ = [
    "DatasetSpec",
    "build_icl_prompt",
    "get_dataset",
    "hub_error",
    "list_datasets",
    "load_hub",
    "load_pool",
    "load_rows",
    "load_run",
    "make_train",
    "parse_answer_gsm8k",
    "parse_boxed",
    "parse_hash",
    "pool_path",
    "prepare",
    "read_pool",
    "remap_words",
    "train_path",
]
