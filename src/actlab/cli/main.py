"""``actlab`` — one CLI over the four families.

    actlab <family> <verb> [flags]

Each family module in :mod:`actlab.cli` has a ``FAMILY`` of verbs; each verb's flags come from its config
dataclass (:mod:`actlab.core.config`). Only the verb on the command line is built, so ``actlab --help`` stays fast.
Bad input (:class:`~actlab.core.errors.ActlabError` or an argparse error) prints one line and exits 2; any other
exception escaping a verb prints one line (what failed, where) and exits 1 (``ACTLAB_DEBUG=1``: the traceback).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import sys
import traceback

from actlab import __version__
from actlab.core.config import OneLineParser
from actlab.core.errors import ActlabError
from actlab.core.logs import setup_logging

# family name -> module with its FAMILY (plain code, no plugin registry)
FAMILIES = {
    "zoo": "actlab.cli.zoo",
    "data": "actlab.cli.data",
    "ia2": "actlab.cli.ia2",
    "iav": "actlab.cli.iav",
    "xmodel": "actlab.cli.xmodel",
    "icae": "actlab.cli.icae",
    "demo": "actlab.cli.demo",
}

__all__ = ["FAMILIES", "OneLineParser", "main", "make_parser", "setup_logging"]


def _path(argv: list[str]) -> list[str]:
    """The leading non-flag tokens: ``ia2 analyze subspace-overlap --x`` → ``[ia2, analyze, subspace-overlap]``."""
    out, i = [], 0
    while i < len(argv) and not out and argv[i].startswith("--log_level"):  # the one top-level option with a value
        i += 1 if "=" in argv[i] else 2
    for a in argv[i:]:
        if a.startswith("-"):
            break
        out.append(a)
    return out


def make_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser for ``argv`` (only the verb it names gets its flags; ``None``: every verb, for docs/tests)."""
    from actlab.cli.common import LOG_LEVELS, Verb, add_verb_arguments, family_parser

    path = None if argv is None else _path(argv)
    parser = OneLineParser(
        prog="actlab", description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"actlab {__version__}")
    parser.add_argument(
        "--log_level",
        choices=LOG_LEVELS,
        default=argparse.SUPPRESS,
        dest="_log_level",
        help="logging level of actlab's status lines on stderr (default: $ACTLAB_LOG_LEVEL or info)",
    )
    sub = parser.add_subparsers(dest="family", metavar="<family>", parser_class=OneLineParser)
    for name, module in FAMILIES.items():
        fam = importlib.import_module(module).FAMILY
        chosen = path is None or path[:1] == [name]
        if isinstance(fam, Verb):  # a family that is one verb (`actlab demo`)
            p = sub.add_parser(name, help=fam.help, description=fam.description or fam.help)
            p.set_defaults(_parser=p)
            if chosen:
                add_verb_arguments(p, fam)
        else:
            family_parser(sub, fam, None if path is None else path[1:] if chosen else [])
    return parser


def _where(exc: BaseException) -> str:
    """``file.py:LINE in func`` of the innermost frame in actlab's code (else the innermost frame)."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return "?"
    ours = [f for f in frames if f"{os.sep}actlab{os.sep}" in f.filename]
    f = (ours or frames)[-1]
    name = f.filename.split(f"{os.sep}actlab{os.sep}", 1)[-1] if ours else os.path.basename(f.filename)
    return f"{'actlab/' if ours else ''}{name}:{f.lineno} in {f.name}"


@contextlib.contextmanager
def _main_rank_speaks():
    """Under a launcher only rank 0 shows results (stdout) and status lines; the other ranks keep warnings and
    errors (on stderr), so a launch prints each result once."""
    if int(os.environ.get("WORLD_SIZE", "1") or 1) <= 1 or os.environ.get("RANK", "0") in ("", "0"):
        yield
        return
    logging.getLogger("actlab").setLevel(max(logging.getLogger("actlab").level, logging.WARNING))
    with open(os.devnull, "w") as null, contextlib.redirect_stdout(null):
        yield


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = make_parser(argv)
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        # `actlab` or `actlab ia2` alone: show the relevant help
        sub = getattr(args, "_parser", parser)
        sub.print_help()
        return 0 if args.family is None else 2
    what = " ".join(_path(argv)) or "actlab"
    try:
        setup_logging(getattr(args, "_log_level", None))
        with _main_rank_speaks():
            rc = func(args)
    except ActlabError as e:
        sys.stderr.write(f"actlab: error: {' '.join(str(e).split())}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("actlab: interrupted\n")
        return 130
    except BrokenPipeError:  # `actlab ... | head`
        return 141
    except Exception as e:  # noqa: BLE001 - the one place that turns a crash into one line
        if os.environ.get("ACTLAB_DEBUG", "") not in ("", "0"):
            traceback.print_exc()
        msg = " ".join(str(e).split())[:300]
        sys.stderr.write(
            f"actlab: {what} failed: {type(e).__name__}: {msg} (at {_where(e)}; ACTLAB_DEBUG=1 shows the traceback)\n"
        )
        return 1
    return int(rc or 0)


def entry() -> None:  # pragma: no cover
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
