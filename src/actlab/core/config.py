"""One schema per verb: a config dataclass gives the CLI flags, the ``--config_path`` file keys, the defaults and
the Python API.

The flags are made by transformers' :class:`~transformers.HfArgumentParser` from the dataclass fields (``help``,
``aliases`` and ``choices`` in the field metadata; ``bool`` fields take ``--flag``, ``--flag false`` and, when they
default to true, ``--no_flag``). actlab adds:

* **precedence**: dataclass defaults < ``--config_path`` file (YAML or JSON) < flags given on the command line.
  Defaults are written once, in the dataclass; the parser keeps none of its own.
* **one coercion**: a file value is turned back into flag tokens and parsed by the same argparse actions as the
  command line, so YAML ``lr: 1e-3`` (a string for PyYAML) becomes the float and ``lora_r: abc`` is the same clean
  error as ``--lora_r abc``. Then the dataclass ``__post_init__`` validates ranges (an :class:`ActlabError`).
* **nesting**: a field whose type is a dataclass (IAV's ``loss``) contributes its own fields as flat flags; in a
  file they may be flat or under the field's name (or its ``file_key``, e.g. ``loss_config:``).
* extra field metadata: ``cli: False`` (not a flag, ignored in files), ``positional: True``, ``sep: ","`` (a list
  flag that also splits on commas), ``no_aliases`` (more spellings of ``--no_flag``).

:func:`config_from_dict` and :func:`load_config` give the Python API the file path's rules.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import difflib
import math
import sys
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from actlab.core.errors import ActlabError

_OWN_META = ("cli", "positional", "sep", "no_aliases", "file_key", "argtype", "flag")


class OneLineParser(argparse.ArgumentParser):
    """argparse, but an error is one line (``actlab ia2 train: error: ...``) and exit code 2, and ``-1e-3`` is a
    negative number (argparse alone reads it as an option)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        import re

        self._negative_number_matcher = re.compile(r"^-(?:\d+|\d*\.\d+)(?:[eE][-+]?\d+)?$|^-(?:inf|nan)$")

    def error(self, message: str):  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {' '.join(message.split())}\n")
        sys.exit(2)


class _FileParseError(Exception):
    pass


class _RaisingParser(OneLineParser):
    """The parser that coerces config-file values: an error raises, so it can name the file."""

    def error(self, message: str):  # type: ignore[override]
        raise _FileParseError(" ".join(message.split()))


# --------------------------------------------------------------------------------------------------- the schema
def _hints(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _strip_optional(t):
    origin = typing.get_origin(t)
    if origin is typing.Union or isinstance(t, types.UnionType):
        args = [a for a in typing.get_args(t) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
        return t, True
    return t, False


def _is_list(t) -> bool:
    return typing.get_origin(t) in (list, tuple)


def _type_name(t) -> str:
    t, _ = _strip_optional(t)
    if _is_list(t):
        return f"a list of {_type_name(typing.get_args(t)[0])}" if typing.get_args(t) else "a list"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(
        t, getattr(t, "__name__", str(t))
    )


def _default(f: dataclasses.Field):
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def _fmt_default(v) -> str:
    if isinstance(v, (list, tuple)):
        return " ".join(str(x) for x in v) if v else "[]"
    return str(v)


@dataclasses.dataclass
class Leaf:
    name: str  # the flag / dest name
    path: tuple[str, ...]  # nested dataclass fields leading to it
    field: dataclasses.Field
    type: Any
    optional: bool
    required: bool


class Schema:
    """The flattened fields of one config dataclass (nested dataclass fields flattened into their leaves)."""

    def __init__(self, cls: type, meta: Mapping[str, Mapping] | None = None):
        if not dataclasses.is_dataclass(cls):
            raise TypeError(f"{cls!r} is not a dataclass")
        self.cls = cls
        #: extra field metadata by leaf name (help, aliases, ... for dataclasses defined elsewhere)
        self.meta = {**getattr(cls, "CLI_META", {}), **(meta or {})}
        self.leaves: dict[str, Leaf] = {}
        self.nested: dict[tuple[str, ...], type] = {(): cls}
        self.nested_default: dict[tuple[str, ...], Any] = {}  # a nested field's default instance (its factory's)
        self.file_keys: dict[str, tuple[str, ...]] = {}  # mapping keys in files (loss_config:) -> nested path
        self.ignored: set[str] = set(getattr(cls, "CONFIG_FILE_IGNORE", ()))
        self._default_cache: dict[tuple[str, ...], Any] = {}
        self._file_parser: argparse.ArgumentParser | None = None
        self._walk(cls, ())

    def _walk(self, cls, path):
        hints = _hints(cls)
        for f in dataclasses.fields(cls):
            if not f.init:
                continue
            t = hints[f.name]
            if {**f.metadata, **self.meta.get(f.name, {})}.get("cli", True) is False:
                self.ignored.add(f.name)
                continue
            inner, optional = _strip_optional(t)
            if dataclasses.is_dataclass(inner):
                sub = (*path, f.name)
                self.nested[sub] = inner
                if f.default_factory is not dataclasses.MISSING and f.default_factory is not inner:
                    self.nested_default[sub] = f.default_factory
                self.file_keys[f.name] = sub
                if f.metadata.get("file_key"):
                    self.file_keys[f.metadata["file_key"]] = sub
                self._walk(inner, sub)
                continue
            if f.name in self.leaves:
                raise TypeError(f"{self.cls.__name__}: two fields named {f.name!r}")
            required = _default(f) is dataclasses.MISSING
            self.leaves[f.name] = Leaf(f.name, path, f, t, optional, required)

    # -- argparse ---------------------------------------------------------------------------------------------
    def add_arguments(self, parser: argparse.ArgumentParser, *, help_defaults: bool = True) -> None:
        """Add one flag per leaf (via HfArgumentParser's field → argument rules). Defaults are SUPPRESSed: the
        namespace holds only what was given, so a file value is overridden only by an explicit flag."""
        from transformers.hf_argparser import HfArgumentParser

        for leaf in self.leaves.values():
            meta = {**leaf.field.metadata, **self.meta.get(leaf.name, {})}
            if leaf.name == "overwrite" and "force" not in self.leaves:  # the old spelling of --overwrite
                meta["aliases"] = [*meta.get("aliases", []), "--force"]
            own = {k: meta.pop(k) for k in _OWN_META if k in meta}
            default = self.default(leaf)
            help_ = meta.get("help", "")
            if help_defaults and default is not dataclasses.MISSING and default is not None and default != []:
                help_ = (
                    f"{help_} (default: {_fmt_default(default)})" if help_ else f"(default: {_fmt_default(default)})"
                )
            meta["help"] = help_.replace("%", "%%")
            if own.get("positional"):
                kw = {k: v for k, v in meta.items() if k in ("help", "choices", "metavar")}
                base, _ = _strip_optional(leaf.type)
                parser.add_argument(
                    leaf.name,
                    type=base if base in (int, float) else str,
                    nargs=None if leaf.required else "?",
                    default=argparse.SUPPRESS,
                    **kw,
                )
                continue
            if own.get("flag"):  # a plain store_true switch (no optional value that could eat a positional)
                parser.add_argument(
                    f"--{leaf.name}",
                    *meta.get("aliases", []),
                    action="store_true",
                    default=argparse.SUPPRESS,
                    help=meta["help"],
                )
                continue
            f2 = copy.copy(leaf.field)
            f2.metadata = types.MappingProxyType(meta)
            f2.type = leaf.type
            base, optional = _strip_optional(leaf.type)
            if typing.get_origin(base) is tuple:  # argparse gives a list; the dataclass may convert it back
                f2.type = list[typing.get_args(base)[0]] | None if optional else list[typing.get_args(base)[0]]
            before = len(parser._actions)
            HfArgumentParser._parse_dataclass_field(parser, f2)
            new = parser._actions[before:]
            sep = own.get("sep")
            for a in new:
                a.required = False
                a.default = argparse.SUPPRESS
                if own.get("argtype") and a.type is not None:
                    a.type = own["argtype"]
                if sep and a.nargs == "+" and callable(a.type):
                    elem = a.type
                    a.type = _split_type(elem, sep)
                    a.metavar = a.metavar or leaf.name.upper()
            for alias in own.get("no_aliases", ()):
                parser.add_argument(
                    alias, action="store_false", dest=leaf.name, default=argparse.SUPPRESS, help=f"= --no_{leaf.name}"
                )

    def default(self, leaf: Leaf):
        """A leaf's default: its field's, or the value in the enclosing field's default instance."""
        for i in range(len(leaf.path), 0, -1):
            if leaf.path[:i] in self.nested_default:
                if leaf.path[:i] not in self._default_cache:
                    self._default_cache[leaf.path[:i]] = self.nested_default[leaf.path[:i]]()
                obj = self._default_cache[leaf.path[:i]]
                for name in leaf.path[i:]:
                    obj = getattr(obj, name)
                return getattr(obj, leaf.name)
        return _default(leaf.field)

    def parser_for_files(self) -> argparse.ArgumentParser:
        if self._file_parser is None:
            p = _RaisingParser(prog="config", add_help=False, allow_abbrev=False)
            self.add_arguments(p, help_defaults=False)
            self._file_parser = p
        return self._file_parser

    # -- values -----------------------------------------------------------------------------------------------
    def explicit(self, ns: argparse.Namespace) -> dict[str, Any]:
        out = {}
        for name in self.leaves:
            if hasattr(ns, name):
                v = getattr(ns, name)
                if isinstance(v, list) and any(isinstance(x, list) for x in v):  # a list flag split on commas
                    v = [x for part in v for x in (part if isinstance(part, list) else [part])]
                out[name] = v
        return out

    def build(self, values: Mapping[str, Any]):
        """The config from flat leaf values; a missing required field is one line."""
        for name, leaf in self.leaves.items():
            if leaf.required and name not in values:
                positional = leaf.field.metadata.get("positional")
                raise ActlabError(
                    f"{name} is required" if positional else f"--{name} is required (or a --config_path that sets it)"
                )
        return self._build((), values)

    def _build(self, path, values):
        cls = self.nested[path]
        kw = {}
        for f in dataclasses.fields(cls):
            if not f.init:
                continue
            sub = (*path, f.name)
            if sub in self.nested:
                kw[f.name] = self._build(sub, values)
                continue
            if f.name in values and f.name in self.leaves and self.leaves[f.name].path == path:
                kw[f.name] = values[f.name]
        if path in self.nested_default:  # the outer config's own default for this part, updated by the values
            return dataclasses.replace(self.nested_default[path](), **kw)
        return cls(**kw)

    # -- files / dicts ----------------------------------------------------------------------------------------
    def coerce_mapping(self, data: Mapping[str, Any], source: str) -> dict[str, Any]:
        """File / dict values → flat leaf values, coerced by the flags' own argparse actions."""
        flat: dict[str, Any] = {}
        self._flatten(data, source, flat, prefix="")
        out: dict[str, Any] = {}
        tokens: list[str] = []
        for key, v in flat.items():
            leaf = self.leaves[key]
            if v is None:
                if not leaf.optional:
                    raise ActlabError(f"{source}: {key}: null is not allowed; expected {_type_name(leaf.type)}")
                out[key] = None
                continue
            base, _ = _strip_optional(leaf.type)
            if isinstance(v, Mapping):
                raise ActlabError(f"{source}: {key}: expected {_type_name(leaf.type)}, got a mapping")
            if _is_list(base):
                items = list(v) if isinstance(v, (list, tuple)) else [v]
                if not items:
                    out[key] = []
                    continue
                if any(isinstance(x, (Mapping, list, tuple)) for x in items):
                    raise ActlabError(f"{source}: {key}: expected {_type_name(leaf.type)}, got {v!r}")
                tokens += [f"--{key}", *(_token(x) for x in items)]
            else:
                if isinstance(v, (list, tuple)):
                    raise ActlabError(f"{source}: {key}: expected {_type_name(leaf.type)}, got a list {v!r}")
                if base is bool and not isinstance(v, bool):
                    raise ActlabError(f"{source}: {key}: expected true or false, got {v!r}")
                if base is bool and {**leaf.field.metadata, **self.meta.get(key, {})}.get("flag"):
                    out[key] = v
                    continue
                if base in (int, float) and isinstance(v, (bool, str)):
                    raise ActlabError(
                        f"{source}: {key}: expected {_type_name(base)}, got {v!r}"
                        + (" (a string)" if isinstance(v, str) else "")
                    )
                if base is str and not isinstance(v, str):
                    raise ActlabError(f"{source}: {key}: expected a string, got {v!r}")
                if {**leaf.field.metadata, **self.meta.get(key, {})}.get("positional"):
                    out[key] = _coerce_scalar(base, v, source, key)
                    continue
                tokens.append(f"--{key}={_token(v)}")
        if tokens:
            parser = self.parser_for_files()
            try:
                ns = parser.parse_args(tokens)
            except _FileParseError as e:
                raise ActlabError(f"{source}: {e}") from None
            out.update(self.explicit(ns))
        return out

    def _flatten(self, data, source, flat, prefix):
        if not isinstance(data, Mapping):
            raise ActlabError(f"{source}: expected a mapping of config keys to values, got {type(data).__name__}")
        for k, v in data.items():
            k = str(k)
            if k in self.ignored or k.startswith("_"):
                continue
            if k in self.file_keys and k not in self.leaves:
                if v is None:
                    continue
                if not isinstance(v, Mapping):
                    valid = ", ".join(sorted(n for n, lf in self.leaves.items() if lf.path == self.file_keys[k]))
                    raise ActlabError(f"{source}: {prefix}{k} must be a mapping of {valid}; got {v!r}")
                self._flatten(v, source, flat, prefix=f"{prefix}{k}.")
                continue
            if k not in self.leaves:
                choices = sorted(self.leaves)
                close = difflib.get_close_matches(k, choices, n=1)
                did = f" (did you mean {close[0]!r}?)" if close else ""
                raise ActlabError(f"{source}: unknown key {prefix}{k!r}{did}; valid keys: {', '.join(choices)}")
            flat[k] = v


def _token(x) -> str:
    if isinstance(x, bool):
        return "true" if x else "false"
    return str(x)


def _coerce_scalar(base, v, source, key):
    try:
        return base(v) if base in (int, float, str) else v
    except (TypeError, ValueError):
        raise ActlabError(f"{source}: {key}: expected {_type_name(base)}, got {v!r}") from None


def _split_type(elem: Callable, sep: str) -> Callable:
    def parse(s: str):
        return [elem(x.strip()) for x in s.split(sep) if x.strip()]

    parse.__name__ = getattr(elem, "__name__", "value")
    return parse


_SCHEMAS: dict[type, Schema] = {}


def schema(cls: type | Schema) -> Schema:
    """The (cached) schema of a config dataclass."""
    if isinstance(cls, Schema):
        return cls
    if cls not in _SCHEMAS:
        _SCHEMAS[cls] = Schema(cls)
    return _SCHEMAS[cls]


# ------------------------------------------------------------------------------------------------------ files
def read_utf8(option: str, path: str | Path, expected: str = "a file") -> str:
    """The text of an input file: it exists, is a file and is UTF-8, else one line naming ``option`` and the path."""
    p = Path(path)
    if not p.exists():
        raise ActlabError(f"{option} {p} does not exist")
    if not p.is_file():
        raise ActlabError(f"{option} {p} is a directory, expected {expected}")
    raw = p.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ActlabError(f"{option} {p}: not UTF-8 text (byte {raw[e.start]:#04x} at offset {e.start})") from None


def read_config_file(path: str | Path, option: str = "--config_path") -> dict[str, Any]:
    """A YAML or JSON mapping; a missing file, a directory, non-UTF-8 bytes or a bad parse is one line."""
    p = Path(path)
    if not p.exists():
        raise ActlabError(f"{option} {p}: config file not found")
    text = read_utf8(option, p, "a YAML or JSON file")
    if p.suffix == ".json":
        import json

        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ActlabError(f"{option} {p}: not valid JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
    else:
        import yaml

        try:
            data = yaml.load(text, Loader=_yaml_loader())  # noqa: S506 - a SafeLoader subclass
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark is not None else ""
            raise ActlabError(
                f"{option} {p}: not valid YAML ({getattr(e, 'problem', None) or 'parse error'}{where})"
            ) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ActlabError(f"{option} {p}: expected a mapping of config keys to values, got {type(data).__name__}")
    return data


def _yaml_loader():
    """PyYAML's SafeLoader, plus YAML 1.2 floats: ``1e-3`` is a float (YAML 1.1 wants ``1.0e-3``)."""
    import re

    import yaml

    global _LOADER
    if _LOADER is None:

        class Loader(yaml.SafeLoader):
            pass

        Loader.add_implicit_resolver(
            "tag:yaml.org,2002:float",
            re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
            list("-+0123456789"),
        )
        _LOADER = Loader
    return _LOADER


_LOADER = None


def config_from_dict(cls: type | Schema, data: Mapping[str, Any], source: str = "config"):
    """Build ``cls`` from a mapping with the file rules (coercion by the flags' parser, unknown keys rejected)."""
    s = schema(cls)
    return s.build(s.coerce_mapping(data, source))


def load_config(cls: type | Schema, path: str | Path | None = None, **overrides: Any):
    """``cls`` from a YAML/JSON file (if any), then ``overrides`` (keyword values win; ``None`` means not given)."""
    s = schema(cls)
    values = s.coerce_mapping(read_config_file(path), str(path)) if path is not None else {}
    given = {k: v for k, v in overrides.items() if v is not None}
    values.update(s.coerce_mapping(given, "overrides"))
    return s.build(values)


def config_from_namespace(cls: type | Schema, ns: argparse.Namespace, check_inputs: bool = True):
    """The CLI path: defaults < ``ns.config_path`` file < the flags present in ``ns``, then ``check_given`` and (unless
    ``check_inputs`` is false) the config's input-file checks."""
    s = schema(cls)
    path = getattr(ns, "config_path", None)
    values = s.coerce_mapping(read_config_file(path), str(path)) if path else {}
    explicit = s.explicit(ns)
    given = set(explicit) | {k for k, v in values.items() if v != s.default(s.leaves[k])}
    values.update(explicit)
    cfg = s.build(values)
    check = getattr(cfg, "check_given", None)
    if callable(check):
        check(given)
    check = getattr(cfg, "check_inputs", None)  # files and directories, before the verb writes anything
    if check_inputs and callable(check):
        check()
    return cfg


# ------------------------------------------------------------------------------------------------ value checks
def nonneg_int(s: str) -> int:
    """An argparse type (``metadata={"argtype": nonneg_int}``): an integer >= 0, else an argparse error."""
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, got {s!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, got {s!r}")
    return v


def check_positive(name: str, v, *, integer: bool = False, allow_zero: bool = False, finite: bool = True) -> None:
    """``name`` must be a (finite) number > 0 (>= 0 with ``allow_zero``); one-line :class:`ActlabError` if not."""
    if integer:
        ok = isinstance(v, int) and not isinstance(v, bool) and (v >= 0 if allow_zero else v > 0)
        if not ok:
            raise ActlabError(
                f"--{name} must be {'an integer >= 0' if allow_zero else 'a positive integer'}, got {v!r}"
            )
        return
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and (not finite or math.isfinite(v))
    if not ok or not (v >= 0 if allow_zero else v > 0):
        what = "a finite number" if finite else "a number"
        raise ActlabError(f"--{name} must be {what} {'>= 0' if allow_zero else '> 0'}, got {v!r}")


def check_range(name: str, v, lo: float, hi: float, *, lo_open: bool = False, hi_open: bool = True) -> None:
    """``name`` in ``[lo, hi)`` (brackets per ``lo_open`` / ``hi_open``)."""
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    ok = ok and (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)
    if not ok:
        raise ActlabError(
            f"--{name} must be in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}, got {v!r}"
        )


def check_device(name: str, device: str | None) -> None:
    """``cpu``, ``cuda``, ``cuda:N``, ``mps`` (or None = best available); a bad or absent device is one line."""
    if device is None:
        return
    import re

    if not re.fullmatch(r"cpu|mps|cuda(:\d+)?", str(device)):
        raise ActlabError(
            f"--{name} {device!r} is not a device; valid: cpu, cuda, cuda:N, mps (default: best available)"
        )
    if str(device).startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ActlabError(f"--{name} {device}: CUDA is not available on this machine; valid here: cpu")
        idx = int(device.split(":")[1]) if ":" in device else 0
        if idx >= torch.cuda.device_count():
            raise ActlabError(
                f"--{name} {device}: only {torch.cuda.device_count()} CUDA device(s); valid: "
                f"cuda:0..cuda:{torch.cuda.device_count() - 1}"
            )
    if device == "mps":
        import torch

        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise ActlabError(f"--{name} mps: MPS is not available on this machine; valid here: cpu")


def check_dtype(
    name: str, dtype: str | None, valid=("auto", "float32", "fp32", "bfloat16", "bf16", "float16", "fp16")
) -> None:
    if dtype is not None and dtype not in valid:
        raise ActlabError(f"--{name} {dtype!r} is not a dtype; valid: {', '.join(valid)}")


def given_fields(cfg, names) -> list[str]:
    """Which of ``names`` differ from their dataclass default (options set by the user)."""
    out = []
    for f in dataclasses.fields(cfg):
        if f.name in names and getattr(cfg, f.name) != _default(f):
            out.append(f.name)
    return out


def check_out_dir(option: str, path: str | Path | None) -> None:
    """An output directory: it may not exist yet, but neither it nor a parent may be a file."""
    if path is None:
        return
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise ActlabError(f"--{option.lstrip('-')} {p} is a file, expected a directory")
    for parent in p.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ActlabError(f"--{option.lstrip('-')} {p}: {parent} is a file, expected a directory")
            break


def check_safetensors(option: str, path: str | Path) -> list[str]:
    """A readable safetensors file (header and size consistent); returns its tensor names."""
    p = Path(path)
    opt = f"--{option.lstrip('-')}"
    if not p.exists():
        raise ActlabError(f"{opt} {p} does not exist")
    if not p.is_file():
        raise ActlabError(f"{opt} {p} is a directory, expected a .safetensors file")
    import json
    import struct

    size = p.stat().st_size
    try:
        with open(p, "rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            if n <= 0 or 8 + n > size:
                raise ValueError("header longer than the file")
            header = json.loads(fh.read(n))
        end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0)
        if 8 + n + end > size:
            raise ValueError(f"tensor data ends at byte {8 + n + end} but the file has {size}")
    except (struct.error, ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
        raise ActlabError(
            f"{opt} {p} is not a readable safetensors file (truncated or corrupt: {' '.join(str(e).split())[:120]})"
        ) from None
    return [k for k in header if k != "__metadata__"]


def check_records(option: str, path: str | Path, required: tuple[str, ...] = ()) -> int:
    """A JSON (list of objects, or ``{split: [...]}``) or JSONL input file, read strictly: UTF-8, every line a JSON
    object (a truncated last line is an error, not a skipped row), ``required`` keys in every record. Returns the
    number of records."""
    import json

    p = Path(path)
    opt = f"--{option.lstrip('-')}"
    if p.is_dir():
        return -1  # a directory (e.g. datasets.save_to_disk): checked by its reader
    text = read_utf8(opt, p)
    records: list = []
    if p.suffix.lower() == ".jsonl":
        for i, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise ActlabError(f"{opt} {p}: line {i} is not valid JSON ({e.msg}; a truncated file?)") from None
            if not isinstance(rec, dict):
                raise ActlabError(f"{opt} {p}: line {i} is a {type(rec).__name__}, expected a JSON object")
            records.append(rec)
    elif p.suffix.lower() == ".json":
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as e:
            raise ActlabError(f"{opt} {p}: not valid JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
        if isinstance(doc, dict) and all(isinstance(v, list) for v in doc.values()) and doc:
            records = [r for v in doc.values() for r in v]
        elif isinstance(doc, list):
            records = doc
        else:
            raise ActlabError(
                f"{opt} {p}: expected a list of records (or {{split: [records]}}), got {type(doc).__name__}"
            )
        bad = next((i for i, r in enumerate(records) if not isinstance(r, dict)), None)
        if bad is not None:
            raise ActlabError(f"{opt} {p}: record {bad} is a {type(records[bad]).__name__}, expected an object")
    else:
        return -1  # parquet / csv: read by datasets
    if not records:
        raise ActlabError(f"{opt} {p} has no records")
    for i, r in enumerate(records):
        missing = [k for k in required if k not in r]
        if missing:
            raise ActlabError(
                f"{opt} {p}: record {i} lacks {', '.join(missing)} (has: {', '.join(sorted(r))}); "
                f"needed: {', '.join(required)}"
            )
    return len(records)


def check_model(option: str, name: str | None) -> None:
    """A model given as a local directory: it must hold config.json and readable safetensors weights (a zoo name
    or a hub id is left to the loader)."""
    if name is None:
        return
    p = Path(str(name)).expanduser()
    if not p.exists():
        if str(name).startswith((".", "/", "~")):
            raise ActlabError(f"--{option} {name}: no such directory")
        return
    if not p.is_dir():
        raise ActlabError(
            f"--{option} {p} is a file; give a model directory (save_pretrained), a zoo name or a hub id"
        )
    if not (p / "config.json").is_file():
        raise ActlabError(f"--{option} {p} has no config.json: not a model directory (save_pretrained)")
    for f in sorted(p.glob("*.safetensors")):
        check_safetensors(option, f)


def check_json_doc(what: str, path: str | Path, keys: tuple[str, ...] = ()) -> None:
    """An existing JSON input document (a prepared pool, a run file): a UTF-8 file holding a JSON object with
    ``keys``. A missing file is left to the reader (it says how to make it)."""
    import json

    p = Path(path)
    if not p.exists():
        return
    text = read_utf8(what, p, "a JSON file")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise ActlabError(
            f"{what} {p}: not valid JSON ({e.msg} at line {e.lineno}; a truncated file?); delete it and recreate it"
        ) from None
    if not isinstance(doc, dict):
        raise ActlabError(f"{what} {p}: expected a JSON object with {', '.join(keys)}, got {type(doc).__name__}")
    missing = [k for k in keys if k not in doc]
    if missing:
        raise ActlabError(
            f"{what} {p} lacks {', '.join(missing)} (has: {', '.join(sorted(doc))}); not a file "
            f"written by actlab? recreate it"
        )
