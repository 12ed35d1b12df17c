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
        opt = torch.optim.AdamW(
            [{"params": ps[:1], "weight_decay": 0.1}, {"params": ps[1:], "weight_decay": 0.0}], lr=0.05, fused=fused
        )
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


# ------------------------------------------------------------------------------------------------ file modes
@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_written_files_follow_the_umask(tmp_path, umask, mode):
    import os
    import stat

    old = os.umask(umask)
    try:
        files = [
            io.atomic_write_json(tmp_path / "a.json", {"a": 1}),
            io.save_tensors(tmp_path / "t.safetensors", {"x": torch.ones(2)}),
        ]
        rd = io.RunDir(tmp_path / "run")
        rd.write_config({"lr": 1})
        rd.log({"step": 1})
        rd.mark_complete()
        files += [rd.config_path, rd.metrics_path, rd.path / io.COMPLETE]
    finally:
        os.umask(old)
    for f in files:
        assert stat.S_IMODE(f.stat().st_mode) == mode, f


# ------------------------------------------------------------------------------------------------------ locks
_HOLD = """
import sys, time
from actlab.core.io import RunDir
rd = RunDir(sys.argv[1])
print("held", flush=True)
time.sleep(60)
"""


def _holder(path):
    import subprocess
    import sys

    p = subprocess.Popen([sys.executable, "-c", _HOLD, str(path)], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "held"
    return p


def test_second_process_is_refused_naming_the_holder_and_a_dead_holder_is_taken_over(tmp_path):
    path = tmp_path / "run"
    p = _holder(path)
    try:
        with pytest.raises(io.RunDirBusy, match=f"run directory {path} is in use by pid {p.pid} on host "):
            io.RunDir(path)
        assert io.lock_holder(path).startswith(f"pid {p.pid} ")
    finally:
        p.kill()
        p.wait()
    assert io.lock_holder(path) is None  # flock dies with its process (kill -9 included): nothing stale
    assert f"pid {p.pid}" in (path / io.LOCK_FILE).read_text()  # the file still names the dead owner ...
    with io.RunDir(path) as rd:  # ... and is simply taken over
        import os

        assert (path / io.LOCK_FILE).read_text().startswith(f"pid {os.getpid()} ")
        assert io.RunDir(path).path == rd.path  # the same process may open it twice


def test_lock_is_released_on_close_and_by_garbage_collection(tmp_path):
    import subprocess
    import sys

    def other_can_take() -> bool:
        code = "import sys; from actlab.core.io import RunDir; RunDir(sys.argv[1])"
        return subprocess.run([sys.executable, "-c", code, str(tmp_path / "r")], capture_output=True).returncode == 0

    rd = io.RunDir(tmp_path / "r")
    assert not other_can_take()
    rd.close()
    assert other_can_take()
    rd = io.RunDir(tmp_path / "r")
    del rd
    assert other_can_take()


def test_owner_removes_temp_files_of_a_killed_writer(tmp_path):
    (tmp_path / "r" / "checkpoint").mkdir(parents=True)
    left = [tmp_path / "r" / ".config.json.ab12.tmp", tmp_path / "r" / "checkpoint" / ".state.safetensors.x.tmp"]
    for p in left:
        p.write_text("half")
    (tmp_path / "r" / "keep.json").write_text("{}")
    io.RunDir(tmp_path / "r")
    assert not any(p.exists() for p in left) and (tmp_path / "r" / "keep.json").exists()


# ------------------------------------------------------------------------------------------------ fingerprints
def test_fingerprint_and_diff():
    a = {"lr": 1e-3, "output_dir": "x", "loss": {"beta": 0.1, "kl": 0.0}, "layers": (1, 2)}
    b = {"lr": 1e-3, "output_dir": "y", "loss": {"beta": 0.2, "kl": 0.0}, "layers": [1, 2]}
    assert io.config_fingerprint(a, exclude=("output_dir",)) != io.config_fingerprint(b, exclude=("output_dir",))
    assert io.config_fingerprint(a, exclude=("output_dir", "loss")) == io.config_fingerprint(
        b, exclude=("output_dir", "loss")
    )
    assert io.diff_configs(a, b, exclude=("output_dir",)) == ["loss.beta: 0.1 -> 0.2"]  # tuples = lists
    assert io.diff_configs(a, b) == ["output_dir: 'x' -> 'y'", "loss.beta: 0.1 -> 0.2"]
    # a field the old record lacks counts as its default; another value is a difference
    assert io.diff_configs({"lr": 1}, {"lr": 1, "seed": 0}, defaults={"seed": 0}) == []
    assert io.diff_configs({"lr": 1}, {"lr": 1, "seed": 3}, defaults={"seed": 0}) == ["seed: (not recorded) -> 3"]


def test_run_state_and_begin(tmp_path):
    path = tmp_path / "run"
    kw = {"exclude": ("output_dir",), "progress": ("ckpt.safetensors",)}
    cfg = {"lr": 0.1, "steps": 4, "output_dir": "a"}
    assert io.run_state(path, cfg, **kw) == "fresh" and not path.exists()  # nothing written by asking
    with io.RunDir(path) as rd:
        assert rd.begin(cfg, **kw) == "fresh"
        rd.log({"step": 1})
        (path / "ckpt.safetensors").write_text("x")
    assert json.loads((path / "config.json").read_text())["_fingerprint"] == io.config_fingerprint(
        cfg, ("output_dir",)
    )
    assert io.run_state(path, {**cfg, "output_dir": "b"}, **kw) == "resume"  # output paths do not count
    with pytest.raises(
        io.ConfigMismatch,
        match=r"holds a started run with another config \(steps: 4 -> 8\); use "
        r"--overwrite",
    ):
        io.run_state(path, {**cfg, "steps": 8}, **kw)
    with io.RunDir(path) as rd:
        rd.mark_complete()
    assert io.run_state(path, cfg, **kw) == "done"
    with pytest.raises(io.ConfigMismatch, match=r"finished run with another config \(lr: 0.1 -> 0.2; steps: 4 -> 8\)"):
        io.run_state(path, {**cfg, "lr": 0.2, "steps": 8}, **kw)
    with io.RunDir(path) as rd:
        assert rd.begin({**cfg, "lr": 0.2}, overwrite=True, **kw) == "redo"  # cleared, then started again
        assert sorted(p.name for p in path.iterdir()) == [".lock", "config.json"]
        assert rd.begin({**cfg, "lr": 0.2}, overwrite=True, **kw) == "fresh"  # same config: nothing to redo


def test_reset_metrics_keeps_each_step_once(tmp_path):
    rd = io.RunDir(tmp_path / "r")
    for s in (1, 2, 3, 4):
        rd.log({"step": s})
    rd.reset_metrics(keep_until_step=2)
    assert [r["step"] for r in rd.metrics()] == [1, 2]
    rd.reset_metrics(keep_until_step=0)
    assert rd.metrics() == [] and not rd.metrics_path.exists()


# ------------------------------------------------------------------------------------------------ checkpoints
def _trained(seed=0):
    torch.manual_seed(seed)
    lin = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(lin.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 / (s + 1))
    return lin, opt, sched


def _step(lin, opt, sched):
    x = torch.randn(4, 3)  # consumes the RNG: a resumed run must draw the same numbers
    torch.nn.functional.dropout(lin(x), 0.5).sum().backward()
    opt.step()
    sched.step()
    opt.zero_grad()


def test_checkpoint_resumes_exactly(tmp_path):
    import random

    from actlab.core import checkpoint

    lin, opt, sched = _trained()
    for _ in range(2):
        _step(lin, opt, sched)
    random.seed(5)
    checkpoint.save(
        tmp_path / "c.safetensors",
        {"w": lin.weight, "b": lin.bias},
        step=2,
        optimizer=opt,
        scheduler=sched,
        extra={"best": 0.5},
    )
    for _ in range(2):
        _step(lin, opt, sched)
    want, want_py = lin.weight.detach().clone(), random.random()

    torch.manual_seed(99)
    random.seed(99)
    lin2, opt2, sched2 = _trained(seed=1)
    ck = checkpoint.load(tmp_path / "c.safetensors", optimizer=opt2, scheduler=sched2)
    assert ck.step == 2 and ck.extra == {"best": 0.5} and not ck.legacy and set(ck.tensors) == {"w", "b"}
    with torch.no_grad():
        lin2.weight.copy_(ck.tensors["w"])
        lin2.bias.copy_(ck.tensors["b"])
    assert sched2.last_epoch == 2 and opt2.param_groups[0]["lr"] == pytest.approx(0.1 / 3)
    for _ in range(2):
        _step(lin2, opt2, sched2)
    assert torch.equal(lin2.weight, want) and random.random() == want_py


def test_checkpoint_write_is_one_atomic_unit(tmp_path, monkeypatch):
    import os

    from actlab.core import checkpoint

    lin, opt, sched = _trained()
    p = tmp_path / "c.safetensors"
    checkpoint.save(p, {"w": lin.weight}, step=1, optimizer=opt)
    _step(lin, opt, sched)

    def killed(src, dst):
        raise KeyboardInterrupt  # dies between writing the temp file and renaming it

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save(p, {"w": lin.weight}, step=2, optimizer=opt)
    monkeypatch.undo()
    assert checkpoint.load(p).step == 1 and [x.name for x in tmp_path.iterdir()] == ["c.safetensors"]


def test_checkpoint_legacy_and_corrupt_files(tmp_path):
    from actlab.core import checkpoint

    assert checkpoint.load(tmp_path / "none.safetensors") is None
    old = io.save_tensors(tmp_path / "old.safetensors", {"w": torch.ones(2)}, {"counters": "{}"})
    ck = checkpoint.load(old)
    assert ck.legacy and ck.step is None and ck.meta["counters"] == "{}" and "w" in ck.tensors
    old.write_bytes(old.read_bytes()[:10])
    with pytest.raises(ActlabError, match="checkpoint .* is corrupt .*delete it to start the run over"):
        checkpoint.load(old)
    with pytest.raises(ValueError, match="may not start with"):
        checkpoint.save(tmp_path / "x.safetensors", {"opt.x": torch.ones(1)}, step=0)


def test_checkpoint_stores_tied_tensors(tmp_path):
    from actlab.core import checkpoint

    w = torch.randn(4, 3)
    checkpoint.save(tmp_path / "c.safetensors", {"embed": w, "head": w}, step=1, rng=False)
    ck = checkpoint.load(tmp_path / "c.safetensors")
    assert torch.equal(ck.tensors["embed"], ck.tensors["head"])
