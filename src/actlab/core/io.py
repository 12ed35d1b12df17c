"""Run directories and atomic writes.

Every command that writes results writes them into a *run directory*::

    run_dir/
      config.json      the run's config + ``_meta`` (package versions, git sha, time, command line)
      metrics.jsonl    one JSON object per logged step (slash-named keys, e.g. ``loss/act``)
      *.safetensors    weights and tensors (never pickles)
      COMPLETE         written last; a run with it is skipped on rerun

Files are written to a temp file in the same directory and renamed into place, so a kill never leaves a
half-written result behind.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import functools
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from actlab.core.errors import ActlabError

COMPLETE = "COMPLETE"
PACKAGES = ("actlab", "torch", "transformers", "peft", "trl", "accelerate", "datasets", "tokenizers", "safetensors")


# ----------------------------------------------------------------------------------------------------- atomic writes
@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path next to ``path``; on success rename it onto ``path``, on error delete it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def _json_default(o: Any) -> Any:
    if hasattr(o, "tolist"):
        return o.tolist()
    if hasattr(o, "item"):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, (set, frozenset)):
        return sorted(o)
    if hasattr(o, "__dataclass_fields__"):
        import dataclasses

        return dataclasses.asdict(o)
    return str(o)


def _clean(o: Any) -> Any:
    """Replace NaN/inf floats by None so the JSON stays standard."""
    if isinstance(o, float) and not math.isfinite(o):
        return None
    if isinstance(o, Mapping):
        return {k: _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    return o


def dumps(obj: Any, indent: int | None = 2) -> str:
    return json.dumps(_clean(obj), indent=indent, default=_json_default, ensure_ascii=False)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, dumps(obj) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file; a missing or corrupt file is an :class:`ActlabError` naming it."""
    path = Path(path)
    if not path.exists():
        raise ActlabError(f"file not found: {path}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ActlabError(f"corrupt JSON file {path} ({e.msg} at line {e.lineno}); delete it and rerun") from None


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    path = Path(path)
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut by a kill: skip it
    return rows


def atomic_write_jsonl(path: str | os.PathLike, rows: list[Mapping]) -> Path:
    return atomic_write_text(path, "".join(dumps(r, indent=None) + "\n" for r in rows))


# ------------------------------------------------------------------------------------------------------ safetensors
def save_tensors(path: str | os.PathLike, tensors: Mapping[str, Any], metadata: Mapping[str, str] | None = None) -> Path:
    """Save a dict of tensors as safetensors, atomically. Tensors are made contiguous and moved to CPU."""
    from safetensors.torch import save_file

    clean = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(clean, str(tmp), metadata={k: str(v) for k, v in (metadata or {}).items()})
    return Path(path)


def load_tensors(path: str | os.PathLike, device: str = "cpu") -> tuple[dict, dict]:
    """Load ``(tensors, metadata)`` from a safetensors file; a corrupt file is an :class:`ActlabError`."""
    from safetensors import safe_open

    path = Path(path)
    if not path.exists():
        raise ActlabError(f"file not found: {path}")
    try:
        with safe_open(str(path), framework="pt", device=device) as f:
            meta = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # safetensors raises several types for truncated/garbled files
        raise ActlabError(f"corrupt safetensors file {path} ({type(e).__name__}); delete it and rerun") from None
    return tensors, meta


# ------------------------------------------------------------------------------------------------ optimizer state
def optimizer_tensors(opt, prefix: str = "opt.") -> tuple[dict, str]:
    """An optimizer's ``state_dict()`` for a safetensors checkpoint: its tensors as ``{prefix}{i}.{name}`` (``i`` is
    the parameter's index across the param groups, as ``state_dict`` numbers them) and everything else (the param
    groups, non-tensor state) as a JSON string for the file's metadata. :func:`load_optimizer_tensors` restores it."""
    import torch

    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for i, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"{prefix}{i}.{k}"] = v
            else:
                scalars[f"{i}.{k}"] = v
    return tensors, json.dumps({"param_groups": sd["param_groups"], "scalars": scalars})


def load_optimizer_tensors(opt, tensors: Mapping[str, Any], meta: str | None = None, prefix: str = "opt.") -> None:
    """Restore what :func:`optimizer_tensors` wrote into ``opt`` (built over the same parameters in the same order).

    ``tensors`` may hold other keys (only ``prefix`` ones are read). Without ``meta`` the optimizer keeps its own
    param groups (its hyperparameters as constructed). ``load_state_dict`` moves the state to each parameter's device.
    """
    info = json.loads(meta) if meta else {}
    if isinstance(info, list):  # the format before session 3 (IA2): just the param groups
        info = {"param_groups": info}
    state: dict[int, dict] = {}
    for k, v in tensors.items():
        if k.startswith(prefix):
            i, name = k[len(prefix):].split(".", 1)
            state.setdefault(int(i), {})[name] = v
    for k, v in info.get("scalars", {}).items():
        i, name = k.split(".", 1)
        state.setdefault(int(i), {})[name] = v
    groups = info.get("param_groups") or opt.state_dict()["param_groups"]
    opt.load_state_dict({"state": state, "param_groups": groups})


# ------------------------------------------------------------------------------------------------ environment info
@functools.lru_cache(maxsize=1)
def git_sha() -> str | None:
    """The git commit of the actlab source tree, if it is a checkout (``-dirty`` if it has local changes)."""
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        if sha.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=5)
        return sha.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def package_versions(packages: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    out = {}
    for p in packages:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            out[p] = None
    return out


def env_info() -> dict[str, Any]:
    return {
        "versions": package_versions(),
        "git_sha": git_sha(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "argv": sys.argv,
    }


# ----------------------------------------------------------------------------------------------------- run dirs
class RunDir:
    """A directory holding one run's config, metrics, weights and results.

    >>> rd = RunDir(tmp_path / "run")                 # doctest: +SKIP
    >>> rd.write_config({"lr": 1e-4}); rd.log({"step": 1, "loss/train": 0.5}); rd.mark_complete()
    """

    def __init__(self, path: str | os.PathLike, wandb_log: bool = False, wandb_project: str = "actlab"):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self._wandb = None
        if wandb_log:
            self._wandb = _start_wandb(wandb_project, self.path)

    # files
    def __truediv__(self, name: str) -> Path:
        return self.path / name

    @property
    def config_path(self) -> Path:
        return self.path / "config.json"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    def write_config(self, config: Any) -> Path:
        """Write ``config.json`` = the config (a dataclass or mapping) + ``_meta`` (versions, git sha, time, argv)."""
        if hasattr(config, "__dataclass_fields__"):
            import dataclasses

            config = dataclasses.asdict(config)
        obj = dict(config)
        obj["_meta"] = env_info()
        if self._wandb is not None:
            self._wandb.config.update({k: v for k, v in obj.items() if k != "_meta"}, allow_val_change=True)
        return atomic_write_json(self.config_path, obj)

    def read_config(self) -> dict:
        return read_json(self.config_path)

    def log(self, row: Mapping[str, Any]) -> None:
        """Append one row to ``metrics.jsonl`` (flushed and fsynced; a line cut by a kill is skipped on read)."""
        with open(self.metrics_path, "a", encoding="utf-8") as f:
            f.write(dumps(dict(row), indent=None) + "\n")
            f.flush()
            os.fsync(f.fileno())
        if self._wandb is not None:
            step = row.get("step")
            self._wandb.log({k: v for k, v in row.items() if k != "step"}, step=step)

    def metrics(self) -> list[dict]:
        return read_jsonl(self.metrics_path)

    def reset_metrics(self, keep_until_step: int | None = None) -> None:
        """Drop logged rows (all, or those with ``step > keep_until_step``) — used when resuming from a checkpoint."""
        rows = [] if keep_until_step is None else [r for r in self.metrics() if r.get("step", 0) <= keep_until_step]
        atomic_write_jsonl(self.metrics_path, rows)

    def write_json(self, name: str, obj: Any) -> Path:
        return atomic_write_json(self.path / name, obj)

    def save_tensors(self, name: str, tensors: Mapping[str, Any], metadata: Mapping[str, str] | None = None) -> Path:
        return save_tensors(self.path / name, tensors, metadata)

    # completion
    def is_complete(self) -> bool:
        return (self.path / COMPLETE).exists()

    def mark_complete(self, summary: Mapping[str, Any] | None = None) -> None:
        atomic_write_json(self.path / COMPLETE, {"time": env_info()["time"], **(summary or {})})
        if self._wandb is not None:
            self._wandb.finish()
            self._wandb = None


def is_complete(path: str | os.PathLike) -> bool:
    return (Path(path) / COMPLETE).exists()


def _start_wandb(project: str, path: Path):
    try:
        import wandb  # noqa: PLC0415
    except ImportError:
        raise ActlabError("--wandb_log needs the wandb package: pip install 'actlab[wandb]'") from None
    return wandb.init(project=project, name=path.name, dir=str(path), reinit=True)


def actlab_home() -> Path:
    """``$ACTLAB_HOME`` (default ``~/.cache/actlab``): zoo models and caches live here."""
    return Path(os.environ.get("ACTLAB_HOME", Path.home() / ".cache" / "actlab")).expanduser()
