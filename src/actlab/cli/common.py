"""The verb registry shared by the family CLI modules.

Each family module has ``FAMILY = Family(name, help, verbs=[Verb(...), ...])``. A :class:`Verb` names its config
dataclass (``"module:Class"``, imported only when that verb is parsed, so ``actlab --help`` stays fast) and a handler
``run(cfg) -> int`` that calls the verb's Python function and prints its result. The flags come from the dataclass
(:mod:`actlab.core.config`); no flag is written by hand here.

Only the verbs declared ``multiprocess=True`` run under ``accelerate launch`` / ``torchrun``: any other verb started
with ``WORLD_SIZE`` > 1 exits 2 with one line naming it (N copies of an evaluation or a data preparation would
write the same files N times), before it parses its config or writes anything.
"""

from __future__ import annotations

import argparse
import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field

from actlab.core.logs import LOG_LEVELS


@dataclass
class Verb:
    name: str
    help: str
    config: str = ""  # "module:Class"
    run: Callable | None = None  # handler(cfg) -> int
    api: str = ""  # "module:function": the verb as a Python function taking the config dataclass
    description: str = ""
    verbs: list[Verb] = field(default_factory=list)  # sub-verbs (``ia2 analyze <analysis>``)
    config_path: bool = True  # accept --config_path
    meta: dict = field(default_factory=dict)  # extra field metadata (help, aliases) for configs defined elsewhere
    check: Callable | str | None = None  # check(cfg) before run: input checks for configs defined elsewhere
    multiprocess: bool = False  # runs under accelerate launch / torchrun (WORLD_SIZE > 1); others are refused

    def config_class(self) -> type:
        mod, _, name = self.config.partition(":")
        obj = getattr(importlib.import_module(mod), name)
        return obj if isinstance(obj, type) else obj()  # a function that makes the class

    def schema(self):
        from actlab.core.config import Schema, schema

        return Schema(self.config_class(), self.meta) if self.meta else schema(self.config_class())

    def api_function(self) -> Callable:
        mod, _, name = (self.api or self.config).partition(":")
        return getattr(importlib.import_module(mod), name)


@dataclass
class Family:
    name: str
    help: str
    verbs: list[Verb] = field(default_factory=list)


def _resolve(obj) -> object:
    if isinstance(obj, str):
        mod, _, name = obj.partition(":")
        return getattr(importlib.import_module(mod), name)
    return obj


def add_verb_arguments(p: argparse.ArgumentParser, verb: Verb) -> None:
    """The flags of one verb, from its config dataclass, plus ``--config_path`` and ``--log_level``."""
    s = verb.schema()
    s.add_arguments(p)
    if verb.config_path:
        p.add_argument(
            "--config_path",
            default=None,
            metavar="FILE",
            help="YAML or JSON file of config keys; flags given explicitly win over it",
        )
    p.add_argument(
        "--log_level",
        choices=LOG_LEVELS,
        default=argparse.SUPPRESS,
        dest="_log_level",
        help="logging level of the status lines on stderr (default: $ACTLAB_LOG_LEVEL or info)",
    )
    p.set_defaults(func=_handler(verb, s, p.prog))


def multiprocess_verbs() -> list[str]:
    """The verbs that run under ``accelerate launch`` / ``torchrun`` (``multiprocess=True``)."""
    return [name for name, v in all_verbs() if v.multiprocess]


def check_one_process(verb: Verb, name: str) -> None:
    """Refuse a one-process verb launched on several processes (``WORLD_SIZE`` > 1): one line, exit 2."""
    if os.environ.get("WORLD_SIZE", "1") == "1":  # not launched: no torch import for a light verb
        return
    from actlab.core.distributed import launched_world
    from actlab.core.errors import ActlabError

    world = launched_world()
    if world > 1 and not verb.multiprocess:
        raise ActlabError(
            f"{name} runs in one process, but it was launched on {world} (WORLD_SIZE={world}); run "
            f"it without accelerate launch / torchrun (these verbs run on several processes: "
            f"{', '.join(multiprocess_verbs())})"
        )


def _handler(verb: Verb, s, prog: str = "") -> Callable:
    name = prog.removeprefix("actlab ") or verb.name

    def func(args: argparse.Namespace) -> int:
        from actlab.core.config import config_from_namespace

        check_one_process(verb, name)
        cfg = config_from_namespace(s, args)
        if verb.check is not None:
            _resolve(verb.check)(cfg)
        return int(_resolve(verb.run)(cfg) or 0)

    func.verb = verb  # type: ignore[attr-defined]
    return func


def add_verbs(sub, verbs: list[Verb], path: list[str] | None = None) -> None:
    """Add ``verbs`` to the subparsers ``sub``. With ``path`` (the verb names on the command line) only the chosen
    verb gets its flags (the others are listed with their help); without it every verb is built."""
    for verb in verbs:
        chosen = path is None or (path[:1] == [verb.name])
        p = sub.add_parser(verb.name, help=verb.help, description=verb.description or verb.help)
        p.set_defaults(_parser=p)
        if verb.verbs:
            inner = p.add_subparsers(dest=f"_{verb.name}_verb", metavar="<verb>", parser_class=type(p))
            if chosen:
                add_verbs(inner, verb.verbs, None if path is None else path[1:])
            else:
                for v in verb.verbs:
                    inner.add_parser(v.name, help=v.help)
        elif chosen:
            add_verb_arguments(p, verb)


def family_parser(sub, fam: Family, path: list[str] | None = None) -> argparse.ArgumentParser:
    """Add ``actlab <family>`` and its verbs; ``actlab <family>`` alone prints its help."""
    p = sub.add_parser(fam.name, help=fam.help, description=fam.help)
    p.set_defaults(_parser=p)
    verbs = p.add_subparsers(dest="verb", metavar="<verb>", parser_class=type(p))
    add_verbs(verbs, fam.verbs, path)
    return p


def all_verbs() -> list[tuple[str, Verb]]:
    """``[("ia2 train", Verb), ...]`` for every verb of every family (sub-verbs included)."""
    from actlab.cli.main import FAMILIES

    out = []

    def walk(prefix, verbs):
        for v in verbs:
            if v.verbs:
                walk(f"{prefix} {v.name}", v.verbs)
            else:
                out.append((f"{prefix} {v.name}".strip(), v))

    for name, mod in FAMILIES.items():
        fam = importlib.import_module(mod).FAMILY
        if isinstance(fam, Verb):
            out.append((name, fam))
        else:
            walk(name, fam.verbs)
    return out


def print_table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
