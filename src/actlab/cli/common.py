"""Helpers shared by the family CLI modules."""

from __future__ import annotations

import argparse


def family_parser(sub, name: str, help: str) -> argparse._SubParsersAction:
    """Add ``actlab <name>`` and return its verb subparsers. ``actlab <name>`` alone prints its help."""
    p = sub.add_parser(name, help=help, description=help)
    p.set_defaults(_parser=p)
    return p.add_subparsers(dest="verb", metavar="<verb>", parser_class=type(p))


def positive_int(s: str) -> int:
    v = int(s)
    if v <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {s!r}")
    return v
