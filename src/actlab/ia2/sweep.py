"""``actlab ia2 sweep``: a grid of IA2 train runs in worker processes (upstream ``train_all_unified.py``).

Grid = methods × datasets × N × lrs × run indices, and per method only the axes it uses: ce weights (tna),
label types (tok/a2t/t2a), LoRA types/ranks/alphas (LoRA), IA3 types (IA3), virtual tokens (prompt/prefix).

* Each run is ``python -m actlab.ia2.sweep '<config json>'`` in its own process; ``max_parallel`` at a time, worker
  slot i gets GPU ``i % n_gpus`` (``CUDA_VISIBLE_DEVICES``) when GPUs exist, else ``cpu_count // max_parallel``
  threads. Its output goes to ``{output_dir}/sweep_logs/{method}/{dataset}/{name}.log``.
* Complete runs of the same config are skipped; a complete or started run whose recorded config differs is reported
  (status ``differs``, with the fields) unless ``overwrite``; a run another process holds is reported (status
  ``busy``, with its pid) and never gets a second worker; a failing run is reported and the others go on.
* Workers die with the sweep: on Linux each one asks the kernel for SIGKILL when its parent dies
  (``prctl(PR_SET_PDEATHSIG)``, also after a ``kill -9`` of the sweep); on any exit of the sweep (error, Ctrl-C,
  SIGTERM) the running workers are terminated.
* ``include_sequential`` adds ``a2t``/``t2a`` for each adapter family of the methods (and their parents ``act`` and
  ``tok`` if missing). Every a2t/t2a run waits for its parent when the parent is in the grid; a parent neither in the
  grid nor trained on disk is reported before anything starts (status ``blocked``). ``sequential_first`` puts every
  non-sequential run ahead of every sequential one.
* At the end a summary table is written to ``{output_dir}/sweep_summary.json`` (``actlab ia2 sweep`` prints it,
  :func:`format_summary`); the progress lines are logged at info.
* ``launcher="slurm"`` submits the runs to train through submitit instead of the local pool (see docs/scale.md):
  the runs without a parent to train as one job array, each a2t/t2a group as an array with an ``afterok`` dependency
  on its parent's job; a preempted or timed-out job is requeued (submitit's ``checkpoint``) and the run resumes from
  its run directory's checkpoint. Skip-done and the other statuses above decide what is submitted at all. On
  submitit's local executor (``slurm_cluster="local"``, no cluster) the sweep waits for a parent's job to finish
  before it submits the children, since that executor has no dependencies.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from actlab.core.errors import ActlabError
from actlab.core.io import ConfigMismatch, atomic_write_json, is_complete, lock_holder, read_json
from actlab.core.lazy import callable_module
from actlab.core.progress import bar_logging, progress
from actlab.ia2 import naming
from actlab.ia2.config import SEQUENTIAL, IA2TrainConfig, join_method, split_method

AXES_ALL = ("dataset", "num_train_examples", "lr", "run_idx")
AXES_FAMILY = {
    "lora": ("lora_type", "lora_r", "lora_alpha"),
    "ia3": ("ia3_type",),
    "prompt": ("num_virtual_tokens",),
    "prefix": ("num_virtual_tokens",),
}
LAUNCHERS = ("local", "slurm")
SLURM_CLUSTERS = ("auto", "slurm", "local", "debug")
ALL_AXES = {*AXES_ALL, *(a for axes in AXES_FAMILY.values() for a in axes), "ce_loss_weight"}

log = logging.getLogger(__name__)


@dataclass
class SweepConfig:
    """training_methods, include_sequential, sequential_first, max_parallel, label_types, dry_run, and ``base``:
    IA2TrainConfig fields, where the grid axes (dataset, num_train_examples, lr, run_idx, ce_loss_weight,
    lora_type, lora_r, lora_alpha, ia3_type, num_virtual_tokens) may be lists."""

    training_methods: list[str]
    include_sequential: bool = False
    sequential_first: bool = False
    max_parallel: int = 1
    label_types: list[str] = field(default_factory=lambda: ["icl_outputs"])
    dry_run: bool = False
    launcher: str = "local"
    slurm_partition: str | None = None
    slurm_time: int = 60
    slurm_gpus_per_node: int = 1
    slurm_cluster: str = "auto"
    base: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.max_parallel < 1:
            raise ActlabError(f"--max_parallel must be >= 1, got {self.max_parallel}")
        if self.launcher not in LAUNCHERS:
            raise ActlabError(f"--launcher {self.launcher!r} is not valid; valid: {', '.join(LAUNCHERS)}")
        if self.slurm_cluster not in SLURM_CLUSTERS:
            raise ActlabError(
                f"--slurm_cluster {self.slurm_cluster!r} is not valid; valid: {', '.join(SLURM_CLUSTERS)}"
            )
        if self.slurm_time < 1:
            raise ActlabError(f"--slurm_time must be >= 1 (minutes), got {self.slurm_time}")
        if self.slurm_gpus_per_node < 0:
            raise ActlabError(f"--slurm_gpus_per_node must be >= 0, got {self.slurm_gpus_per_node}")
        if self.launcher == "slurm":
            try:
                import submitit  # noqa: F401
            except ImportError:
                raise ActlabError("--launcher slurm needs submitit: pip install 'actlab[slurm]'") from None
        for m in self.training_methods:
            split_method(m)


def _as_list(v) -> list:
    return list(v) if isinstance(v, (list, tuple)) else [v]


def expand_methods(cfg: SweepConfig) -> list[str]:
    methods = list(dict.fromkeys(cfg.training_methods))
    if cfg.include_sequential:
        fams = list(dict.fromkeys(split_method(m)[0] for m in methods))
        for fam in fams:
            for obj in ("act", "tok", "a2t", "t2a"):
                m = join_method(fam, obj)
                if m not in methods:
                    methods.append(m)
    return methods


def build_grid(cfg: SweepConfig) -> list[IA2TrainConfig]:
    """Every run's config (duplicates removed); a bad value is an :class:`ActlabError` before anything runs."""
    out, seen = [], set()
    for m in expand_methods(cfg):
        fam, obj = split_method(m)
        axes = list(AXES_ALL) + list(AXES_FAMILY[fam]) + (["ce_loss_weight"] if obj == "tna" else [])
        values = [_as_list(cfg.base.get(a, getattr(IA2TrainConfig, a, None))) for a in axes]
        labels = cfg.label_types if obj in ("tok", "a2t", "t2a") else [None]
        for combo in itertools.product(*values, labels):
            # an axis of another family (ia3_type for a LoRA run, ce_loss_weight for a non-tna run) is left at its
            # default: the run's recorded config then equals the one `ia2 train` records (a finished run is skipped)
            kw = {k: v for k, v in cfg.base.items() if k not in axes and k not in ALL_AXES}
            kw.update(dict(zip(axes, combo[:-1], strict=True)))
            kw["label_type"] = combo[-1] if obj != "tna" else (cfg.base.get("label_type") or None)
            kw.pop("family", None)
            kw.pop("objective", None)
            c = IA2TrainConfig(training_method=m, **kw)
            key = naming.run_dir(c)
            if key not in seen:
                seen.add(key)
                out.append(c)
    return out


def check_data(grid: list[IA2TrainConfig]) -> None:
    from actlab.data import get_dataset, train_path

    for c in grid:
        get_dataset(c.dataset)
        p = train_path(c.dataset, c.num_train_examples, c.run_idx, c.data_dir)
        if not p.exists():
            raise ActlabError(
                f"no run file {p} for dataset {c.dataset!r}; create it with `actlab data make-train "
                f"--datasets {c.dataset} --num_train_examples {c.num_train_examples} --num_runs "
                f"{c.run_idx + 1} --data_dir {c.data_dir}`"
            )


def _gpu_count() -> int:
    try:
        import torch

        return torch.cuda.device_count()
    except Exception:  # noqa: BLE001
        return 0


def _log_path(c: IA2TrainConfig) -> Path:
    return Path(c.output_dir) / "sweep_logs" / c.training_method / c.dataset / f"{naming.run_name(c)}.log"


def _last_line(path: Path) -> str:
    try:
        lines = [x for x in path.read_text(errors="replace").splitlines() if x.strip()]
    except OSError:
        return ""
    errs = [x for x in lines if "error" in x.lower()]
    return (errs or lines or [""])[-1][:200]


def sweep(cfg: SweepConfig) -> list[dict]:
    """Run the grid; returns one row per run: method, dataset, name, status, seconds, best_dev_loss, error."""
    grid = build_grid(cfg)
    check_data(grid)
    key = {id(c): str(naming.run_dir(c)) for c in grid}
    in_grid = {str(naming.run_dir(c)) for c in grid}
    rows = {
        key[id(c)]: {
            "method": c.training_method,
            "dataset": c.dataset,
            "name": naming.run_name(c),
            "run_dir": key[id(c)],
            "status": "pending",
            "seconds": None,
            "best_dev_loss": None,
            "error": "",
        }
        for c in grid
    }
    parent_of: dict[str, str | None] = {}
    for c in grid:
        pd = naming.parent_dir(c)
        parent_of[key[id(c)]] = str(pd) if pd is not None else None
        if pd is not None and str(pd) not in in_grid and not is_complete(pd):
            rows[key[id(c)]].update(status="blocked", error=f"missing parent {pd}")
    jobs = [c for c in grid if rows[key[id(c)]]["status"] == "pending"]
    if cfg.sequential_first:
        jobs.sort(key=lambda c: c.objective in SEQUENTIAL)
    from actlab.ia2.trainer import run_status

    for c in jobs:  # read-only: what each run would do (a dry run shows the same statuses)
        row = rows[key[id(c)]]
        holder = lock_holder(naming.run_dir(c))
        if holder is not None:
            row.update(status="busy", error=f"in use by {holder}")
            continue
        try:
            if run_status(c) == "done":
                row["status"] = "skipped"
                _fill_summary(row)
        except ConfigMismatch as e:
            row.update(status="differs", error=str(e))
    if cfg.dry_run:  # the statuses only (``actlab ia2 sweep --dry_run`` prints them, format_dry_run)
        return [rows[key[id(c)]] for c in grid]
    pending = [c for c in jobs if rows[key[id(c)]]["status"] == "pending"]
    if cfg.launcher == "slurm":
        _sweep_slurm(cfg, pending, rows, key, parent_of)
        return _finish(grid, rows)
    n_gpu = _gpu_count()
    threads = max(1, (os.cpu_count() or 1) // cfg.max_parallel)
    running: dict[int, tuple[IA2TrainConfig, subprocess.Popen, float, object]] = {}
    log.info(
        f"ia2 sweep: {len(grid)} runs ({len(pending)} to train, "
        f"{sum(r['status'] == 'skipped' for r in rows.values())} complete, "
        f"{sum(r['status'] == 'blocked' for r in rows.values())} blocked), {cfg.max_parallel} worker(s)"
        + (f" on {n_gpu} GPU(s)" if n_gpu else "")
    )
    bar = progress(total=len(pending), desc="ia2 sweep")
    old_term = _terminate_on_sigterm()
    try:
        with bar_logging():
            _run_jobs(cfg, pending, running, rows, key, parent_of, n_gpu, threads, bar)
    finally:
        _stop_workers(running)
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)
    bar.close()
    return _finish(grid, rows)


def _finish(grid, rows) -> list[dict]:
    result = list(rows.values())
    out = Path(grid[0].output_dir) / "sweep_summary.json" if grid else None
    if out is not None:
        atomic_write_json(out, result)
    return result


def _terminate_on_sigterm():
    """SIGTERM → SystemExit in the sweep (main thread only), so its ``finally`` stops the workers."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum, frame):
        raise SystemExit(128 + signum)

    return signal.signal(signal.SIGTERM, handler)


def _stop_workers(running: dict) -> None:
    for _job, proc, _t0, _fh in running.values():
        if proc.poll() is None:
            proc.terminate()
    for _job, proc, _t0, fh in running.values():
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        fh.close()
    running.clear()


def _run_jobs(cfg, pending, running, rows, key, parent_of, n_gpu, threads, bar) -> None:
    while pending or running:
        for slot in range(cfg.max_parallel):
            if slot in running:
                continue
            job = _next_ready(pending, rows, key, parent_of)
            if job is None:
                break
            pending.remove(job)
            running[slot] = (job, *_launch(job, slot, n_gpu, threads))
            rows[key[id(job)]]["status"] = "running"
        time.sleep(0.2)
        for slot, (job, proc, t0, fh) in list(running.items()):
            rc = proc.poll()
            if rc is None:
                continue
            fh.close()
            row = rows[key[id(job)]]
            row["seconds"] = round(time.perf_counter() - t0, 1)
            if rc == 0 and is_complete(naming.run_dir(job)):
                row["status"] = "done"
                _fill_summary(row)
            else:
                row.update(status="failed", error=f"exit {rc}: {_last_line(_log_path(job))} (log: {_log_path(job)})")
            log.info(f"ia2 sweep: {row['status']} {row['method']} {row['name']}")
            bar.update(1)
            del running[slot]
        # jobs whose parent failed/blocked can never run
        for c in list(pending):
            par = parent_of[key[id(c)]]
            if par in rows and rows[par]["status"] in ("failed", "blocked", "busy", "differs"):
                pending.remove(c)
                rows[key[id(c)]].update(status="blocked", error=f"parent {rows[par]['status']}: {par}")
                bar.update(1)


def _next_ready(pending, rows, key, parent_of):
    for c in pending:
        par = parent_of[key[id(c)]]
        if par is None or par not in rows or rows[par]["status"] in ("done", "skipped"):
            return c
    return None


def _launch(c: IA2TrainConfig, slot: int, n_gpu: int, threads: int):
    env = dict(os.environ)
    if n_gpu:
        env["CUDA_VISIBLE_DEVICES"] = str(slot % n_gpu)
    else:
        env["ACTLAB_THREADS"] = str(threads)
        env["OMP_NUM_THREADS"] = str(threads)
    env["ACTLAB_QUIET"] = "1"  # the worker writes to its log file; the sweep shows one bar over the runs
    log_file = _log_path(c)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    fh = open(log_file, "w", encoding="utf-8")  # noqa: SIM115 (closed when the process ends)
    proc = subprocess.Popen(
        [sys.executable, "-m", "actlab.ia2.sweep", json.dumps(_worker_kw(c))],
        stdout=fh,
        stderr=subprocess.STDOUT,
        env=env,
        preexec_fn=_die_with_parent(os.getpid()),
    )
    return proc, time.perf_counter(), fh


def _die_with_parent(parent: int):
    """A ``preexec_fn`` (Linux): the worker gets SIGKILL when the sweep process dies, however it dies."""
    if not sys.platform.startswith("linux"):
        return None

    def preexec() -> None:
        import ctypes

        try:
            ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG = 1
        except (OSError, AttributeError):
            return
        if os.getppid() != parent:  # the sweep died before prctl took effect
            os._exit(1)

    return preexec


class SubmititRun:
    """One sweep run as a submitit job: trains in the job's process; on preemption or timeout submitit calls
    :meth:`checkpoint` and requeues the same run, which resumes from its run directory's last checkpoint."""

    def __init__(self, kw: dict):
        self.kw = kw

    def __call__(self) -> str:
        os.environ["ACTLAB_QUIET"] = "1"
        if not logging.getLogger("actlab").handlers:  # the job's own process: its status lines in the job's log
            from actlab.core.logs import setup_logging

            setup_logging()
        if os.environ.get("SLURM_CPUS_PER_TASK"):
            import torch

            torch.set_num_threads(int(os.environ["SLURM_CPUS_PER_TASK"]))
        from actlab.ia2.trainer import train

        return str(train(IA2TrainConfig(**self.kw)))

    def checkpoint(self, *args, **kwargs):
        import submitit

        return submitit.helpers.DelayedSubmission(SubmititRun(self.kw))


def _sweep_slurm(cfg: SweepConfig, pending: list[IA2TrainConfig], rows: dict, key: dict, parent_of: dict) -> None:
    """Submit ``pending`` through submitit (job arrays; a2t/t2a ``afterok`` on their parents) and wait for them."""
    import submitit

    if not pending:
        return
    root = Path(pending[0].output_dir)
    ex = submitit.AutoExecutor(
        folder=root / "sweep_logs" / "submitit" / "%j",
        cluster=None if cfg.slurm_cluster == "auto" else cfg.slurm_cluster,
    )
    params = {"timeout_min": cfg.slurm_time, "name": "actlab-ia2", "slurm_gpus_per_node": cfg.slurm_gpus_per_node}
    if cfg.slurm_partition:
        params["slurm_partition"] = cfg.slurm_partition
    ex.update_parameters(**params)
    has_deps = ex.cluster == "slurm"
    by_key = {key[id(c)]: c for c in pending}

    def level(k: str) -> int:
        par = parent_of[k]
        return 0 if par not in by_key else level(par) + 1

    waves: dict[int, dict[str | None, list[IA2TrainConfig]]] = {}
    for c in pending:
        k = key[id(c)]
        par = parent_of[k] if parent_of[k] in by_key else None
        waves.setdefault(level(k), {}).setdefault(par, []).append(c)
    jobs: dict[str, object] = {}
    log.info(
        f"ia2 sweep: {len(rows)} runs ({len(pending)} to submit, "
        f"{sum(r['status'] == 'skipped' for r in rows.values())} complete) through submitit ({ex.cluster})"
    )
    for lvl in sorted(waves):
        for par, group in waves[lvl].items():
            if par is not None and rows[par]["status"] not in ("pending", "running", "done"):
                for c in group:
                    rows[key[id(c)]].update(status="blocked", error=f"parent {rows[par]['status']}: {par}")
                continue
            if par is not None and has_deps:
                ex.update_parameters(slurm_additional_parameters={"dependency": f"afterok:{jobs[par].job_id}"})
            with ex.batch():
                submitted = [(c, ex.submit(SubmititRun(_worker_kw(c)))) for c in group]
            if has_deps:
                ex.update_parameters(slurm_additional_parameters={})
            for c, job in submitted:
                k = key[id(c)]
                jobs[k] = job
                rows[k].update(status="running", job_id=str(job.job_id), depends_on=rows.get(par, {}).get("job_id"))
        _save_jobs(root, rows)
        if not has_deps:  # no scheduler dependencies: a parent's job ends before its children are submitted
            _wait(jobs, rows, [key[id(c)] for g in waves[lvl].values() for c in g])
    _wait(jobs, rows, list(jobs))


def _save_jobs(root: Path, rows: dict) -> None:
    atomic_write_json(
        root / "sweep_logs" / "submitit_jobs.json",
        {
            k: {"job_id": r.get("job_id"), "depends_on": r.get("depends_on")}
            for k, r in rows.items()
            if r.get("job_id")
        },
    )


def _wait(jobs: dict, rows: dict, keys: list[str]) -> None:
    for k in keys:
        job, row = jobs.get(k), rows[k]
        if job is None or row["status"] != "running":
            continue
        t0 = time.perf_counter()
        try:
            job.result()
        except Exception as e:  # noqa: BLE001 - a failed job is reported, the others go on
            lines = [x for x in str(e).splitlines() if x.strip()]
            row["error"] = f"job {job.job_id}: {(lines or [''])[-1][:200]} (logs: {job.paths.stderr})"
        row["seconds"] = round(time.perf_counter() - t0, 1)
        if is_complete(row["run_dir"]):
            row.update(status="done", error="")
            _fill_summary(row)
        else:
            row["status"] = "failed"
            row["error"] = row["error"] or f"job {job.job_id} ended without a complete run"
        log.info(f"ia2 sweep: {row['status']} {row['method']} {row['name']} (job {job.job_id})")


def _worker_kw(c: IA2TrainConfig) -> dict:
    return {k: v for k, v in c.to_dict().items() if k not in ("family", "objective")}


def _fill_summary(row: dict) -> None:
    p = Path(row["run_dir"]) / "train_summary.json"
    if p.exists():
        try:
            row["best_dev_loss"] = read_json(p).get("best_dev_loss")
        except ActlabError:
            pass


def format_dry_run(rows: list[dict]) -> str:
    """One line per run of a dry run: its status and run directory (and why, for a run that cannot start)."""
    return "\n".join(f"{r['status']:8s} {r['run_dir']}" + (f"  ({r['error']})" if r["error"] else "") for r in rows)


def format_summary(rows: list[dict]) -> str:
    """The sweep's summary table (status, method, dataset, name, seconds, best dev loss, error) and the counts."""
    cols = ("status", "method", "dataset", "name", "seconds", "best_dev_loss", "error")

    def fmt(v):
        if isinstance(v, float):
            return f"{v:.4g}"
        return "-" if v in (None, "") else str(v)

    table = [cols] + [tuple(fmt(r[c]) for c in cols) for r in rows]
    widths = [max(len(t[i]) for t in table) for i in range(len(cols))]
    lines = ["  ".join(x.ljust(w) for x, w in zip(t, widths, strict=True)).rstrip() for t in table]
    counts = {
        s: sum(r["status"] == s for r in rows) for s in ("done", "skipped", "failed", "blocked", "busy", "differs")
    }
    counts = {k: v for k, v in counts.items() if v or k in ("done", "skipped", "failed", "blocked")}
    return "\n".join([*lines, ", ".join(f"{v} {k}" for k, v in counts.items())])


def _worker(argv: list[str]) -> int:
    """One run of the sweep in its own process (``python -m actlab.ia2.sweep CONFIG_JSON``), its output in the
    run's log file: the trainer's status lines, then the run directory; a user error as one ``actlab: error:``
    line and exit 2, as the CLI does."""
    import torch

    from actlab.core.logs import setup_logging
    from actlab.ia2.trainer import train

    setup_logging()
    if os.environ.get("ACTLAB_THREADS"):
        torch.set_num_threads(int(os.environ["ACTLAB_THREADS"]))
    try:
        cfg = IA2TrainConfig(**json.loads(argv[0]))
        log.info(f"run directory: {train(cfg)}")
    except ActlabError as e:
        sys.stderr.write(f"actlab: error: {e}\n")
        return 2
    return 0


callable_module(__name__, "sweep")  # actlab.ia2.sweep(cfg) stays the function once this module is imported


if __name__ == "__main__":
    from actlab.ia2.sweep import _worker as worker  # the package module, so it logs as actlab.ia2.sweep

    sys.exit(worker(sys.argv[1:]))
