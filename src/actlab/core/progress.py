"""Progress bars: one place, so every long job looks the same (tqdm on stderr; silent with ACTLAB_QUIET=1)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def quiet() -> bool:
    return os.environ.get("ACTLAB_QUIET", "") not in ("", "0")


def progress(iterable: Iterable[T] | None = None, *, total: int | None = None, desc: str = "", **kw) -> tqdm:
    """A tqdm bar (disabled under ``ACTLAB_QUIET=1``). Use as an iterable wrapper or with ``update()``."""
    return tqdm(iterable, total=total, desc=desc, disable=quiet(), dynamic_ncols=True, leave=False, **kw)
