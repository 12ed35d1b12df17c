"""kill -9 at several points of every long verb (in a subprocess, on micro models), then rerun: the rerun ends with
the weights of an uninterrupted run and ``metrics.jsonl`` holds each step once. Also two processes on one run
directory (the second exits 2 naming the first) and sweep workers dying with their sweep."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from actlab.core.io import lock_holder, read_jsonl

DRIVER = Path(__file__).with_name("kill_driver.py")
DS = "syn_sst2_remap"


def drive(verb, cfg, when=None, mark=None, wait=True):
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "ACTLAB_QUIET": "1",
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    if mark is not None:
        env["KILL_DRIVER_MARK"] = str(mark)
    cmd = [sys.executable, str(DRIVER), verb, json.dumps(cfg)] + ([when] if when else [])
    if not wait:
        return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


def killed(r):
    assert r.returncode == -signal.SIGKILL, (r.returncode, r.stderr[-2000:])


def ok(r):
    assert r.returncode == 0, r.stderr[-2000:]


def steps(path):
    return [r["step"] for r in read_jsonl(path / "metrics.jsonl")]


def same_tensors(a, b):
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)


def no_temp_files(path):
    left = [p for p in Path(path).rglob("*.tmp")]
    assert not left, left


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A micro Llama saved as a model directory + syn_sst2 (remap) prepared for IA2 (N=4)."""
    from actlab.core.testing import micro_model, micro_tokenizer
    from actlab.data import make_train, prepare

    root = tmp_path_factory.mktemp("kill")
    tok = micro_tokenizer()
    m = micro_model("llama", tok)
    m.save_pretrained(root / "llama")
    tok.save_pretrained(root / "llama")
    prepare("syn_sst2", root / "data", num_train_samples=20, num_val_samples=4, label_template="remap")
    make_train(DS, root / "data", num_train_examples=[4], num_runs=1, max_icl_demos=2)
    return root


# ------------------------------------------------------------------------------------------------------------ IA2
def _ia2_cfg(world, out, **kw):
    cfg = dict(
        training_method="act",
        dataset=DS,
        model_id=str(world / "llama"),
        data_dir=str(world / "data"),
        output_dir=str(out),
        num_train_examples=4,
        max_steps=6,
        checkpoint_every=2,
        lr=1e-2,
        lora_r=4,
        lora_alpha=8,
        dev_eval_steps=1,
        patience=100,
        lora_dropout=0.1,
    )  # dropout: the RNG state matters
    cfg.update(kw)
    return cfg


def _ia2_path(cfg):
    from actlab.ia2 import IA2TrainConfig
    from actlab.ia2.naming import run_dir

    return run_dir(IA2TrainConfig(**cfg))


def _ia2_train(cfg):
    from actlab.ia2 import IA2TrainConfig
    from actlab.ia2.trainer import train

    return train(IA2TrainConfig(**cfg))


def _ia2_ref(world, tmp_path):
    return _ia2_train(_ia2_cfg(world, tmp_path / "ref"))


def _ia2_check(path, ref):
    assert (path / "COMPLETE").exists() and steps(path) == [1, 2, 3, 4, 5, 6]
    same_tensors(load_file(path / "adapter_model.safetensors"), load_file(ref / "adapter_model.safetensors"))
    for a, b in zip(read_jsonl(path / "metrics.jsonl"), read_jsonl(ref / "metrics.jsonl"), strict=True):
        assert a["train/loss"] == pytest.approx(b["train/loss"], rel=1e-5)
    no_temp_files(path)


def test_ia2_kill_after_a_logged_step_and_inside_a_checkpoint_write(world, tmp_path):
    cfg = _ia2_cfg(world, tmp_path / "run")
    path = _ia2_path(cfg)
    killed(drive("ia2", cfg, "kill@log:3"))  # step 3 logged, its checkpoint never written (last one: step 2)
    assert steps(path) == [1, 2, 3] and not (path / "COMPLETE").exists()
    killed(drive("ia2", cfg, "kill@ckpt:1"))  # resumes from 2; killed while writing the step-4 checkpoint
    assert steps(path) == [1, 2, 3, 4]
    _ia2_train(cfg)  # the rerun (in this process: faster than a third one)
    _ia2_check(path, _ia2_ref(world, tmp_path))


@pytest.mark.slow
@pytest.mark.parametrize("when", ["kill@step:1", "kill@step:5", "kill@ckpt:2", "kill@done"])
def test_ia2_kill_points(world, tmp_path, when):
    cfg = _ia2_cfg(world, tmp_path / "run")
    path = _ia2_path(cfg)
    killed(drive("ia2", cfg, when))
    ok(drive("ia2", cfg))
    _ia2_check(path, _ia2_ref(world, tmp_path))


def test_two_processes_one_run_directory(world, tmp_path):
    """The second process exits 2 with one line naming the first one's pid; once the first is killed its stale lock
    is taken over, and a sweep never starts a worker on the run the first one holds."""
    from actlab.ia2.sweep import SweepConfig, sweep

    cfg = _ia2_cfg(world, tmp_path / "run")
    path, mark = _ia2_path(cfg), tmp_path / "holding"
    holder = drive("ia2", cfg, "hold@log:2", mark=mark, wait=False)
    try:
        t0 = time.time()
        while not mark.exists():
            assert holder.poll() is None and time.time() - t0 < 120, holder.communicate()[1][-2000:]
            time.sleep(0.1)
        pid = int(mark.read_text())
        second = drive("ia2", cfg)
        lines = [x for x in second.stderr.splitlines() if x.strip()]
        assert second.returncode == 2 and len(lines) == 1, second.stderr
        assert lines[0].startswith("actlab: error: ") and f"pid {pid}" in lines[0] and str(path) in lines[0]
        assert f"pid {pid}" in lock_holder(path)
        base = {k: v for k, v in cfg.items() if k != "training_method"}
        rows = sweep(SweepConfig(training_methods=["act"], base=base))
        assert [r["status"] for r in rows] == ["busy"] and f"pid {pid}" in rows[0]["error"]
        assert steps(path) == [1, 2]  # nobody else wrote into the run
    finally:
        holder.kill()
        holder.wait()
    assert lock_holder(path) is None  # the kernel dropped the dead holder's lock
    _ia2_train(cfg)
    _ia2_check(path, _ia2_ref(world, tmp_path))


# ------------------------------------------------------------------------------------------------------ IA2 sweep
def test_sweep_worker_dies_with_the_sweep(tmp_path):
    """A worker started by the sweep gets SIGKILL from the kernel when the sweep is killed with -9."""
    code = (
        "import subprocess, sys, os; from actlab.ia2.sweep import _die_with_parent; "
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'], "
        "preexec_fn=_die_with_parent(os.getpid())); print(p.pid, flush=True); p.wait()"
    )
    sweep_proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    child = int(sweep_proc.stdout.readline())
    os.kill(sweep_proc.pid, signal.SIGKILL)
    sweep_proc.wait()
    t0 = time.time()
    while _alive(child) and time.time() - t0 < 10:
        time.sleep(0.05)
    assert not _alive(child)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.slow
def test_killed_sweep_then_rerun(world, tmp_path):
    """kill -9 of a running sweep: its worker dies too (the run's lock is freed), and a rerun of the sweep resumes the
    run to the weights of an uninterrupted one, each step logged once."""
    cfg = _ia2_cfg(world, tmp_path / "run", max_steps=120, num_epochs=120, checkpoint_every=20)
    path = _ia2_path(cfg)
    base = {k: v for k, v in cfg.items() if k != "training_method"}
    code = (
        "import json, sys; from actlab.ia2.sweep import SweepConfig, sweep; "
        "sweep(SweepConfig(training_methods=['act'], base=json.loads(sys.argv[1])))"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACTLAB_QUIET": "1", "HF_HUB_OFFLINE": "1"}
    sw = subprocess.Popen(
        [sys.executable, "-c", code, json.dumps(base)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    t0 = time.time()
    while len(steps(path)) < 30 and time.time() - t0 < 200:
        time.sleep(0.1)
    os.kill(sw.pid, signal.SIGKILL)
    sw.wait()
    t0 = time.time()
    while lock_holder(path) is not None and time.time() - t0 < 10:
        time.sleep(0.05)
    assert lock_holder(path) is None and not (path / "COMPLETE").exists()
    from actlab.ia2.sweep import SweepConfig, sweep

    rows = sweep(SweepConfig(training_methods=["act"], base=base))
    assert rows[0]["status"] == "done", rows
    assert steps(path) == list(range(1, 121))
    from actlab.ia2 import IA2TrainConfig
    from actlab.ia2.trainer import train

    ref = train(IA2TrainConfig(**{**cfg, "output_dir": str(tmp_path / "ref")}))
    same_tensors(load_file(path / "adapter_model.safetensors"), load_file(ref / "adapter_model.safetensors"))


# ------------------------------------------------------------------------------------------------------------ IAV
def _iav_cfg(world, out):
    return dict(
        model_name_or_path=str(world / "llama"),
        output_dir=str(out),
        num_train_samples=16,
        num_val_samples=4,
        batch_size=2,
        seq_length=48,
        max_prompt_length=24,
        save_steps=2,
        eval_steps=2,
        device="cpu",
        learning_rate=1e-2,
        max_steps=6,
    )


def test_iav_kill_after_a_logged_step_and_inside_a_checkpoint_write(world, tmp_path):
    from actlab.iav.config import TrainConfig
    from actlab.iav.trainer import train

    cfg = _iav_cfg(world, tmp_path / "run")
    path = Path(cfg["output_dir"])
    killed(drive("iav", cfg, "kill@log:3"))
    assert steps(path) == [1, 2, 3]
    killed(drive("iav", cfg, "kill@ckpt:1"))
    assert steps(path) == [1, 2, 3, 4]
    train(TrainConfig(**cfg))  # the rerun
    ref = train(TrainConfig(**_iav_cfg(world, tmp_path / "ref")))
    assert steps(path) == [1, 2, 3, 4, 5, 6]
    same_tensors(
        load_file(path / "heads" / "iav_heads.safetensors"), load_file(ref / "heads" / "iav_heads.safetensors")
    )
    no_temp_files(path)


# ----------------------------------------------------------------------------------------------------------- ICAE
def _icae_cfg(world, out, **kw):
    cfg = dict(
        model_name=str(world / "llama"),
        output_dir=str(out),
        data_dir=str(world / "icae_data"),
        fixed_mem_size=4,
        mean_compression_rate=2,
        lora_r=4,
        max_seq_len=64,
        num_train_samples=20,
        num_eval_samples=4,
        max_steps=6,
        save_steps=2,
        logging_steps=3,
        per_device_train_batch_size=2,
        warmup_steps=1,
        device="cpu",
    )  # logging every 3, checkpoints every 2: the accumulators resume
    cfg.update(kw)
    return cfg


@pytest.mark.parametrize("verb", ["icae-pretrain", pytest.param("icae-finetune", marks=pytest.mark.slow)])
def test_icae_kill_mid_step_and_inside_a_checkpoint_write(world, tmp_path, verb):
    from actlab.icae import data, trainer
    from actlab.icae.config import ICAEConfig

    kw = {"task": "qa"} if verb == "icae-finetune" else {}
    cfg = _icae_cfg(world, tmp_path / "run", **kw)
    data.prepare_pretrain(ICAEConfig(**cfg))
    path = Path(cfg["output_dir"]) / ("pretrain" if verb == "icae-pretrain" else "finetune_qa")
    killed(drive(verb, cfg, "kill@step:4"))  # after the step-3 row and the step-2 checkpoint
    assert steps(path) == [3]
    killed(drive(verb, cfg, "kill@ckpt:1"))  # resumed from 2, killed writing the step-4 checkpoint
    fn = trainer.pretrain if verb == "icae-pretrain" else trainer.finetune
    fn(ICAEConfig(**cfg))  # the rerun
    assert steps(path) == [3, 6]
    fn(ICAEConfig(**_icae_cfg(world, tmp_path / "ref", **kw)))
    ref = Path(tmp_path / "ref") / path.name
    same_tensors(load_file(path / "icae.safetensors"), load_file(ref / "icae.safetensors"))
    for a, b in zip(read_jsonl(path / "metrics.jsonl"), read_jsonl(ref / "metrics.jsonl"), strict=True):
        assert a["train/loss"] == pytest.approx(b["train/loss"], rel=1e-5)
    no_temp_files(path)


# ------------------------------------------------------------------------------------------------------------ zoo
def test_zoo_build_kill_mid_step_and_inside_a_checkpoint_write(tmp_path):
    from actlab.zoo.build import build
    from tests.core.kill_driver import zoo_spec

    final = tmp_path / "models" / "micro"
    killed(drive("zoo", {"final": str(final)}, "kill@step:4"))
    killed(drive("zoo", {"final": str(final)}, "kill@ckpt:1"))  # resumed from 2, killed writing the step-4 one
    build(zoo_spec(), final)  # the rerun
    man = json.loads((final / "manifest.json").read_text())
    assert man["train"]["resumed_from_step"] == 2
    ref = build(zoo_spec(), tmp_path / "ref" / "micro")
    same_tensors(load_file(final / "model.safetensors"), load_file(ref / "model.safetensors"))
    no_temp_files(final)


# --------------------------------------------------------------------------------------------------------- xmodel
def test_xmodel_extract_kill_inside_a_shard_write_and_other_settings(world, tmp_path):
    from actlab.xmodel.experiments import load_texts

    texts = load_texts("syn_passages", 12, 0)
    cfg = dict(
        model_a=str(world / "llama"),
        model_b=str(world / "llama"),
        texts=texts,
        out=str(tmp_path / "pairs"),
        shard_size=4,
    )
    killed(drive("xmodel-extract", cfg, "kill@shard:2"))
    out = Path(cfg["out"])
    assert sorted(p.name for p in out.glob("shard-*")) == ["shard-00000.safetensors"]
    from actlab.core.io import ConfigMismatch
    from actlab.core.models import load
    from actlab.xmodel.extract import extract_pairs

    m, tok = load(cfg["model_a"])

    def extract(out, **kw):
        return extract_pairs(m, tok, m, tok, texts, out, shard_size=4, **kw)

    extract(out)  # the rerun
    extract(tmp_path / "ref")
    for s in range(3):
        same_tensors(
            load_file(out / f"shard-{s:05d}.safetensors"), load_file(tmp_path / "ref" / f"shard-{s:05d}.safetensors")
        )
    no_temp_files(out)
    with pytest.raises(ConfigMismatch, match="pooling: 'last' -> 'mean'"):  # a used directory is never reused
        extract(out, pooling="mean")
    extract(out, pooling="mean", overwrite=True)
    assert json.loads((out / "pairs.json").read_text())["pooling"] == "mean"
    assert len(list(out.glob("shard-*"))) == 3


@pytest.mark.slow
@pytest.mark.parametrize("verb", ["iav", "icae-pretrain"])
def test_two_processes_one_run_directory_iav_icae(world, tmp_path, verb):
    from actlab.icae import data
    from actlab.icae.config import ICAEConfig

    if verb == "iav":
        cfg, path = _iav_cfg(world, tmp_path / "run"), tmp_path / "run"
    else:
        cfg, path = _icae_cfg(world, tmp_path / "run", logging_steps=1), tmp_path / "run" / "pretrain"
        data.prepare_pretrain(ICAEConfig(**cfg))
    mark = tmp_path / "holding"
    holder = drive(verb, cfg, "hold@log:2", mark=mark, wait=False)
    try:
        t0 = time.time()
        while not mark.exists():
            assert holder.poll() is None and time.time() - t0 < 120, holder.communicate()[1][-2000:]
            time.sleep(0.1)
        second = drive(verb, cfg)
        lines = [x for x in second.stderr.splitlines() if x.strip()]
        assert second.returncode == 2 and len(lines) == 1 and f"pid {mark.read_text()}" in lines[0], second.stderr
        assert steps(path) == [1, 2]
    finally:
        holder.kill()
        holder.wait()
    ok(drive(verb, cfg))
    assert steps(path) == ([1, 2, 3, 4, 5, 6])
