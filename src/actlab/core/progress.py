"""Progress bars: one place, so every long job looks the same (tqdm on stderr; silent with ACTLAB_QUIET=1)."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def quiet() -> bool:
    return os.environ.get("ACTLAB_QUIET", "") not in ("", "0")


def progress(iterable: Iterable[T] | None = None, *, total: int | None = None, desc: str = "", **kw) -> tqdm:
    """A tqdm bar (disabled under ``ACTLAB_QUIET=1``). Use as an iterable wrapper or with ``update()``."""
    return tqdm(iterable, total=total, desc=desc, disable=quiet(), dynamic_ncols=True, leave=False, **kw)


@contextlib.contextmanager
def bar_logging() -> Iterator[None]:
    """While a bar is shown, actlab's log lines on stderr are written above it (``tqdm.write``) instead of through
    it. Nothing changes when bars are off or actlab's loggers have no stderr handler (the Python API)."""
    ours = logging.getLogger("actlab")
    console = any(isinstance(h, logging.StreamHandler) and h.stream is sys.stderr for h in ours.handlers)
    if quiet() or not console:
        yield
        return
    from tqdm.contrib.logging import logging_redirect_tqdm

    with logging_redirect_tqdm(loggers=[ours], tqdm_class=tqdm):
        yield
