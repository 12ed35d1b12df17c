"""Logging setup for actlab's entry points (the CLI and the worker processes it starts).

Library modules only do ``log = logging.getLogger(__name__)`` and ``log.info(...)`` / ``log.warning(...)``; they
never print. An entry point calls :func:`setup_logging` once: actlab's own loggers at ``level`` (or
``$ACTLAB_LOG_LEVEL``, default info) on stderr as bare lines, warnings and errors prefixed with their level;
third-party loggers stay at warning (everything at debug with ``debug``). Results go to stdout, printed by the CLI.
"""

from __future__ import annotations

import logging
import os
import sys

from actlab.core.errors import ActlabError

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


class BareFormatter(logging.Formatter):
    """actlab's status lines as bare messages; warnings and errors prefixed with their level (``warning: ...``)."""

    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage()
        if record.levelno >= logging.WARNING:
            return f"{record.levelname.lower()}: {msg}"
        return msg


def setup_logging(level: str | None = None) -> None:
    """actlab's own loggers at ``level`` or ``$ACTLAB_LOG_LEVEL`` (default info) on stderr, one bare line per record
    (warnings prefixed ``warning:``); third-party loggers at warning (all at debug with ``debug``)."""
    name = (level or os.environ.get("ACTLAB_LOG_LEVEL") or "info").upper()
    if name.lower() not in LOG_LEVELS:
        raise ActlabError(f"ACTLAB_LOG_LEVEL {name.lower()!r} is not a level; valid: {', '.join(LOG_LEVELS)}")
    logging.basicConfig(
        level="DEBUG" if name == "DEBUG" else "WARNING", format="%(levelname)s %(name)s: %(message)s", force=True
    )
    ours = logging.getLogger("actlab")
    for h in list(ours.handlers):
        ours.removeHandler(h)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(BareFormatter())
    ours.addHandler(handler)
    ours.setLevel(name)
    ours.propagate = False
