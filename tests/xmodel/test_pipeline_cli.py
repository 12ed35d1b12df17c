"""run-all end to end on micro models (+ resume), the CLI's one-line errors, multi-process extraction."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from actlab.cli.main import main
from actlab.core.errors import ActlabError
from actlab.core.testing import micro_model, micro_tokenizer
from actlab.xmodel import align as A
from actlab.xmodel.config import XModelConfig
from actlab.xmodel.experiments import run_all


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    tok = micro_tokenizer()
    out = []
    for name, arch, seed, hidden in (("a", "llama", 0, 32), ("b", "llama", 1, 48)):
        m = micro_model(arch, tok, seed=seed, hidden=hidden)
        m.save_pretrained(root / name)
        tok.save_pretrained(root / name)
        out.append(str(root / name))
    return out


def test_run_all_end_to_end_and_resume(tmp_path, monkeypatch):
    tok = micro_tokenizer()
    models = (
        (micro_model("llama", tok, hidden=32), tok),
        (micro_model("llama", tok, seed=1, hidden=48, layers=3), tok),
    )
    cfg = XModelConfig(
        model_a="a",
        model_b="b",
        n_texts=40,
        heldout=0.25,
        n_eval=6,
        n_dev=4,
        epochs=1,
        methods=["procrustes", "ridge", "learned", "lora"],
        ac_maps=["learned"],
        max_new_tokens=2,
        message_tokens=4,
    )
    res = run_all(cfg, tmp_path / "run", models=models)
    run = tmp_path / "run"
    for f in ("COMPLETE", "cka_debiased.png", "grid.png", "maps/learned/map.safetensors", "results.md"):
        assert (run / f).exists(), f
    assert len(res["cka"]["debiased"]) == 2 and len(res["cka"]["debiased"][0]) == 3
    assert res["grid"]["k"] in (0, 1) and res["grid"]["j"] in (0, 1, 2)
    comm = res["communicate"]["methods"]
    assert set(comm) == {"b_alone", "a_alone", "skyline", "nl", "ac", "ac[learned]"}
    assert comm["ac"]["applied"] == 1 and comm["ac"]["flops"] < comm["nl"]["flops"]
    maps = res["maps"]["methods"]
    assert maps["ridge"]["r2"] > maps["procrustes"]["r2"] - 1e-9 or maps["ridge"]["r2"] > 0
    # CKA of a Procrustes-mapped A equals the raw CKA (invariance), whatever the fit
    assert maps["procrustes"]["cka_debiased"] == pytest.approx(res["maps"]["raw_cka_debiased"], abs=1e-6)
    # resume: every stage is read back, nothing is refitted
    monkeypatch.setattr(A, "fit_map", lambda *a, **k: (_ for _ in ()).throw(AssertionError("refit")))
    again = run_all(cfg, run, models=models)
    assert again["maps"] == res["maps"]
    with pytest.raises(ActlabError, match="another config"):
        run_all(XModelConfig(model_a="a", model_b="b", n_texts=41), run, models=models)


def test_config_bad_values():
    with pytest.raises(ActlabError, match="same"):
        XModelConfig(model_a="tiny", model_b="./tiny/../tiny")
    with pytest.raises(ActlabError, match="unknown f 'max'; valid: mean, replace, sum"):
        XModelConfig(f="max")
    with pytest.raises(ActlabError, match="debiased CKA needs at least 4"):
        XModelConfig(n_texts=10, heldout=0.2)


def _one_line(capsys, argv):
    rc = main(argv)
    err = capsys.readouterr().err.strip()
    errors = [x for x in err.splitlines() if "error" in x]  # (transformers' weight-loading bars may precede it)
    assert rc == 2 and len(errors) == 1 and "Traceback" not in err, err
    return errors[0]


def test_cli_bad_input_one_line(capsys, model_dirs, tmp_path):
    a, b = model_dirs
    err = _one_line(capsys, ["xmodel", "extract", "--model_a", a, "--model_b", a + "/", "--out", str(tmp_path / "x")])
    assert "same" in err
    err = _one_line(capsys, ["xmodel", "communicate", "--model_a", a, "--model_b", b, "--k", "7", "--n", "2"])
    assert "layer 7 out of range for a 2-layer model; valid: 0..1" in err
    err = _one_line(
        capsys, ["xmodel", "run-all", "--model_a", a, "--model_b", b, "--f", "avg", "--out", str(tmp_path / "r")]
    )
    assert "unknown f 'avg'" in err
    err = _one_line(
        capsys, ["xmodel", "run-all", "--model_a", a, "--model_b", b, "--n_texts", "12", "--out", str(tmp_path / "r")]
    )
    assert "at least 4" in err
    with pytest.raises(SystemExit) as e:
        main(["xmodel", "communicate", "--model_a", a, "--model_b", b, "--f", "avg"])
    assert e.value.code == 2
    assert not (tmp_path / "r").exists() and not (tmp_path / "x").exists()  # nothing half-written


def test_cli_extract_align_communicate(capsys, model_dirs, tmp_path):
    a, b = model_dirs
    txt = tmp_path / "t.txt"
    txt.write_text("\n".join(f"the cat {w} is red" for w in ("one two three four five six seven eight".split())))
    assert (
        main(
            [
                "xmodel",
                "extract",
                "--model_a",
                a,
                "--model_b",
                b,
                "--texts",
                str(txt),
                "--heldout",
                "0.5",
                "--out",
                str(tmp_path / "p"),
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "xmodel",
                "align",
                "--pairs",
                str(tmp_path / "p"),
                "--method",
                "ridge",
                "--layer_a",
                "-1",
                "--layer_b",
                "0",
                "--out",
                str(tmp_path / "m"),
            ]
        )
        == 0
    )
    assert A.load_map(tmp_path / "m").cfg.d_out == 48
    assert (
        main(
            [
                "xmodel",
                "communicate",
                "--model_a",
                a,
                "--model_b",
                b,
                "--k",
                "1",
                "--j",
                "0",
                "--n",
                "3",
                "--map",
                str(tmp_path / "m"),
                "--methods",
                "b_alone,ac",
                "--out",
                str(tmp_path / "c"),
            ]
        )
        == 0
    )
    assert "ac " in capsys.readouterr().out and (tmp_path / "c" / "communicate.json").exists()


@pytest.mark.slow
def test_torchrun_two_cpu_processes_match_single(model_dirs, tmp_path):
    a, b = model_dirs
    txt = tmp_path / "t.txt"
    txt.write_text("\n".join(f"alice has {n} red book" for n in range(10)))
    env = {**os.environ, "ACTLAB_QUIET": "1", "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        "29517",
        "-m",
        "actlab.cli.main",
        "xmodel",
        "extract",
        "--model_a",
        a,
        "--model_b",
        b,
        "--texts",
        str(txt),
        "--shard_size",
        "3",
        "--out",
        str(tmp_path / "dist"),
    ]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-2000:]
    from actlab.core.io import load_tensors, read_json
    from actlab.xmodel.extract import load_pairs

    ranks = {load_tensors(tmp_path / "dist" / f"shard-{s:05d}.safetensors")[1]["rank"] for s in range(4)}
    assert ranks == {"0", "1"} and read_json(tmp_path / "dist" / "pairs.json")["world_size"] == 2
    assert (
        main(
            [
                "xmodel",
                "extract",
                "--model_a",
                a,
                "--model_b",
                b,
                "--texts",
                str(txt),
                "--shard_size",
                "3",
                "--out",
                str(tmp_path / "single"),
            ]
        )
        == 0
    )
    d, s = load_pairs(tmp_path / "dist"), load_pairs(tmp_path / "single")
    assert torch.allclose(d.a, s.a, atol=1e-5) and torch.allclose(d.b, s.b, atol=1e-5)
    assert torch.equal(d.test, s.test)
    assert Path(tmp_path / "dist" / "pairs.json").exists()


def test_cli_demo_on_local_models_token_pooling(capsys, model_dirs, tmp_path):
    a, b = model_dirs
    rc = main(
        [
            "xmodel",
            "demo",
            "--model_a",
            a,
            "--model_b",
            b,
            "--pooling",
            "tokens",
            "--n_texts",
            "16",
            "--heldout",
            "0.25",
            "--n_eval",
            "4",
            "--n_dev",
            "0",
            "--k",
            "1",
            "--j",
            "0",
            "--epochs",
            "1",
            "--methods",
            "procrustes,ridge",
            "--ac_maps",
            "ridge",
            "--max_new_tokens",
            "2",
            "--message_tokens",
            "2",
            "--out",
            str(tmp_path / "demo"),
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0 and "Debiased CKA" in out and "| ac[ridge] |" in out and "AC / NL compute" in out
    for s in (0, 1, 2):  # one run per seed, then the summary over seeds
        assert (tmp_path / "demo" / f"seed{s}" / "COMPLETE").exists()
        assert (tmp_path / "demo" / f"seed{s}" / "maps" / "ridge" / "map.json").exists()
    assert "3 seeds (mean ± 95 % CI over seeds)" in out and "| ridge − " not in out  # no learned W in this run
    assert "| ac − b_alone |" in out and (tmp_path / "demo" / "summary.json").exists()


def test_summary_over_seeds_is_a_t_interval_and_pairs_by_seed():
    from scipy import stats as sps

    from actlab.xmodel.experiments import format_summary, summarize

    r2 = {"learned": [0.30, 0.36, 0.33], "ridge": [0.60, 0.62, 0.65]}
    acc = {"b_alone": [0.05, 0.10, 0.07], "nl": [0.08, 0.09, 0.10], "ac": [0.07, 0.12, 0.08]}

    def run(i):
        maps = {
            m: {"r2": v[i], "cosine": 0.9, "cka_debiased": 0.5, "infonce": 4.0, "n_trainable": 10}
            for m, v in r2.items()
        }
        return {
            "config": {"model_a": "a", "model_b": "b"},
            "maps": {"k": 1, "j": 0, "n_test": 5, "methods": maps},
            "communicate": {"n": 9, "task": "t", "methods": {m: {"accuracy": v[i]} for m, v in acc.items()}},
        }

    sm = summarize({s: run(s) for s in range(3)})
    lo, hi = sps.ttest_1samp(r2["ridge"], 0).confidence_interval(0.95)
    assert sm["maps"]["ridge"]["r2"]["ci95"] == pytest.approx((hi - lo) / 2)
    lo, hi = sps.ttest_rel(r2["ridge"], r2["learned"]).confidence_interval(0.95)
    d = sm["map_r2_diffs"]["ridge − learned"]
    assert d["mean"] == pytest.approx((lo + hi) / 2) and d["ci95"] == pytest.approx((hi - lo) / 2)
    lo, hi = sps.ttest_rel(acc["ac"], acc["b_alone"]).confidence_interval(0.95)
    assert sm["communicate_diffs"]["ac − b_alone"]["ci95"] == pytest.approx((hi - lo) / 2)
    assert "b_alone − nl" not in sm["communicate_diffs"] and "ac − nl" in sm["communicate_diffs"]
    text = format_summary(sm)
    assert "| ridge − learned | +0.293 ± " in text and text.count("*") >= 1
