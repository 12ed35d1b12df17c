import json

import pytest
import torch

from actlab.core import io
from actlab.core.errors import ActlabError


def test_atomic_write_leaves_nothing_on_error(tmp_path):
    target = tmp_path / "out.json"
    io.atomic_write_json(target, {"a": 1})
    with pytest.raises(RuntimeError):
        with io.atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert json.loads(target.read_text()) == {"a": 1}  # old content intact
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]  # no temp file left


def test_json_is_standard(tmp_path):
    p = io.atomic_write_json(tmp_path / "x.json", {"nan": float("nan"), "t": torch.tensor([1, 2]), "p": tmp_path})
    obj = json.loads(p.read_text())
    assert obj["nan"] is None and obj["t"] == [1, 2] and obj["p"] == str(tmp_path)


def test_run_dir_config_metrics_complete(tmp_path):
    rd = io.RunDir(tmp_path / "run")
    rd.write_config({"lr": 1e-4, "method": "act"})
    cfg = rd.read_config()
    assert cfg["lr"] == 1e-4
    meta = cfg["_meta"]
    assert meta["versions"]["torch"] and meta["versions"]["transformers"] and "git_sha" in meta
    rd.log({"step": 1, "loss/train": 0.5})
    rd.log({"step": 2, "loss/train": 0.25})
    with open(rd.metrics_path, "a") as f:
        f.write('{"step": 3, "loss/tr')  # a line cut by a kill
    assert [r["step"] for r in rd.metrics()] == [1, 2]
    rd.reset_metrics(keep_until_step=1)
    assert [r["step"] for r in rd.metrics()] == [1]
    assert not rd.is_complete()
    rd.mark_complete({"best": 1})
    assert rd.is_complete() and io.is_complete(tmp_path / "run")


def test_safetensors_round_trip_and_corruption(tmp_path):
    t = {"a": torch.randn(3, 4), "b": torch.arange(5)}
    p = io.save_tensors(tmp_path / "t.safetensors", t, {"version": 2})
    back, meta = io.load_tensors(p)
    torch.testing.assert_close(back["a"], t["a"])
    assert meta == {"version": "2"}
    p.write_bytes(p.read_bytes()[:20])
    with pytest.raises(ActlabError, match="corrupt safetensors file"):
        io.load_tensors(p)
    with pytest.raises(ActlabError, match="file not found"):
        io.load_tensors(tmp_path / "nope.safetensors")


def test_read_json_errors(tmp_path):
    p = tmp_path / "bad.json"
    p.write_text("{not json")
    with pytest.raises(ActlabError, match="corrupt JSON file"):
        io.read_json(p)


def test_wandb_is_optional(tmp_path, monkeypatch):
    import builtins

    real = builtins.__import__

    def no_wandb(name, *a, **k):
        if name == "wandb":
            raise ImportError
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_wandb)
    with pytest.raises(ActlabError, match="--wandb_log needs the wandb package"):
        io.RunDir(tmp_path / "r", wandb_log=True)
    io.RunDir(tmp_path / "r2")  # off by default: never needs wandb


def test_actlab_home(monkeypatch, tmp_path):
    monkeypatch.setenv("ACTLAB_HOME", str(tmp_path / "h"))
    assert io.actlab_home() == tmp_path / "h"


@pytest.mark.parametrize("fused", [False, True])
def test_optimizer_state_round_trip(tmp_path, fused):
    """AdamW state (moments, step, two param groups with their own lr and weight decay) through a safetensors file:
    the restored optimizer takes exactly the steps the original takes."""
    from actlab.core.io import load_optimizer_tensors, load_tensors, optimizer_tensors, save_tensors

    def make():
        torch.manual_seed(0)
        ps = [torch.nn.Parameter(torch.randn(5, 3)), torch.nn.Parameter(torch.randn(3))]
        opt = torch.optim.AdamW([{"params": ps[:1], "weight_decay": 0.1}, {"params": ps[1:], "weight_decay": 0.0}],
                                lr=0.05, fused=fused)
        return ps, opt

    def step(ps, opt, i):
        loss = sum(((p - i) ** 2).sum() for p in ps)
        loss.backward()
        opt.step()
        opt.zero_grad()

    ps, opt = make()
    for i in range(3):
        step(ps, opt, i)
    opt.param_groups[1]["lr"] = 0.02  # as a scheduler would
    snapshot = [p.detach().clone() for p in ps]
    t, meta = optimizer_tensors(opt)
    save_tensors(tmp_path / "o.safetensors", {**t, "other.x": torch.zeros(1)}, {"optimizer": meta})
    ps2, opt2 = make()
    with torch.no_grad():
        for p, q in zip(ps2, ps, strict=True):
            p.copy_(q)
    tensors, m = load_tensors(tmp_path / "o.safetensors")
    load_optimizer_tensors(opt2, tensors, m["optimizer"])
    assert opt2.param_groups[1]["lr"] == 0.02 and opt2.param_groups[0]["weight_decay"] == 0.1
    for i in range(3, 6):
        step(ps, opt, i)
        step(ps2, opt2, i)
    for p, q in zip(ps, ps2, strict=True):
        assert torch.equal(p, q)
    ps3, opt3 = make()  # control: the same steps from the same point with fresh moments land elsewhere
    with torch.no_grad():
        for p, q in zip(ps3, snapshot, strict=True):
            p.copy_(q)
    for i in range(3, 6):
        step(ps3, opt3, i)
    assert not torch.equal(ps3[0], ps[0])
