import json

import pytest

from actlab.cli.main import main
from tests.data import hub_rows


def _one_line_error(capsys):
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize(
    "argv",
    [
        ["data", "prepare", "--dataset", "sst3"],
        ["data", "prepare", "--dataset", "sst2", "sst3"],  # checked before any work
        ["data", "make-train", "--datasets", "sst3", "--num_train_examples", "4"],
    ],
)
def test_unknown_dataset_one_line_exit_2(argv, capsys, tmp_path):
    assert main([*argv, "--data_dir", str(tmp_path)]) == 2
    line = _one_line_error(capsys)
    assert "unknown dataset 'sst3'" in line and "did you mean 'sst2'" in line
    assert "valid:" in line and "gsm8k" in line and "sciq_remap" in line
    assert not (tmp_path / "sst2").exists()


def test_bad_flag_values_one_line(capsys, tmp_path):
    with pytest.raises(SystemExit) as e:
        main(["data", "prepare", "--dataset", "sst2", "--label_template", "weird"])
    assert e.value.code == 2
    assert "invalid choice: 'weird'" in _one_line_error(capsys)
    assert (
        main(["data", "prepare", "--dataset", "gsm8k", "--label_template", "remap", "--data_dir", str(tmp_path)]) == 2
    )
    assert "not supported for dataset 'gsm8k'" in _one_line_error(capsys)
    assert main(["data", "prepare", "--dataset", "cmath", "--subset", "alg/ebra", "--data_dir", str(tmp_path)]) == 2
    assert "'alg/ebra' is not a camel-ai/math topic" in _one_line_error(capsys)
    assert main(["data", "make-train", "--datasets", "agnews", "--data_dir", str(tmp_path)]) == 2
    assert "actlab data prepare --dataset agnews" in _one_line_error(capsys)


def test_list(capsys, tmp_path):
    assert main(["data", "list", "--data_dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "stanfordnlp/sst2" in out and "qasc_remap" in out and "syn_gsm8k" in out and "cmath" in out


def test_prepare_cmath_subset_through_the_hub_path(monkeypatch, tmp_path, capsys):
    import datasets

    def fake_load(path, name=None, split=None, **kw):
        assert (path, name, split) == ("camel-ai/math", None, "train")
        return datasets.Dataset.from_list(hub_rows.camel_math(40))

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    assert (
        main(
            [
                "data",
                "prepare",
                "--dataset",
                "cmath",
                "--subset",
                "algebra",
                "--num_train_samples",
                "6",
                "--num_val_samples",
                "4",
                "--data_dir",
                str(tmp_path),
            ]
        )
        == 0
    )
    doc = json.loads((tmp_path / "cmath_algebra" / "main.json").read_text())
    assert doc["metadata"]["num_train_examples"] == 6 and doc["metadata"]["num_val_examples"] == 4
    assert all("Solve for x" in e["prompt"] for e in doc["val_examples"])
    assert main(["data", "prepare", "--dataset", "cmath", "--subset", "geometry", "--data_dir", str(tmp_path)]) == 2
    assert "algebra" in _one_line_error(capsys)


def test_prepare_and_make_train_through_the_hub_path(monkeypatch, tmp_path, capsys):
    import datasets

    def fake_load(path, name=None, split=None, **kw):
        assert (path, name) == ("fancyzhx/ag_news", None)
        return datasets.Dataset.from_list(hub_rows.agnews(40 if split == "train" else 20))

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    d = str(tmp_path)
    assert (
        main(
            [
                "data",
                "prepare",
                "--dataset",
                "agnews",
                "--num_train_samples",
                "20",
                "--num_val_samples",
                "8",
                "--label_template",
                "remap",
                "--data_dir",
                d,
            ]
        )
        == 0
    )
    assert "agnews_remap: wrote" in capsys.readouterr().out
    assert main(["data", "prepare", "--dataset", "agnews", "--label_template", "remap", "--data_dir", d]) == 0
    assert "skipped" in capsys.readouterr().err
    assert (
        main(
            [
                "data",
                "make-train",
                "--datasets",
                "agnews_remap",
                "--num_train_examples",
                "2",
                "4",
                "--num_runs",
                "2",
                "--max_icl_demos",
                "5",
                "--num_dev_examples",
                "50",
                "--data_dir",
                d,
            ]
        )
        == 0
    )
    doc = json.loads((tmp_path / "agnews_remap" / "train" / "4_1.json").read_text())
    assert len(doc["train"]["examples"]) == 4 and len(doc["dev"]["examples"]) == 2
    assert all(len(x) == 3 for x in doc["train"]["demos"])
    assert doc["train"]["examples"][0]["answer"] in {"apple", "Friday", "banana", "Saturday"}
