"""``actlab ia2 train|sweep`` on the command line: bad input → one line, exit 2, nothing written; sweeps."""

import json

import pytest

from actlab.cli.main import main
from actlab.core.testing import micro_model, micro_tokenizer

DS = "syn_sst2_remap"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from actlab.data import make_train, prepare

    root = tmp_path_factory.mktemp("ia2_cli")
    tok = micro_tokenizer()
    for arch in ("llama", "gpt2"):
        m = micro_model(arch, tok)
        m.save_pretrained(root / arch)
        tok.save_pretrained(root / arch)
    prepare("syn_sst2", root / "data", num_train_samples=20, num_val_samples=4, label_template="remap")
    make_train(DS, root / "data", num_train_examples=[4], num_runs=2, max_icl_demos=2)
    return root


def _args(world, out, *extra, model="llama"):
    return [
        "ia2",
        "train",
        "--dataset",
        DS,
        "--model_id",
        str(world / model),
        "--data_dir",
        str(world / "data"),
        "--output_dir",
        str(out),
        "--num_train_examples",
        "4",
        "--max_steps",
        "2",
        *extra,
    ]


@pytest.mark.parametrize(
    "extra,msg",
    [
        (["--training_method", "actt"], "unknown training method 'actt' (did you mean 'act'?)"),
        (["--training_method", "tok"], "needs --label_type"),
        (["--training_method", "tna", "--ce_loss_weight", "2"], "--ce_loss_weight must be in [0, 1]"),
        (["--training_method", "ia3-act", "--ia3_type", "qg"], "gpt2 has no module for role g"),
        (["--training_method", "prompt-act", "--num_virtual_tokens", "0"], "--num_virtual_tokens must be a positive"),
        (["--training_method", "act", "--dataset", "syn_agnews"], "is not prepared"),
        (["--training_method", "act", "--num_train_examples", "8"], "is not made"),
        (["--training_method", "a2t", "--label_type", "icl_outputs"], "continues from the act adapter"),
    ],
)
def test_bad_input_one_line_exit_2(world, tmp_path, capsys, extra, msg):
    out = tmp_path / "out"
    model = "gpt2" if "ia3-act" in extra else "llama"
    rc = main(_args(world, out, *extra, model=model))
    err = capsys.readouterr().err.strip()
    lines = [x for x in err.replace("\r", "\n").splitlines() if x.strip() and "Loading weights" not in x]
    assert rc == 2 and len(lines) == 1 and msg in lines[0] and lines[0].startswith("actlab: error: "), err
    assert not out.exists()  # nothing half-written
    if "a2t" in extra:
        assert "/act/syn_sst2_remap/llama_qko_8_8_1_4_0.0001_0" in err  # names the parent's path


def test_train_cli_then_skip(world, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(_args(world, out, "--training_method", "act", "--num_generated_tokens", "2")) == 0
    path = out / "act" / DS / "llama_qko_8_8_2_4_0.0001_0"
    cfg = json.loads((path / "config.json").read_text())
    assert cfg["act_site"] == "attn_output" and cfg["num_generated_tokens"] == 2 and "_meta" in cfg
    assert main(_args(world, out, "--training_method", "act", "--num_generated_tokens", "2")) == 0
    assert "complete; skipped" in capsys.readouterr().err


def test_sweep_dry_run_grid(world, tmp_path, capsys):
    rc = main(
        [
            "ia2",
            "sweep",
            "--training_methods",
            "tok",
            "tna",
            "--include_sequential",
            "--sequential_first",
            "--datasets",
            DS,
            "--num_train_examples",
            "4",
            "--lrs",
            "1e-3",
            "1e-4",
            "--run_indices",
            "0",
            "1",
            "--ce_loss_weights",
            "0.1",
            "0.5",
            "--model_id",
            str(world / "llama"),
            "--data_dir",
            str(world / "data"),
            "--output_dir",
            str(tmp_path / "o"),
            "--dry_run",
        ]
    )
    lines = capsys.readouterr().out.strip().splitlines()
    assert rc == 0
    # tok, act, a2t, t2a: 2 lrs x 2 runs each; tna: x 2 ce weights
    assert len(lines) == 4 * 4 + 8
    assert sum("/tna/" in x for x in lines) == 8 and sum("/t2a/" in x for x in lines) == 4


def test_sweep_missing_parent_blocked(world, tmp_path, capsys):
    from actlab.ia2.sweep import SweepConfig, sweep

    base = dict(
        dataset=[DS],
        num_train_examples=[4],
        model_id=str(world / "llama"),
        data_dir=str(world / "data"),
        output_dir=str(tmp_path / "o"),
        max_steps=1,
    )
    rows = sweep(SweepConfig(["a2t"], label_types=["icl_outputs"], base=base))
    assert [r["status"] for r in rows] == ["blocked"] and "missing parent" in rows[0]["error"]


@pytest.mark.slow
@pytest.mark.multiproc
def test_sweep_two_workers(world, tmp_path, capsys):
    """tok + act + a2t + t2a in 2 CPU worker processes; parents first; one broken run does not stop the others."""
    out = tmp_path / "o"
    argv = [
        "ia2",
        "sweep",
        "--training_methods",
        "tok",
        "act",
        "--include_sequential",
        "--sequential_first",
        "--datasets",
        DS,
        "--num_train_examples",
        "4",
        "--lrs",
        "1e-3",
        "--run_indices",
        "0",
        "--model_id",
        str(world / "llama"),
        "--data_dir",
        str(world / "data"),
        "--output_dir",
        str(out),
        "--max_steps",
        "2",
        "--max_parallel",
        "2",
    ]
    rc = main(argv)
    cap = capsys.readouterr()
    text = cap.out
    assert rc == 0, text
    rows = json.loads((out / "sweep_summary.json").read_text())
    assert sorted(r["method"] for r in rows) == ["a2t", "act", "t2a", "tok"]
    assert all(r["status"] == "done" for r in rows), rows
    # stdout: the summary table and the counts; stderr: the progress lines; each worker's log: its run directory
    table = text.strip().splitlines()
    assert table[0].split()[:4] == ["status", "method", "dataset", "name"] and len(table) == 6, table
    assert sorted(x.split()[1] for x in table[1:5]) == ["a2t", "act", "t2a", "tok"] and table[-1].startswith("4 done")
    assert "ia2 sweep: 4 runs (4 to train, 0 complete, 0 blocked), 2 worker(s)" in cap.err
    assert all(f"ia2 sweep: done {r['method']} {r['name']}" in cap.err for r in rows), cap.err
    logs = [p.read_text() for p in (out / "sweep_logs").rglob("*.log")]
    assert len(logs) == 4 and all(f"run directory: {out}" in x for x in logs), logs
    # rerun: everything skipped
    assert main(argv) == 0
    rows = json.loads((out / "sweep_summary.json").read_text())
    assert all(r["status"] == "skipped" for r in rows)
    # one broken run (corrupt run file for run 1) fails alone; run 0 still trains
    import shutil

    data = tmp_path / "data"
    shutil.copytree(world / "data", data)
    (data / DS / "train" / "4_1.json").write_text("{not json")
    out2 = tmp_path / "o2"
    rc = main(
        [
            "ia2",
            "sweep",
            "--training_methods",
            "act",
            "--datasets",
            DS,
            "--num_train_examples",
            "4",
            "--run_indices",
            "0",
            "1",
            "--model_id",
            str(world / "llama"),
            "--data_dir",
            str(data),
            "--output_dir",
            str(out2),
            "--max_steps",
            "1",
            "--max_parallel",
            "2",
        ]
    )
    assert rc == 1
    rows = {r["name"]: r for r in json.loads((out2 / "sweep_summary.json").read_text())}
    assert rows["llama_qko_8_8_1_4_0.0001_0"]["status"] == "done"
    bad = rows["llama_qko_8_8_1_4_0.0001_1"]
    assert bad["status"] == "failed" and "corrupt JSON" in bad["error"] and "actlab: error:" in bad["error"]


def test_train_from_config_path(world, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(_args(world, out, "--training_method", "act")) == 0
    run = out / "act" / DS / "llama_qko_8_8_1_4_0.0001_0"
    # a run's config.json is a valid --config_path; flags override it
    assert (
        main(
            [
                "ia2",
                "train",
                "--config_path",
                str(run / "config.json"),
                "--training_method",
                "tok",
                "--label_type",
                "ground_truth",
            ]
        )
        == 0
    )
    assert (out / "tok" / DS / "llama_qko_8_8_1_4_0.0001_0_ground_truth" / "COMPLETE").exists()
    capsys.readouterr()
    assert main(["ia2", "train"]) == 2
    assert "--training_method is required" in capsys.readouterr().err
