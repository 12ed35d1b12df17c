"""Where every family gets its dataset rows: the synthetic world (offline) or the Hugging Face hub, one error style.

    from actlab.data import load_rows, load_hub

* :func:`load_rows` ``(name, split, n, seed)``: a synthetic name of the registry (``syn_hh``, ``syn_passages``,
  ...; rows from :func:`actlab.data.world.synthetic_rows`) gives ``n`` deterministic rows of the world; a registry name with a hub
  source (``squad``, ``hh_rlhf``, ``agnews``, ...) or a hub id (``org/name``) gives the hub split's first ``n`` rows.
* :func:`load_hub` ``(path, config, split)``: the ``datasets.Dataset`` itself (or an ``IterableDataset`` with
  ``streaming=True``), for callers that index or stream it.

A hub failure (offline, unknown id, missing split or config) is one :class:`~actlab.core.errors.ActlabError` line::

    could not load <path> (config '<c>') split '<s>' from the hub[ for dataset '<name>']: <Type>: <first line>[; hint]

(``could not stream`` for a streamed set; :func:`hub_error` builds it for failures while iterating a stream).
"""

from __future__ import annotations

from typing import Any

from actlab.core.errors import ActlabError, unknown_choice
from actlab.data.registry import REGISTRY

#: datasets>=4 no longer runs loading scripts (financial_phrasebank, strategy-qa still have one): the hub's
#: automatic parquet export of the same set is read instead
PARQUET_REVISION = "refs/convert/parquet"


def hub_error(
    path: str,
    config: str | None,
    split: str,
    exc: BaseException,
    *,
    dataset: str | None = None,
    hint: str | None = None,
    verb: str = "load",
) -> ActlabError:
    """The one-line error for a hub set that could not be loaded (or streamed: ``verb="stream"``)."""
    text = str(exc).strip()
    first = text.splitlines()[0][:200] if text else ""
    cfg = f" (config {config!r})" if config else ""
    named = f" for dataset {dataset!r}" if dataset and dataset != path else ""
    msg = f"could not {verb} {path}{cfg} split {split!r} from the hub{named}: {type(exc).__name__}: {first}"
    return ActlabError(msg + (f"; {hint}" if hint else ""))


def load_hub(
    path: str,
    config: str | None = None,
    split: str = "train",
    *,
    streaming: bool = False,
    dataset: str | None = None,
    hint: str | None = None,
) -> Any:
    """``datasets.load_dataset(path, config, split=split)``; a failure raises :func:`hub_error`'s one line.

    A set that still ships a loading script is read from the hub's parquet export (:data:`PARQUET_REVISION`).
    ``dataset`` (the registry name) and ``hint`` (what the user can do instead) only go into the error message.
    """
    kw = {"streaming": True} if streaming else {}
    try:
        import datasets

        try:
            return datasets.load_dataset(path, config, split=split, **kw)
        except RuntimeError as e:
            if "scripts are no longer supported" not in str(e):
                raise
            return datasets.load_dataset(path, config, split=split, revision=PARQUET_REVISION, **kw)
    except Exception as e:  # noqa: BLE001 - network, auth, a renamed set or split: the user can fix these
        raise hub_error(
            path, config, split, e, dataset=dataset, hint=hint, verb="stream" if streaming else "load"
        ) from None


def is_synthetic(name: str) -> bool:
    """True for the names the synthetic world serves (the registry's ``source="synthetic"`` sets)."""
    spec = REGISTRY.get(name)
    return spec is not None and spec.source == "synthetic"


def load_rows(
    name: str,
    split: str = "train",
    n: int | None = None,
    seed: int = 0,
    *,
    config: str | None = None,
    hint: str | None = None,
) -> list[dict]:
    """Rows (dicts in the hub's column schema) of dataset ``name``, split ``split``.

    Args:
        name: a synthetic name (``n`` rows drawn for ``seed``; ``n`` is required), a registry name with a hub source
            (its ``hub_path`` / ``hub_config``), or a hub id ``org/name`` (with ``config``).
        n: how many rows; for hub sets the first ``n`` in the split's order (None: all of them).
        seed: the synthetic draw's seed (hub rows are not shuffled).
        hint: appended to a hub failure's message (what to use offline).
    """
    if is_synthetic(name):
        if n is None:
            raise ActlabError(f"synthetic dataset {name!r} needs a row count n")
        from actlab.data.world import synthetic_rows

        return synthetic_rows(name, split, n, seed)
    spec = REGISTRY.get(name)
    if spec is not None and spec.hub_path:
        path, config, dataset = spec.hub_path, spec.hub_config, name
    elif spec is None and name.count("/") == 1:
        path, dataset = name, None
    else:
        known = [k for k, s in REGISTRY.items() if s.hub_path or s.source == "synthetic"]
        raise unknown_choice("dataset", name, known, hint="or a hub id org/name")
    ds = load_hub(path, config, split, dataset=dataset, hint=hint)
    return list(ds.select(range(min(n, len(ds))))) if n is not None else list(ds)
