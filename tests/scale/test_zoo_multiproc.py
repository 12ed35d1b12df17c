"""``actlab zoo build`` on 2 CPU processes (gloo) gives the one-process build, up to float noise.

The build is data parallel with the spec's own global batch (each rank a slice of rows, token losses divided by the
whole batch's weighted token count, gradients summed); rank 0 alone writes the model directory and its manifest.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.scale.conftest import free_port, launch_env
from tests.scale.zoo_driver import MICRO


def test_slices_of_a_batch_sum_to_its_loss(micro_tok, micro_llama):
    """The per-rank loss (a slice of rows over the whole batch's weight) adds up to the one-process loss, for the
    plain LM loss (HF's ``num_items_in_batch``) and the label-weighted one."""
    from actlab.zoo.train import _loss, _token_weights

    enc = micro_tok(
        ["the cat is red", "a dog is blue and the fox is green", "one two", "label : yes"],
        return_tensors="pt",
        padding=True,
    )
    b = {**enc, "labels": enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)}
    scaffold = torch.tensor(micro_tok.convert_tokens_to_ids([":"]))
    for lw in (1.0, 3.0):
        whole = _loss(micro_llama, b, scaffold, lw)
        total = float(_token_weights(b, scaffold, lw).sum())
        parts = [
            _loss(micro_llama, {k: v[s] for k, v in b.items()}, scaffold, lw, total=total)
            for s in (slice(0, 1), slice(1, 4))
        ]
        assert float(sum(parts).detach()) == pytest.approx(float(whole.detach()), rel=1e-5)
    assert float(_token_weights(b, scaffold, 3.0).sum()) > float(_token_weights(b, scaffold, 1.0).sum())


@pytest.mark.multiproc
@pytest.mark.slow  # a launch: .ci/run runs -m multiproc tests/scale
def test_build_two_processes_gives_the_one_process_model(monkeypatch, tmp_path):
    from safetensors.torch import load_file

    from actlab.zoo import build as zb
    from actlab.zoo.specs import ZOO

    monkeypatch.setitem(ZOO, MICRO.name, MICRO)
    one = zb.ensure_built(MICRO.name)  # this test's own $ACTLAB_HOME
    home = tmp_path / "home2"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        str(free_port()),
        str(Path(__file__).with_name("zoo_driver.py")),
        "zoo",
        "build",
        MICRO.name,
    ]
    r = subprocess.run(
        cmd,
        env=launch_env(ACTLAB_HOME=str(home), PYTHONPATH=str(Path(__file__).parents[2] / "src")),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    two = home / "models" / MICRO.name
    assert r.stdout.count(f"{MICRO.name}: {two}") == 1  # rank 0 alone shows the result
    a, b = load_file(str(one / "model.safetensors")), load_file(str(two / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=1e-5, msg=k)
    import json

    m1, m2 = (json.loads((d / "manifest.json").read_text()) for d in (one, two))
    assert (m1["world_size"], m2["world_size"]) == (1, 2)
    assert m2["train"]["final_loss"] == pytest.approx(m1["train"]["final_loss"], abs=2e-4)
    assert m2["train"]["steps"] == MICRO.train.steps and m2["spec_identity"] == m1["spec_identity"]
    assert not zb._partial_dir(two).exists() and not (home / "models" / f"{MICRO.name}.partial").exists()
