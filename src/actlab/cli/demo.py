"""``actlab demo`` — the main job run by ``make demo``."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("demo", help="the main job: build the tiny model if missing and run the IA2 pipeline on it")
    p.set_defaults(func=run)


def run(args) -> int:
    from actlab.core.errors import ActlabError

    raise ActlabError("the demo is not implemented yet")
