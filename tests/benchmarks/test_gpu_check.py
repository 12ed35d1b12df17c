"""The GPU check (benchmarks/gpu_check.py) in its fast CPU form: micro shape, every family, bf16 and fp32."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_check") / "check.json"
    rc = _load().main(["--shape", "micro", "--device", "cpu", "--threads", "1", "--reps", "2", "--out", str(out)])
    return rc, json.loads(out.read_text())


def test_every_family_runs_in_both_dtypes(report):
    rc, res = report
    assert rc == 0 and res["failed"] == []
    assert set(res["families"]) == {"capture", "ia2_step", "iav", "xmodel", "icae"}
    for fam, entry in res["families"].items():
        for dt in ("bf16", "fp32"):
            figures = entry[dt]
            assert "error" not in figures, (fam, dt, figures.get("error"))
            rates = [v for k, v in figures.items() if k.endswith("_per_s")]
            peaks = [v for k, v in figures.items() if k.endswith("peak_mib")]
            assert rates and all(v > 0 for v in rates), (fam, dt, figures)
            assert peaks and all(v > 0 for v in peaks), (fam, dt, figures)


def test_bf16_is_compared_with_fp32(report):
    _, res = report
    fams = res["families"]
    cap = fams["capture"]["bf16_vs_fp32"]
    assert 0 < cap["rel_err"] < 0.05 and cap["min_cosine"] > 0.99  # different dtypes, same function
    for fam in ("ia2_step", "iav", "icae"):
        agree = fams[fam]["bf16_vs_fp32"]
        assert agree["loss_rel_diff"] < 0.05, (fam, agree)
        assert agree["loss_bf16"] != agree["loss_fp32"] or fam == "ia2_step", (fam, agree)
    for fam in ("iav", "icae"):
        assert 0.0 <= fams[fam]["bf16_vs_fp32"]["same_greedy_tokens"] <= 1.0
    x = fams["xmodel"]["bf16_vs_fp32"]
    assert 0 < x["acts_rel_err"] < 0.05


def test_unknown_family_is_a_one_line_error(tmp_path, capsys):
    rc = _load().main(
        ["--shape", "micro", "--device", "cpu", "--families", "capture,nope", "--out", str(tmp_path / "x.json")]
    )
    assert rc == 2
    assert "nope" in capsys.readouterr().out
    assert not (tmp_path / "x.json").exists()


def test_shell_wrapper_passes_its_arguments(tmp_path):
    out = tmp_path / "g.json"
    env = {**os.environ, "PY": sys.executable, "OMP_NUM_THREADS": "1"}
    p = subprocess.run(
        [
            "bash",
            str(ROOT / "benchmarks" / "gpu_check.sh"),
            "--shape",
            "micro",
            "--device",
            "cpu",
            "--threads",
            "1",
            "--reps",
            "1",
            "--families",
            "capture",
            "--dtypes",
            "fp32",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert p.returncode == 0, p.stdout + p.stderr
    res = json.loads(out.read_text())
    assert res["shape"] == "micro" and list(res["families"]) == ["capture"] and res["dtypes"] == ["fp32"]
