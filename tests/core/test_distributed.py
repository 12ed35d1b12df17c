"""``actlab.core.distributed``: one process is a no-op; two gloo processes shard, sum gradients and metrics."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from actlab.core.distributed import Dist, launched_world, start
from actlab.core.errors import ActlabError


def test_one_process_is_a_no_op(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    d = start("cpu")
    assert (d.rank, d.world, d.is_main, d.active) == (0, 1, True, False)
    assert d.shard([1, 2, 3]) == [1, 2, 3]
    p = torch.nn.Parameter(torch.ones(2))
    p.grad = torch.tensor([1.0, 2.0])
    d.sum_grads([p])
    assert p.grad.tolist() == [1.0, 2.0]
    assert d.sum_floats({"a": 1.5}) == {"a": 1.5}
    assert start("auto").device.type in ("cpu", "cuda", "mps")


def test_shards_cover_the_batch_once():
    for n in range(0, 9):
        for world in (2, 3, 4):
            got = [x for r in range(world) for x in Dist(rank=r, world=world).shard(list(range(n)))]
            assert got == list(range(n))


def test_launcher_checks(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "x")
    with pytest.raises(ActlabError, match="WORLD_SIZE 'x'"):
        launched_world()
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ActlabError, match="--device 'cuda:1' names one device.*2 processes"):
        start("cuda:1", verb="ia2 train")


@pytest.mark.multiproc
def test_two_gloo_processes(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    import socket

    with socket.socket() as s:  # a free port: other runs of this test may be rendezvousing at the same time
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            "--master_port",
            str(port),
            str(Path(__file__).with_name("dist_driver.py")),
            str(tmp_path / "out"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    got = [json.loads((tmp_path / f"out.{k}.json").read_text()) for k in (0, 1)]
    assert got[0]["shard"] + got[1]["shard"] == list(range(7)) and got[0]["shard"] == [0, 1, 2]
    for g in got:
        assert g["p"] == [3.0, 6.0, 9.0]  # (1 + 2) * [1, 2, 3]
        assert g["q"] == [5.0, 7.0]  # rank 1 had no gradient: zeros
        assert g["sums"] == {"loss": pytest.approx(0.75), "n": 7.0}
        assert g["obj"] == {"from": 0}
        assert g["partial"] == {"a": 1.0, "b": 2.0} and g["decided"] == "rank 0 decided" and g["err"] == "bad --x 3"
    assert [g["first"] for g in got] == [0, 1]  # main_first: each rank's own result
