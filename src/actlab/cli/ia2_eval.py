"""IA2 evaluation verbs (evaluate, plot, plot-all, analyze, demo), added to ``actlab ia2`` by ``cli/ia2.py``."""

from __future__ import annotations


def add_verbs(verbs) -> None:
    """Add the evaluation verbs to the ``actlab ia2`` subparsers (filled in by the IA2 evaluation work)."""
    return None
