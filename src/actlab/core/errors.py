"""User-facing errors.

Anything the user can fix (a bad flag value, a missing file, an unknown name) raises :class:`ActlabError`.
The CLI prints its message as one line and exits with code 2, without a traceback. Library callers get an
ordinary exception (it subclasses ``ValueError``).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class ActlabError(ValueError):
    """A bad input that the user can fix. The message is one line: it names the bad value and the valid choices."""


def unknown_choice(kind: str, value: object, choices: Iterable[str], hint: str = "") -> ActlabError:
    """Build the standard 'unknown X' error, with a near-miss suggestion.

    >>> str(unknown_choice("dataset", "sst", ["sst2", "agnews"]))
    "unknown dataset 'sst' (did you mean 'sst2'?); valid: agnews, sst2"
    """
    choices = sorted(str(c) for c in choices)
    close = difflib.get_close_matches(str(value), choices, n=1)
    did = f" (did you mean {close[0]!r}?)" if close else ""
    msg = f"unknown {kind} {value!r}{did}; valid: {', '.join(choices)}"
    if hint:
        msg += f"; {hint}"
    return ActlabError(msg)


def check_choice(kind: str, value: str, choices: Iterable[str]) -> str:
    """Return ``value`` if it is one of ``choices``, else raise :func:`unknown_choice`."""
    choices = list(choices)
    if value not in choices:
        raise unknown_choice(kind, value, choices)
    return value
