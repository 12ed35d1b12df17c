"""``ia2 sweep --launcher slurm`` on submitit's local executor (no cluster): a2t/t2a after their parents, finished
runs not resubmitted, a killed job resumed by the next sweep, a preempted job requeued and resumed."""

import json
import os
import signal
import threading
import time

import pytest

from actlab.cli.main import main
from tests.ia2.test_train_cli import DS, world  # noqa: F401 - the module fixture

submitit = pytest.importorskip("submitit")


def _argv(world, out, *extra):  # noqa: F811
    return [
        "ia2",
        "sweep",
        "--launcher",
        "slurm",
        "--slurm_cluster",
        "local",
        "--datasets",
        DS,
        "--num_train_examples",
        "4",
        "--run_indices",
        "0",
        "--model_id",
        str(world / "llama"),
        "--data_dir",
        str(world / "data"),
        "--output_dir",
        str(out),
        *extra,
    ]


def _jobs(out):
    p = out / "sweep_logs" / "submitit_jobs.json"
    return json.loads(p.read_text()) if p.exists() else {}


def test_dependency_order_and_skip_done(world, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "o"
    argv = _argv(world, out, "--training_methods", "act", "a2t", "--label_types", "icl_outputs", "--max_steps", "2")
    assert main(argv) == 0
    summary = {r["method"]: r for r in json.loads((out / "sweep_summary.json").read_text())}
    assert {m: r["status"] for m, r in summary.items()} == {"act": "done", "a2t": "done"}
    act, a2t = (out / m / DS / summary[m]["name"] for m in ("act", "a2t"))
    # the child's job was submitted against its parent's job and started after the parent's run was complete
    jobs = _jobs(out)
    assert jobs[str(a2t)]["depends_on"] == jobs[str(act)]["job_id"] != jobs[str(a2t)]["job_id"]
    assert (a2t / "config.json").stat().st_mtime >= (act / "COMPLETE").stat().st_mtime
    n_logs = len(list((out / "sweep_logs" / "submitit").iterdir()))
    capsys.readouterr()
    # again: every run is complete, nothing is submitted
    assert main(argv) == 0
    rows = json.loads((out / "sweep_summary.json").read_text())
    assert {r["status"] for r in rows} == {"skipped"} and not any(r.get("job_id") for r in rows)
    assert len(list((out / "sweep_logs" / "submitit").iterdir())) == n_logs


def test_without_submitit_one_line_exit_2(world, tmp_path, capsys, monkeypatch):  # noqa: F811
    import sys

    monkeypatch.setitem(sys.modules, "submitit", None)
    out = tmp_path / "o"
    assert main(_argv(world, out, "--training_methods", "act", "--max_steps", "2")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install 'actlab[slurm]'" in err[0], err
    assert not out.exists()


def _long(world, out):  # noqa: F811
    return _argv(
        world,
        out,
        "--training_methods",
        "act",
        "--max_steps",
        "150",
        "--num_epochs",
        "1000",
        "--patience",
        "100000",
        "--checkpoint_every",
        "5",
    )


def _wait_steps(run, n, timeout=300):
    t0 = time.time()
    while time.time() - t0 < timeout:
        m = run / "metrics.jsonl"
        if m.exists() and sum(1 for x in m.read_text().splitlines() if '"train/loss"' in x) >= n:
            return
        time.sleep(0.05)
    raise AssertionError(f"{run}: fewer than {n} steps after {timeout} s")


def _steps(run):
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if x.strip()]
    return [r["step"] for r in rows if "train/loss" in r]


def _run_dir(out):
    return out / "act" / DS / "llama_qko_8_8_1_4_0.0001_0"


@pytest.mark.slow
def test_killed_job_is_resumed_by_the_next_sweep(world, tmp_path, capsys):  # noqa: F811
    from actlab.core.io import lock_holder

    out = tmp_path / "o"
    rc = {}
    th = threading.Thread(target=lambda: rc.setdefault("rc", main(_long(world, out))))
    th.start()
    run = _run_dir(out)
    _wait_steps(run, 12)
    holder = lock_holder(run)
    assert holder and holder.startswith("pid "), holder
    os.kill(int(holder.split()[1]), signal.SIGKILL)
    th.join(timeout=120)
    assert rc["rc"] == 1 and not (run / "COMPLETE").exists()
    assert main(_long(world, out)) == 0  # the run is resubmitted (not complete) and resumes from its checkpoint
    assert (run / "COMPLETE").exists() and _steps(run) == list(range(1, 151))


@pytest.mark.slow
def test_preempted_job_is_requeued_and_resumed(world, tmp_path, capsys):  # noqa: F811
    from actlab.core.io import lock_holder

    out = tmp_path / "o"
    rc = {}
    th = threading.Thread(target=lambda: rc.setdefault("rc", main(_long(world, out))))
    th.start()
    run = _run_dir(out)
    _wait_steps(run, 12)
    holder = lock_holder(run)
    assert holder and holder.startswith("pid "), holder
    # what Slurm does before preempting a job: USR2 to its processes → the run's checkpoint() → requeue
    os.kill(int(holder.split()[1]), submitit.JobEnvironment._usr_sig())
    th.join(timeout=300)
    assert rc["rc"] == 0 and (run / "COMPLETE").exists()
    assert _steps(run) == list(range(1, 151))
    logs = "".join(p.read_text() for p in (out / "sweep_logs" / "submitit").rglob("*_log.*"))
    assert "Requeued" in logs, logs[-2000:]  # it was interrupted and requeued, not finished before the signal
