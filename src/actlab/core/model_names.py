"""Model names that are neither a directory nor a hub id (the embedded zoo's ``tiny``, ...): a hook for the layer
that owns them.

``core`` knows no such name itself: a provider registers a :class:`NameSource` (``actlab`` registers the embedded zoo
when the package is imported, see ``actlab/__init__.py``), and :func:`actlab.core.models.resolve` asks the
registered sources before it treats a name as a path or a hub id. Registration costs nothing: a source imports its
own code only when a name is looked up. This module imports no torch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class NameSource:
    """A set of model names and how to turn one into a local directory.

    Args:
        kind: the source's name in :func:`actlab.core.models.resolve`'s result (``"zoo"``).
        names: the names it serves (called on each look-up, so a source may import lazily).
        resolve: name -> directory ``from_pretrained`` reads (it may build the model first).
        where: how a load error names the place (``"the zoo cache (rebuild: ...)"``).
    """

    kind: str
    names: Callable[[], Sequence[str]]
    resolve: Callable[[str], str]
    where: str


_SOURCES: dict[str, NameSource] = {}


def register(source: NameSource) -> None:
    """Add (or replace, by ``kind``) a name source."""
    _SOURCES[source.kind] = source


def lookup(name: str) -> NameSource | None:
    """The source that serves ``name``, or None."""
    for source in _SOURCES.values():
        if name in source.names():
            return source
    return None


def known_names() -> list[str]:
    """Every registered name, sorted (for error messages)."""
    return sorted({n for s in _SOURCES.values() for n in s.names()})


def where(kind: str) -> str | None:
    """The ``where`` text of source ``kind`` (None if not registered)."""
    source = _SOURCES.get(kind)
    return None if source is None else source.where
