"""``actlab`` — one CLI over the four families.

    actlab <family> <verb> [flags]

Each family module in :mod:`actlab.cli` has ``register(subparsers)``, which adds its parser and sets
``func`` on each verb. Handlers import heavy modules lazily, so ``actlab --help`` stays fast.
Bad input (:class:`~actlab.core.errors.ActlabError` or an argparse error) prints one line and exits 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from actlab import __version__
from actlab.core.errors import ActlabError

# family name -> module that registers it (plain code, no plugin registry)
FAMILIES = {
    "zoo": "actlab.cli.zoo",
    "data": "actlab.cli.data",
    "ia2": "actlab.cli.ia2",
    "iav": "actlab.cli.iav",
    "xmodel": "actlab.cli.xmodel",
    "icae": "actlab.cli.icae",
    "demo": "actlab.cli.demo",
}


class OneLineParser(argparse.ArgumentParser):
    """argparse, but an error is one line (``actlab ia2 train: error: ...``) and exit code 2."""

    def error(self, message: str):  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        sys.exit(2)


def make_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="actlab", description=__doc__.split("\n\n")[0],
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"actlab {__version__}")
    sub = parser.add_subparsers(dest="family", metavar="<family>", parser_class=OneLineParser)
    for module in FAMILIES.values():
        importlib.import_module(module).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        # `actlab` or `actlab ia2` alone: show the relevant help
        sub = getattr(args, "_parser", parser)
        sub.print_help()
        return 0 if args.family is None else 2
    try:
        rc = func(args)
    except ActlabError as e:
        sys.stderr.write(f"actlab: error: {e}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("actlab: interrupted\n")
        return 130
    return int(rc or 0)


def entry() -> None:  # pragma: no cover
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
