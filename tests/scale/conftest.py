"""Shared fixtures of the multi-process tests: a saved micro model, prepared data, and the launch commands.

Every test here starts real launchers on CPU (gloo): ``accelerate launch --multi_gpu`` (which, without GPUs, starts
MULTI_CPU workers through torchrun) or ``torchrun`` itself, each with its own free port so tests run side by side.

    def test_x(micro_dir, launch):
        r = launch("torchrun", 2, "xmodel", "extract", "--model_a", micro_dir, ...)
        assert r.returncode == 0, r.stderr[-2000:]

``launch(kind, nproc, *actlab_args)``: ``kind`` is ``"torchrun"``, ``"accelerate"`` or ``"plain"`` (``python -m
actlab.cli.main`` in one process); it returns the :class:`subprocess.CompletedProcess` (text, captured).
``launch_cmd`` builds the same argv without running it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

DS = "syn_sst2_remap"


def free_port() -> int:
    """A TCP port free right now on localhost (for torchrun's/accelerate's rendezvous)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_cmd(kind: str, nproc: int, *args: str, port: int | None = None) -> list[str]:
    """argv that runs ``actlab <args>`` on ``nproc`` CPU processes through ``kind`` (torchrun | accelerate | plain)."""
    port = port or free_port()
    if kind == "torchrun":
        pre = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            str(nproc),
            "--master_port",
            str(port),
        ]
    elif kind == "accelerate":
        pre = [
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            "--multi_gpu",
            "--num_processes",
            str(nproc),
            "--num_machines",
            "1",
            "--mixed_precision",
            "no",
            "--dynamo_backend",
            "no",
            "--main_process_port",
            str(port),
        ]
    elif kind == "plain":
        assert nproc == 1, "plain runs one process"
        pre = [sys.executable]
    else:
        raise ValueError(f"launcher {kind!r}: torchrun, accelerate or plain")
    return [*pre, "-m", "actlab.cli.main", *map(str, args)]


def launch_env(**extra: str) -> dict[str, str]:
    """The environment of a launched test run: one thread per process, offline, no launcher variables inherited."""
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "ACTLAB_QUIET": "1",
        **extra,
    }
    for k in (
        "WORLD_SIZE",
        "RANK",
        "LOCAL_RANK",
        "MASTER_ADDR",
        "MASTER_PORT",
        "LOCAL_WORLD_SIZE",
        "ACCELERATE_USE_CPU",
        "ACCELERATE_MIXED_PRECISION",
    ):
        if k not in extra:
            env.pop(k, None)
    return env


@pytest.fixture
def launch():
    """``launch(kind, nproc, *actlab_args, timeout=300, env=None)`` → CompletedProcess (see the module doc)."""

    def run(kind: str, nproc: int, *args: str, timeout: float = 300, env: dict | None = None):
        return subprocess.run(
            launch_cmd(kind, nproc, *args),
            env=launch_env(**(env or {})),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    return run


@pytest.fixture(scope="session")
def micro_dir(tmp_path_factory) -> str:
    """A micro random Llama + its tokenizer saved as a local model directory (``--model_id`` / ``--model_a``)."""
    from actlab.core.testing import micro_model, micro_tokenizer

    d = tmp_path_factory.mktemp("scale_micro_llama")
    tok = micro_tokenizer()
    micro_model("llama", tok).save_pretrained(d)
    tok.save_pretrained(d)
    return str(d)


@pytest.fixture(scope="session")
def ia2_data(tmp_path_factory):
    """``syn_sst2`` prepared with remapped labels, train runs of N=8 (2 runs, 2 demos each): ``--data_dir``."""
    from actlab.data import make_train, prepare

    d = tmp_path_factory.mktemp("scale_data")
    prepare("syn_sst2", d, num_train_samples=30, num_val_samples=6, label_template="remap")
    make_train(DS, d, num_train_examples=[8], num_runs=2, max_icl_demos=2)
    return d


def one_line(stderr: str) -> list[str]:
    """The non-empty lines of ``stderr`` that actlab itself wrote (``actlab: …``)."""
    return [x for x in stderr.replace("\r", "\n").splitlines() if x.startswith("actlab: ")]
