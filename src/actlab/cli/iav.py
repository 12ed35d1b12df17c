"""``actlab iav`` — not implemented yet."""

from __future__ import annotations

from actlab.cli.common import family_parser


def register(sub) -> None:
    family_parser(sub, "iav", "(iav: not implemented yet)")
