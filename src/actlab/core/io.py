"""Run directories and atomic writes.

Every command that writes results writes them into a *run directory*::

    run_dir/
      config.json      the run's config + ``_meta`` (package versions, git sha, time, command line)
      metrics.jsonl    one JSON object per logged step (slash-named keys, e.g. ``loss/act``)
      *.safetensors    weights and tensors (never pickles)
      COMPLETE         written last; a run with it is skipped on rerun (if its recorded config is the same)
      .lock            held (``flock``) by the one process writing the run; holds its pid and host
      tensorboard/     event files, with ``report_to=["tensorboard"]`` (see :func:`check_report_to`)

Files are written to a temp file in the same directory and renamed into place, so a kill never leaves a
half-written result behind; they get the mode a plain ``open`` would give (``0666 & ~umask``, 0644 by default).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import functools
import hashlib
import json
import math
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import weakref
from collections.abc import Iterable, Iterator, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from actlab.core.errors import ActlabError

COMPLETE = "COMPLETE"
LOCK_FILE = ".lock"
PACKAGES = ("actlab", "torch", "transformers", "peft", "trl", "accelerate", "datasets", "tokenizers", "safetensors")


class RunDirBusy(ActlabError):
    """Another live process holds the run directory's lock."""


class ConfigMismatch(ActlabError):
    """A run directory holds a (finished or started) run of another config."""


# ----------------------------------------------------------------------------------------------------- atomic writes
def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode a plain ``open(path, "w")`` gives a new file: ``0o666 & ~umask`` (0644 under the usual umask 022)."""
    return 0o666 & ~_umask()


def umask_modes(paths: Iterable[str | os.PathLike]) -> None:
    """Give files written by another library (``save_pretrained``: safetensors creates them 0600) the umask mode."""
    mode = file_mode()
    for p in paths:
        if Path(p).is_file() and not Path(p).is_symlink():
            os.chmod(p, mode)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path next to ``path``; on success rename it onto ``path``, on error delete it.

    The temp file gets the user's umask mode (``mkstemp`` alone would give 0600).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, file_mode())
    finally:
        os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        if tmp.exists():
            os.chmod(tmp, file_mode())  # the writer may have re-created it (safetensors writes 0600)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def save_figure(fig, path: str | os.PathLike, dpi: int = 110) -> Path:
    """Write a matplotlib figure as PNG atomically (parent directories made; the figure is closed)."""
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    plt.close(fig)
    return path


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
def save_tensors(
    path: str | os.PathLike, tensors: Mapping[str, Any], metadata: Mapping[str, str] | None = None
) -> Path:
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
    if isinstance(info, list):  # the format before 2026-11-22 (IA2): just the param groups
        info = {"param_groups": info}
    state: dict[int, dict] = {}
    for k, v in tensors.items():
        if k.startswith(prefix):
            i, name = k[len(prefix) :].split(".", 1)
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
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=5,
        )
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


# ------------------------------------------------------------------------------------------------ config fingerprints
def config_dict(config: Any) -> dict:
    """A config (dataclass, mapping) as a flat JSON-able dict: nested mappings/dataclasses become dotted keys
    (``loss.beta``), tuples lists, paths strings; keys starting with ``_`` (``_meta``) are dropped."""
    if hasattr(config, "__dataclass_fields__"):
        import dataclasses

        config = dataclasses.asdict(config)
    plain = json.loads(dumps(dict(config), indent=None))
    out: dict[str, Any] = {}

    def walk(prefix: str, obj: Mapping) -> None:
        for k, v in obj.items():
            if str(k).startswith("_"):
                continue
            key = f"{prefix}{k}"
            if isinstance(v, Mapping):
                walk(key + ".", v)
            else:
                out[key] = v

    walk("", plain)
    return out


def _kept(d: Mapping, exclude: Iterable[str]) -> dict:
    ex = set(exclude)
    return {k: v for k, v in d.items() if k not in ex and k.split(".", 1)[0] not in ex}


def config_fingerprint(config: Any, exclude: Iterable[str] = ()) -> str:
    """sha256 (16 hex digits) of a config's fields that change results: ``exclude`` names the others (output paths,
    logging cadence, ...; a name also excludes its dotted sub-fields). Equal configs give equal fingerprints."""
    kept = _kept(config_dict(config), exclude)
    return hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest()[:16]


def diff_configs(old: Any, new: Any, exclude: Iterable[str] = (), defaults: Mapping | None = None) -> list[str]:
    """The fields of ``new`` whose value differs in ``old``, as ``"lr: 0.001 -> 0.01"`` lines (empty: same config).

    Fields in ``exclude`` are ignored. A field ``old`` does not record (a run written before the field existed)
    counts as its value in ``defaults`` (e.g. the dataclass defaults), so adding an option does not make every older
    run differ. Fields only ``old`` has are ignored.
    """
    a, b = config_dict(old), _kept(config_dict(new), exclude)
    dflt = config_dict(defaults) if defaults is not None else {}
    out = []
    for k, v in b.items():
        if k in a:
            if a[k] != v:
                out.append(f"{k}: {a[k]!r} -> {v!r}")
        elif not (k in dflt and dflt[k] == v):
            out.append(f"{k}: (not recorded) -> {v!r}")
    return out


def dataclass_defaults(cls) -> dict:
    """``{field: default}`` of a dataclass (fields without a default left out)."""
    import dataclasses

    out = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return out


# ----------------------------------------------------------------------------------------------------- locks
class DirLock:
    """An exclusive ``fcntl.flock`` on ``<dir>/.lock``, held while the object lives (or until :meth:`release`).

    The kernel drops a ``flock`` when its holder dies (also on SIGKILL), so a lock left by a dead process is simply
    taken over; the file itself only records who holds it (pid, host, time) for the error message. One process
    taking the same directory twice shares one lock. Works on local Linux/macOS filesystems (on NFS, Linux emulates
    ``flock`` with POSIX locks on the server).
    """

    _held: weakref.WeakValueDictionary = weakref.WeakValueDictionary()

    def __init__(self, fd: int, path: Path):
        self.fd: int | None = fd
        self.path = path
        self.users = 1
        self.pid = os.getpid()

    @classmethod
    def acquire(
        cls,
        directory: str | os.PathLike,
        *,
        blocking: bool = False,
        what: str = "run directory",
        on_wait=None,
        lock_file: str | os.PathLike | None = None,
    ) -> DirLock:
        """Take the lock of ``directory`` (created if missing; the lock file is ``lock_file`` or ``<dir>/.lock``);
        busy → :class:`RunDirBusy` naming the holder, or with ``blocking`` wait for it (``on_wait(holder)`` is called
        once first)."""
        import fcntl

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        lf = Path(lock_file) if lock_file is not None else d / LOCK_FILE
        key = str(lf.resolve())
        held = cls._held.get(key)
        if held is not None and held.fd is not None:
            held.users += 1
            return held
        while True:
            fd = os.open(lf, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _lock_text(lf)
                if not blocking:
                    os.close(fd)
                    target = d if lock_file is None else lf.with_suffix("")
                    raise RunDirBusy(
                        f"{what} {target} is in use by {holder} (lock file {lf}); wait for it to end or "
                        "stop it, or use another output directory"
                    ) from None
                if on_wait is not None:
                    on_wait(holder)
                fcntl.flock(fd, fcntl.LOCK_EX)
            try:  # the file may have been deleted and re-created while we waited: lock the one at the path
                same = os.fstat(fd).st_ino == os.stat(lf).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on host {socket.gethostname()} since {env_info()['time']}\n".encode())
        lock = cls(fd, lf)
        cls._held[key] = lock
        return lock

    def release(self) -> None:
        """One user lets go; the lock is dropped when the last one does."""
        self.users -= 1
        if self.users <= 0:
            self._unlock()

    def _unlock(self) -> None:
        if self.fd is not None:
            import fcntl

            fd, self.fd = self.fd, None
            try:
                if os.getpid() == self.pid:  # a forked child shares the lock: closing its copy must not drop it
                    fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)

    def __del__(self):  # the lock goes with its last user
        with contextlib.suppress(Exception):
            self._unlock()


def _lock_text(lf: Path) -> str:
    try:
        text = lf.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        text = ""
    return text or "another process"


def lock_holder(directory: str | os.PathLike) -> str | None:
    """Who holds ``directory``'s lock (``"pid N on host H since T"``), or None if nobody does (or this process)."""
    import fcntl

    d = Path(directory)
    lf = d / LOCK_FILE
    if not lf.exists():
        return None
    held = DirLock._held.get(str(lf.resolve()))
    if held is not None and held.fd is not None:
        return None
    try:
        fd = os.open(lf, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return None
    except BlockingIOError:
        return _lock_text(lf)
    finally:
        os.close(fd)  # closing drops our shared lock, if we got it


# ----------------------------------------------------------------------------------------------------- run dirs
def run_state(
    path: str | os.PathLike,
    config: Any = None,
    *,
    exclude: Iterable[str] = (),
    defaults: Mapping | None = None,
    overwrite: bool = False,
    progress: Iterable[str] = (),
) -> str:
    """What opening run directory ``path`` for ``config`` will do, without writing anything:

    * ``"done"`` — complete, and its recorded config has the same fingerprint: skip it;
    * ``"resume"`` — started with the same config (a file named in ``progress``, e.g. a checkpoint, exists);
    * ``"fresh"`` — nothing there yet (or only the config/metrics of a run that saved no progress);
    * ``"redo"`` — complete or started with another config, and ``overwrite``: it is cleared and run again.

    A complete or started run with another config and no ``overwrite`` raises :class:`ConfigMismatch` listing the
    fields that differ. ``config=None`` skips the comparison (complete → done).
    """
    p = Path(path)
    complete = (p / COMPLETE).exists()
    started = complete or any((p / x).exists() for x in progress)
    if config is None:
        return "done" if complete else "resume" if started else "fresh"
    cp = p / "config.json"
    if not cp.exists():
        diff = ["config.json: missing"] if started else []
    else:
        try:
            diff = diff_configs(read_json(cp), config, exclude, defaults)
        except ActlabError:
            diff = ["config.json: unreadable"]
    if not diff:
        return "done" if complete else "resume" if started else "fresh"
    if not started:
        return "fresh"
    if overwrite:
        return "redo"
    shown = "; ".join(diff[:8]) + (f"; and {len(diff) - 8} more" if len(diff) > 8 else "")
    raise ConfigMismatch(
        f"{p} holds a {'finished' if complete else 'started'} run with another config ({shown}); "
        "use --overwrite to redo it, or another output directory"
    )


class RunDir:
    """A directory holding one run's config, metrics, weights and results, owned by one process.

    Opening it takes its lock (:class:`DirLock`; a directory another live process holds is a one-line
    :class:`RunDirBusy`) and removes temp files a killed writer left behind. The lock is released by :meth:`close`
    (or ``with RunDir(...)``) or when the object is garbage collected. ``lock=False`` opens it without (read-only use).

    >>> with RunDir(tmp_path / "run") as rd:                # doctest: +SKIP
    ...     if rd.begin(cfg, exclude=("output_dir",)) == "done": ...
    ...     rd.log({"step": 1, "loss/train": 0.5}); rd.mark_complete()
    """

    def __init__(
        self,
        path: str | os.PathLike,
        wandb_log: bool = False,
        wandb_project: str = "actlab",
        lock: bool = True,
        report_to: Iterable[str] | str | None = None,
    ):
        self.path = Path(path)
        #: the experiment trackers every :meth:`log` row also goes to (``wandb_log`` = ``report_to=["wandb"]``);
        #: checked (packages installed) before anything is written, started on the first config or row
        self.report_to = check_report_to(report_to, wandb=wandb_log, installed=True)
        self.wandb_project = wandb_project
        if self.path.exists() and not self.path.is_dir():
            raise ActlabError(f"output directory {self.path} is a file; give a directory")
        self.path.mkdir(parents=True, exist_ok=True)
        self._lock = DirLock.acquire(self.path) if lock else None
        if self._lock is not None:
            self._remove_temp_files()
        self._trackers: list | None = None  # started lazily (a run found done writes nothing)

    # ownership
    def close(self) -> None:
        """Release the lock (and finish the trackers' runs left open)."""
        self.finish_trackers()
        if self._lock is not None:
            lock, self._lock = self._lock, None
            lock.release()

    def __del__(self):
        lock, self._lock = getattr(self, "_lock", None), None
        if lock is not None:
            lock.release()

    def __enter__(self) -> RunDir:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _remove_temp_files(self) -> None:
        """Temp files of atomic writes (``.name.XXXX.tmp``) that a killed process left, here and one level down."""
        for pat in (".*.tmp", "*/.*.tmp"):
            for t in self.path.glob(pat):
                if t.is_dir():
                    shutil.rmtree(t, ignore_errors=True)
                else:
                    t.unlink(missing_ok=True)

    def clear(self) -> None:
        """Delete everything in the directory except its lock (to redo the run)."""
        for p in self.path.iterdir():
            if p.name == LOCK_FILE:
                continue
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()

    def begin(
        self,
        config: Any,
        *,
        exclude: Iterable[str] = (),
        defaults: Mapping | None = None,
        overwrite: bool = False,
        progress: Iterable[str] = (),
        extra: Mapping | None = None,
    ) -> str:
        """Start (or resume) the run of ``config``: :func:`run_state` under the lock, then act on it — ``"done"``:
        nothing written; ``"redo"``: the directory is cleared first; else ``config.json`` is (re)written with
        ``extra`` keys and the config's fingerprint. Returns the state. ``config.json`` records every field;
        ``exclude`` names those that do not change results (they never make a run differ)."""
        state = run_state(
            self.path, config, exclude=exclude, defaults=defaults, overwrite=overwrite, progress=progress
        )
        if state == "done":
            return state
        if state == "redo":
            self.clear()
        elif state == "fresh":
            for p in progress:  # e.g. a checkpoint of a config that no longer applies
                q = self.path / p
                if q.is_dir():
                    shutil.rmtree(q)
                else:
                    q.unlink(missing_ok=True)
            self.metrics_path.unlink(missing_ok=True)
        if hasattr(config, "__dataclass_fields__"):
            import dataclasses

            config = dataclasses.asdict(config)
        self.write_config({**config, **(extra or {}), "_fingerprint": config_fingerprint(config, exclude)})
        return state

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
        out = atomic_write_json(self.config_path, obj)
        if self.report_to:
            self._start_trackers(obj)
        return out

    def read_config(self) -> dict:
        return read_json(self.config_path)

    def log(self, row: Mapping[str, Any]) -> None:
        """Append one row to ``metrics.jsonl`` (flushed and fsynced; a line cut by a kill is skipped on read)."""
        new = not self.metrics_path.exists()
        with open(self.metrics_path, "a", encoding="utf-8") as f:
            f.write(dumps(dict(row), indent=None) + "\n")
            f.flush()
            os.fsync(f.fileno())
        if new:
            os.chmod(self.metrics_path, file_mode())
        if self.report_to:
            values = tracked_values(row)
            step = row.get("step")
            for t in self._start_trackers():
                t.log(values, step=int(step) if isinstance(step, (int, float)) else None)

    # experiment trackers
    def _start_trackers(self, config: Mapping | None = None) -> list:
        """The trackers of :attr:`report_to` (accelerate's), started on the first call — on the main process
        only (``RANK`` 0 or unset): the other ranks report nothing. ``config`` is stored as the run's
        hyperparameters when they start."""
        if self._trackers is None:
            self._trackers = []
            if not is_main_process():
                return self._trackers
            from accelerate import PartialState

            PartialState()  # accelerate's trackers log through its process-aware logger, which needs the state
            for name in self.report_to:
                t = _make_tracker(name, self.path, self.wandb_project)
                t.main_process_only = False  # the main process was chosen above
                t.start()
                self._trackers.append(t)
            if config is not None:
                hp = tracker_hparams(config)
                for t in self._trackers:
                    t.store_init_configuration(hp)
        return self._trackers

    def finish_trackers(self) -> None:
        """End the trackers' runs (flush event files, close the W&B / MLflow run); later rows start new ones."""
        trackers, self._trackers = getattr(self, "_trackers", None), None
        for t in trackers or ():
            t.finish()

    def metrics(self) -> list[dict]:
        return read_jsonl(self.metrics_path)

    def reset_metrics(self, keep_until_step: int | None = None) -> None:
        """Drop logged rows (all, or those with ``step > keep_until_step``) — called when a run starts or resumes
        from a checkpoint of step ``keep_until_step``, so each step is in ``metrics.jsonl`` exactly once."""
        if keep_until_step is None or keep_until_step <= 0:
            self.metrics_path.unlink(missing_ok=True)
            return
        atomic_write_jsonl(self.metrics_path, [r for r in self.metrics() if r.get("step", 0) <= keep_until_step])

    def write_json(self, name: str, obj: Any) -> Path:
        return atomic_write_json(self.path / name, obj)

    def save_tensors(self, name: str, tensors: Mapping[str, Any], metadata: Mapping[str, str] | None = None) -> Path:
        return save_tensors(self.path / name, tensors, metadata)

    # completion
    def is_complete(self) -> bool:
        return (self.path / COMPLETE).exists()

    def mark_complete(self, summary: Mapping[str, Any] | None = None) -> None:
        atomic_write_json(self.path / COMPLETE, {"time": env_info()["time"], **(summary or {})})
        self.finish_trackers()


def is_complete(path: str | os.PathLike) -> bool:
    return (Path(path) / COMPLETE).exists()


# ----------------------------------------------------------------------------------------------- experiment trackers
#: ``--report_to`` choices (as in transformers' ``TrainingArguments.report_to``) and the package each one needs
TRACKERS = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow"}
REPORT_TO_CHOICES = ("none", *TRACKERS)


def check_report_to(
    value: Iterable[str] | str | None, *, wandb: bool = False, installed: bool = False, option: str = "report_to"
) -> list[str]:
    """``--report_to`` as a list of tracker names (``none`` / empty: no tracker; ``wandb``: also the old
    ``--wandb_log`` switch). A name outside :data:`REPORT_TO_CHOICES` is a one-line :class:`ActlabError`; with
    ``installed``, so is a tracker whose package is missing (naming the ``pip install 'actlab[...]'`` extra)."""
    if value is None:
        value = []
    elif isinstance(value, str):
        value = [value]
    names: list[str] = []
    for v in value:
        for n in str(v).split(","):
            n = n.strip().lower()
            if not n:
                continue
            if n not in REPORT_TO_CHOICES:
                raise ActlabError(f"--{option}: unknown tracker {n!r}; valid choices: {', '.join(REPORT_TO_CHOICES)}")
            if n != "none" and n not in names:
                names.append(n)
    given = list(names)
    if wandb and "wandb" not in names:
        names.append("wandb")
    if installed:
        for n in names:
            try:
                __import__(TRACKERS[n])
            except ImportError:
                flag = "--wandb_log" if n == "wandb" and wandb and n not in given else f"--{option} {n}"
                raise ActlabError(f"{flag} needs the {TRACKERS[n]} package: pip install 'actlab[{n}]'") from None
    return names


def report_to_field():
    """The ``report_to`` field of a trainer's config (``--report_to tensorboard wandb``, or comma-separated)."""
    import dataclasses

    return dataclasses.field(
        default=("none",),
        metadata={  # a plain default: schemas built from it copy it
            "sep": ",",
            "metavar": "TRACKER",
            "help": "experiment trackers that also get every metrics.jsonl row: " + ", ".join(REPORT_TO_CHOICES),
        },
    )


def is_main_process() -> bool:
    """Rank 0 of a ``torchrun`` / ``accelerate launch`` job (or a plain single process)."""
    return int(os.environ.get("RANK", "0") or 0) == 0


def tracked_values(row: Mapping[str, Any]) -> dict[str, float]:
    """The numeric fields of a ``metrics.jsonl`` row, by the same names (``step`` is the tracker's step; strings,
    None and NaN are left out)."""
    out = {}
    for k, v in row.items():
        if k == "step" or isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        if isinstance(v, float) and not math.isfinite(v):
            continue
        out[k] = v
    return out


def tracker_hparams(config: Mapping) -> dict[str, Any]:
    """A recorded config as tracker hyperparameters: flat dotted keys, values bool/int/float/str (others as JSON)."""
    out = {}
    for k, v in config_dict({k: v for k, v in config.items() if not str(k).startswith("_")}).items():
        out[k] = v if isinstance(v, (bool, int, float, str)) else json.dumps(v)
    return out


def _make_tracker(name: str, path: Path, project: str):
    from accelerate import tracking

    if name == "tensorboard":
        return tracking.TensorBoardTracker("tensorboard", str(path))
    if name == "wandb":  # the run's files under $WANDB_DIR if set, else in the run directory
        wdir = os.environ.get("WANDB_DIR") or str(path)  # read per run (wandb reads its env once per process)
        return tracking.WandBTracker(project, name=path.name, dir=wdir, reinit=True)
    if name == "mlflow":  # MLflow's own store: $MLFLOW_TRACKING_URI, else its default
        return tracking.MLflowTracker(project, run_name=path.name)
    raise ActlabError(f"unknown tracker {name!r}")


def actlab_home() -> Path:
    """``$ACTLAB_HOME`` (default ``~/.cache/actlab``): zoo models and caches live here."""
    return Path(os.environ.get("ACTLAB_HOME", Path.home() / ".cache" / "actlab")).expanduser()
