"""``--report_to`` (accelerate's experiment trackers): every trainer's ``metrics.jsonl`` rows also go to TensorBoard
event files and (offline) W&B runs, by the same names and steps; a bad or missing tracker is one line, exit 2."""

import glob
import importlib.util
import json
import math
import struct
import time
from pathlib import Path

import pytest

from actlab.cli.main import main
from actlab.core.errors import ActlabError
from actlab.core.io import RunDir, check_report_to, read_jsonl
from actlab.core.testing import micro_model, micro_tokenizer

needs_tb = pytest.mark.skipif(importlib.util.find_spec("tensorboard") is None, reason="tensorboard not installed")
needs_wandb = pytest.mark.skipif(importlib.util.find_spec("wandb") is None, reason="wandb not installed")


# ------------------------------------------------------------------------------------------------------- readers
def tb_scalars(run: Path) -> dict[str, list[tuple[int, float]]]:
    """``{tag: [(step, value), ...]}`` read back from ``run/tensorboard`` with tensorboard's own reader."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ea = EventAccumulator(str(run / "tensorboard"))
    ea.Reload()
    return {tag: [(e.step, e.value) for e in ea.Scalars(tag)] for tag in ea.Tags()["scalars"]}


def wandb_history(wandb_dir: Path, timeout: float = 30.0) -> list[dict]:
    """The history rows of the offline W&B runs under ``wandb_dir``, decoded from each run's ``.wandb`` log (a leveldb
    log of ``Record`` protobufs; W&B writes no summary file offline). Keys starting with ``_`` are W&B's own. W&B's
    service writes the log after ``finish()`` returns: wait (up to ``timeout`` s) for each run's exit record."""
    files = sorted(glob.glob(str(wandb_dir / "wandb" / "offline-run-*" / "*.wandb")))
    assert files, f"no offline W&B run under {wandb_dir}"
    deadline = time.monotonic() + timeout
    rows: list[dict] = []
    for f in files:
        while True:
            kinds, hist = _wandb_records(Path(f))
            if "exit" in kinds or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        rows += hist
    return rows


def _wandb_records(f: Path) -> tuple[set, list[dict]]:
    from wandb.proto import wandb_internal_pb2 as pb

    kinds, rows = set(), []
    data = f.read_bytes()
    if data[:4] != b":W&B":  # not written yet
        return kinds, rows
    pos, buf = 7, b""
    while pos + 7 <= len(data):
        left = 32768 - pos % 32768
        if left < 7:  # a block's tail too short for a header is padding
            pos += left
            continue
        _crc, n, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if pos + 7 + n > len(data):  # a record still being written
            break
        buf += data[pos + 7 : pos + 7 + n]
        pos += 7 + n
        if kind in (1, 4):  # FULL or LAST chunk of a record
            rec = pb.Record()
            rec.ParseFromString(buf)
            buf = b""
            kinds.add(rec.WhichOneof("record_type"))
            if rec.WhichOneof("record_type") == "history":
                row = {(i.key or "/".join(i.nested_key)): json.loads(i.value_json) for i in rec.history.item}
                rows.append({"step": rec.history.step.num, **{k: v for k, v in row.items() if not k.startswith("_")}})
    return kinds, rows


def expected(rows: list[dict]) -> dict[str, list[tuple[int, float]]]:
    """What a tracker must hold for ``metrics.jsonl`` rows: every numeric field but ``step``, at the row's step."""
    out: dict[str, list] = {}
    for r in rows:
        for k, v in r.items():
            if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                out.setdefault(k, []).append((r["step"], v))
    return out


def assert_same(got: dict, rows: list[dict]) -> None:
    want = expected(rows)
    assert want, "the run logged no numeric metrics"
    assert set(got) == set(want), (sorted(got), sorted(want))
    for k, pts in want.items():
        assert [s for s, _ in got[k]] == [s for s, _ in pts], k
        for (_, a), (_, b) in zip(got[k], pts, strict=True):
            assert a == pytest.approx(b, rel=1e-6, abs=1e-6), k  # TensorBoard stores float32


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    lines = [x for x in err.splitlines() if x.strip() and "Loading weights" not in x]
    assert len(lines) == 1 and lines[0].startswith("actlab: error: "), err
    return lines[0]


# ------------------------------------------------------------------------------------------------------- the flag
def test_report_to_values():
    assert check_report_to(None) == [] and check_report_to(["none"]) == [] and check_report_to("none") == []
    assert check_report_to(["tensorboard,wandb", "tensorboard"]) == ["tensorboard", "wandb"]
    assert check_report_to(["none"], wandb=True) == ["wandb"]  # --wandb_log is --report_to wandb
    with pytest.raises(
        ActlabError,
        match=r"--report_to: unknown tracker 'tensorbord'; valid choices: none, "
        r"tensorboard, wandb, mlflow",
    ):
        check_report_to(["tensorbord"])


def _hide(monkeypatch, package):
    """Make ``import <package>`` fail, as if it were not installed."""
    import builtins

    real = builtins.__import__

    def fake(name, *a, **k):
        if name.split(".")[0] == package:
            raise ImportError(f"No module named {package!r}")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", fake)


def test_missing_tracker_package_is_one_line(monkeypatch):
    _hide(monkeypatch, "mlflow")
    with pytest.raises(ActlabError) as e:
        check_report_to(["tensorboard", "mlflow"], installed=True)
    assert str(e.value) == "--report_to mlflow needs the mlflow package: pip install 'actlab[mlflow]'"
    assert check_report_to(["mlflow"]) == ["mlflow"]  # only a run that reports needs it
    _hide(monkeypatch, "wandb")
    with pytest.raises(ActlabError, match=r"^--wandb_log needs the wandb package: pip install 'actlab\[wandb\]'$"):
        check_report_to([], wandb=True, installed=True)


@needs_tb
def test_rundir_mirrors_numeric_fields_and_writes_nothing_for_a_done_run(tmp_path):
    rows = [
        {"step": 1, "loss/train": 0.5, "lr": 1e-3, "phase": "warmup", "dev/acc": None},
        {"step": 3, "loss/train": 0.25, "dev/acc": 0.75, "flag": True, "loss/nan": float("nan")},
    ]
    cfg = {"lr": 1e-3, "layers": [1, 2], "opt": {"beta": 0.9}, "path": None}
    with RunDir(tmp_path / "run", report_to=["tensorboard"]) as rd:
        assert rd.begin(cfg) == "fresh"
        for r in rows:
            rd.log(r)
        rd.mark_complete()
    got = tb_scalars(tmp_path / "run")
    assert got == {"loss/train": [(1, 0.5), (3, 0.25)], "lr": [(1, pytest.approx(1e-3))], "dev/acc": [(3, 0.75)]}
    assert_same(got, read_jsonl(tmp_path / "run" / "metrics.jsonl"))
    hp = list((tmp_path / "run" / "tensorboard").glob("*/hparams.yml"))
    assert len(hp) == 1 and "opt.beta: 0.9" in hp[0].read_text()
    # a rerun of the finished run reports nothing (no new event file)
    before = sorted(p.name for p in (tmp_path / "run" / "tensorboard").rglob("*"))
    with RunDir(tmp_path / "run", report_to=["tensorboard"]) as rd:
        assert rd.begin(cfg) == "done"
    assert sorted(p.name for p in (tmp_path / "run" / "tensorboard").rglob("*")) == before


@needs_tb
def test_only_the_main_process_reports(tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    with RunDir(tmp_path / "run", report_to=["tensorboard"]) as rd:
        rd.begin({"lr": 1.0})
        rd.log({"step": 1, "loss": 1.0})
    assert (tmp_path / "run" / "metrics.jsonl").exists() and not (tmp_path / "run" / "tensorboard").exists()


@pytest.fixture()
def wandb_offline(tmp_path, monkeypatch):
    d = tmp_path / "wandb_root"
    d.mkdir()
    for k, v in {
        "WANDB_MODE": "offline",
        "WANDB_DIR": str(d),
        "WANDB_SILENT": "true",
        "WANDB_CONSOLE": "off",
        "WANDB_CONFIG_DIR": str(d / "config"),
        "WANDB_CACHE_DIR": str(d / "cache"),
    }.items():
        monkeypatch.setenv(k, v)
    return d


@needs_wandb
def test_rundir_wandb_offline_same_keys(tmp_path, wandb_offline):
    rows = [{"step": 2, "loss/train": 0.5, "note": "x"}, {"step": 4, "loss/train": 0.25, "dev/acc": 1.0}]
    with RunDir(tmp_path / "run", report_to=["wandb"], wandb_project="p") as rd:
        rd.begin({"lr": 0.1})
        for r in rows:
            rd.log(r)
        rd.mark_complete()
    hist = wandb_history(wandb_offline)
    assert_same(expected(hist), rows)


# ------------------------------------------------------------------------------------------------------- trainers
@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from actlab.data import make_train, prepare

    root = tmp_path_factory.mktemp("tracking")
    tok = micro_tokenizer()
    m = micro_model("llama", tok)
    m.save_pretrained(root / "llama")
    tok.save_pretrained(root / "llama")
    prepare("syn_sst2", root / "data", num_train_samples=20, num_val_samples=4, label_template="remap")
    make_train("syn_sst2_remap", root / "data", num_train_examples=[4], num_runs=1, max_icl_demos=2)
    return root


def _ia2(world, out, *extra):
    return [
        "ia2",
        "train",
        "--training_method",
        "act",
        "--dataset",
        "syn_sst2_remap",
        "--model_id",
        str(world / "llama"),
        "--data_dir",
        str(world / "data"),
        "--output_dir",
        str(out),
        "--num_train_examples",
        "4",
        "--max_steps",
        "3",
        *extra,
    ]


def _iav(world, out, *extra):
    return [
        "iav",
        "train",
        "--model_name_or_path",
        str(world / "llama"),
        "--output_dir",
        str(out),
        "--num_train_samples",
        "8",
        "--num_val_samples",
        "4",
        "--batch_size",
        "4",
        "--seq_length",
        "48",
        "--max_prompt_length",
        "24",
        "--max_steps",
        "2",
        "--eval_steps",
        "1",
        "--device",
        "cpu",
        *extra,
    ]


def _run_dir(out: Path) -> Path:
    found = [p.parent for p in out.rglob("metrics.jsonl")]
    assert len(found) == 1, found
    return found[0]


@needs_tb
def test_ia2_train_report_to_tensorboard(world, tmp_path):
    assert main(_ia2(world, tmp_path / "o", "--report_to", "tensorboard")) == 0
    run = _run_dir(tmp_path / "o")
    assert_same(tb_scalars(run), read_jsonl(run / "metrics.jsonl"))
    assert json.loads((run / "config.json").read_text())["report_to"] == ["tensorboard"]


@needs_tb
def test_iav_train_report_to_tensorboard(world, tmp_path):
    assert main(_iav(world, tmp_path / "o", "--report_to", "tensorboard")) == 0
    run = tmp_path / "o"
    rows = read_jsonl(run / "metrics.jsonl")
    assert len(rows) >= 2
    assert_same(tb_scalars(run), rows)


@needs_tb
def test_icae_pretrain_finetune_report_to_tensorboard(tmp_path):
    from actlab.icae import data, trainer
    from actlab.icae.config import ICAEConfig
    from actlab.icae.model import ICAE

    tok = micro_tokenizer()
    opts = dict(
        fixed_mem_size=4,
        mean_compression_rate=2,
        lora_r=4,
        max_seq_len=200,
        output_dir=str(tmp_path / "r"),
        num_train_samples=20,
        num_eval_samples=2,
        batch_size=2,
        max_steps=4,
        logging_steps=2,
        save_steps=2,
        per_device_train_batch_size=2,
        warmup_steps=1,
        report_to=["tensorboard"],
    )
    cfg = ICAEConfig(**opts)
    icae = ICAE(micro_model("llama", tok), tok, cfg)
    data.prepare_pretrain(cfg)
    trainer.pretrain(cfg, icae)
    trainer.finetune(ICAEConfig(**{**opts, "task": "qa", "max_steps": 2}), icae)
    for sub in ("pretrain", "finetune_qa"):
        run = tmp_path / "r" / sub
        rows = read_jsonl(run / "metrics.jsonl")
        assert rows, sub
        assert_same(tb_scalars(run), rows)


def test_bad_or_missing_tracker_exit_2_nothing_written(world, tmp_path, capsys, monkeypatch):
    out = tmp_path / "o"
    assert main(_ia2(world, out, "--report_to", "tensorbord")) == 2
    assert "--report_to: unknown tracker 'tensorbord'" in _one_line_error(capsys)
    _hide(monkeypatch, "tensorboard")
    for argv in (
        _ia2(world, out, "--report_to", "tensorboard"),
        _iav(world, out, "--report_to", "tensorboard"),
        ["icae", "pretrain", "--output_dir", str(out), "--report_to", "tensorboard"],
    ):
        assert main(argv) == 2
        assert "pip install 'actlab[tensorboard]'" in _one_line_error(capsys)
        assert not out.exists()


@needs_wandb
def test_ia2_wandb_log_alias_offline(world, tmp_path, wandb_offline):
    assert main(_ia2(world, tmp_path / "o", "--wandb_log")) == 0
    run = _run_dir(tmp_path / "o")
    assert_same(expected(wandb_history(wandb_offline)), read_jsonl(run / "metrics.jsonl"))


@needs_wandb
def test_iav_report_to_wandb_offline(world, tmp_path, wandb_offline):
    assert main(_iav(world, tmp_path / "o", "--report_to", "wandb")) == 0
    assert_same(expected(wandb_history(wandb_offline)), read_jsonl(tmp_path / "o" / "metrics.jsonl"))


@needs_wandb
def test_icae_report_to_wandb_offline(tmp_path, wandb_offline):
    from actlab.icae import data, trainer
    from actlab.icae.config import ICAEConfig
    from actlab.icae.model import ICAE

    tok = micro_tokenizer()
    cfg = ICAEConfig(
        fixed_mem_size=4,
        mean_compression_rate=2,
        lora_r=4,
        max_seq_len=200,
        output_dir=str(tmp_path / "r"),
        num_train_samples=20,
        batch_size=2,
        max_steps=4,
        logging_steps=2,
        save_steps=2,
        per_device_train_batch_size=2,
        warmup_steps=1,
        report_to=["wandb"],
    )
    data.prepare_pretrain(cfg)
    trainer.pretrain(cfg, ICAE(micro_model("llama", tok), tok, cfg))
    assert_same(expected(wandb_history(wandb_offline)), read_jsonl(tmp_path / "r" / "pretrain" / "metrics.jsonl"))


# ------------------------------------------------------------------------------------------------------- MLflow
needs_mlflow = pytest.mark.skipif(importlib.util.find_spec("mlflow") is None, reason="mlflow not installed")


@pytest.fixture()
def mlflow_store(tmp_path, monkeypatch):
    uri = (tmp_path / "mlruns").as_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3's file store is opt-in (sqlite needs sqlalchemy)
    return uri


def mlflow_metrics(uri: str, experiment: str = "actlab") -> dict[str, list[tuple[int, float]]]:
    """``{key: [(step, value), ...]}`` of the one run in ``experiment`` of the store at ``uri``."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1, runs
    run = runs[0]
    return {
        k: sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, k)) for k in run.data.metrics
    }


@needs_mlflow
def test_rundir_mlflow_file_store_same_keys(tmp_path, mlflow_store):
    rows = [{"step": 1, "loss/train": 0.5, "note": "x"}, {"step": 2, "loss/train": 0.25, "dev/acc": 0.75}]
    with RunDir(tmp_path / "run", report_to=["mlflow"]) as rd:
        rd.begin({"lr": 0.1, "opt": {"beta": 0.9}})
        for r in rows:
            rd.log(r)
        rd.mark_complete()
    got = mlflow_metrics(mlflow_store)
    assert got == {"loss/train": [(1, 0.5), (2, 0.25)], "dev/acc": [(2, 0.75)]}


@needs_mlflow
def test_ia2_train_report_to_mlflow(world, tmp_path, mlflow_store):
    assert main(_ia2(world, tmp_path / "o", "--report_to", "mlflow")) == 0
    run = _run_dir(tmp_path / "o")
    assert_same(mlflow_metrics(mlflow_store, "ia2"), read_jsonl(run / "metrics.jsonl"))  # IA2: --wandb_project
