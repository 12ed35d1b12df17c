"""CLI: the verbs run end to end on a micro model; bad input is one line, exit 2, nothing written."""

import json

import pytest

from actlab.cli.main import main


def _run(argv, capsys):
    rc = main(argv)
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def _train_args(micro_dir, out, *extra):
    return [
        "iav",
        "train",
        "--model_name_or_path",
        micro_dir,
        "--output_dir",
        str(out),
        "--num_train_samples",
        "8",
        "--num_val_samples",
        "0",
        "--batch_size",
        "4",
        "--seq_length",
        "48",
        "--max_prompt_length",
        "24",
        "--max_steps",
        "1",
        "--device",
        "cpu",
        *extra,
    ]


def test_train_generate_cache_verbs(tmp_path, micro_dir, capsys):
    yml = tmp_path / "c.yaml"
    yml.write_text("learning_rate: 0.02\nbeta: 0.2\n")
    rc, out, err = _run(
        _train_args(micro_dir, tmp_path / "run", "--config_path", str(yml), "--lambda_l2", "0.5"), capsys
    )
    assert rc == 0, err
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert cfg["learning_rate"] == 0.02 and cfg["loss"]["beta"] == 0.2 and cfg["loss"]["lambda_l2"] == 0.5
    rc, out, err = _run(
        [
            "iav",
            "generate",
            "--heads",
            str(tmp_path / "run"),
            "--prompt",
            "the cat",
            "--alpha",
            "0",
            "1.5",
            "--max_new_tokens",
            "4",
        ],
        capsys,
    )
    assert rc == 0, err
    lines = [json.loads(x) for x in out.strip().splitlines()]
    assert [r["alpha"] for r in lines] == [0.0, 1.5]
    rc, out, err = _run(
        [
            "iav",
            "cache",
            "--ref_model",
            micro_dir,
            "--num_samples",
            "8",
            "--seq_length",
            "48",
            "--max_prompt_length",
            "24",
            "--cache_file",
            str(tmp_path / "c.safetensors"),
        ],
        capsys,
    )
    assert rc == 0, err and (tmp_path / "c.safetensors").exists()
    rc, out, err = _run(
        _train_args(micro_dir, tmp_path / "run2", "--cache_file", str(tmp_path / "c.safetensors")), capsys
    )
    assert rc == 0, err


@pytest.mark.parametrize(
    "case", ["neg_alpha", "nan_alpha", "loss_mode", "cache_seq", "cache_model", "columns", "train_alpha"]
)
def test_bad_input_one_line_exit2_nothing_written(tmp_path, micro_dir, micro_dir_other_vocab, capsys, case):
    out_dir = tmp_path / "run"
    if case in ("neg_alpha", "nan_alpha"):
        from actlab.core.models import load
        from actlab.iav.model import IAVModel

        lm, tok = load(micro_dir)
        IAVModel(lm, tokenizer=tok, backbone_id=micro_dir).save_pretrained(tmp_path / "heads")
        argv = [
            "iav",
            "generate",
            "--heads",
            str(tmp_path / "heads"),
            "--prompt",
            "hi",
            "--alpha",
            "-1" if case == "neg_alpha" else "nan",
            "--output_file",
            str(out_dir / "g.json"),
        ]
    elif case == "loss_mode":
        argv = _train_args(micro_dir, out_dir, "--loss", "dpo")
    elif case == "train_alpha":
        argv = _train_args(micro_dir, out_dir, "--train_alpha", "nan")
    elif case in ("cache_seq", "cache_model"):
        ref = micro_dir if case == "cache_seq" else micro_dir_other_vocab
        seq = "64" if case == "cache_seq" else "48"
        assert (
            main(
                [
                    "iav",
                    "cache",
                    "--ref_model",
                    ref,
                    "--num_samples",
                    "8",
                    "--seq_length",
                    seq,
                    "--max_prompt_length",
                    "24",
                    "--cache_file",
                    str(tmp_path / "c.safetensors"),
                ]
            )
            == 0
        )
        capsys.readouterr()
        argv = _train_args(micro_dir, out_dir, "--cache_file", str(tmp_path / "c.safetensors"))
    else:
        bad = tmp_path / "bad.json"
        bad.write_text(json.dumps([{"prompt": "a", "response": "b"}]))
        argv = _train_args(micro_dir, out_dir, "--dataset", str(bad))
    rc, out, err = _run(argv, capsys)
    assert rc == 2
    lines = [x for x in err.strip().splitlines() if not x.startswith("Loading weights")]
    assert len(lines) == 1 and lines[0].startswith("actlab: error:"), err
    assert "Traceback" not in err
    assert not out_dir.exists()


def test_cache_seed_pt_path_and_old_pickle(tmp_path, micro_dir, capsys):
    """The seed's ``--output_path ...pt`` works (safetensors content); an old torch.save cache is refused in one line
    with a regenerate command that itself runs, and training then uses it (and says so)."""
    import shlex

    pt = tmp_path / "cache" / "reference_logits_dual_hh_train_48.pt"
    pt.parent.mkdir()
    pt.write_bytes(b"PK\x03\x04 a torch.save zip")
    rc, _, err = _run(_train_args(micro_dir, tmp_path / "run", "--cache_file", str(pt)), capsys)
    assert rc == 2 and "old pickle-format cache" in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "run").exists()
    cmd = shlex.split(err.split("regenerate it: ")[1].strip())
    assert cmd[:3] == ["actlab", "iav", "cache"] and str(pt) in cmd
    rc, _, err = _run(cmd[1:], capsys)
    assert rc == 0, err
    assert pt.read_bytes()[8:9] == b"{"  # a safetensors header, whatever the suffix
    rc, out, err = _run(_train_args(micro_dir, tmp_path / "run", "--cache_file", str(pt)), capsys)
    assert rc == 0, err
    assert f"using cached reference logits from {pt}" in err  # a status line: stderr, stdout stays the results


def test_evaluate_missing_baseline_dir(tmp_path, micro_dir, capsys):
    from actlab.core.models import load
    from actlab.iav.model import IAVModel

    lm, tok = load(micro_dir)
    IAVModel(lm, tokenizer=tok, backbone_id=micro_dir).save_pretrained(tmp_path / "heads")
    rc, _, err = _run(
        [
            "iav",
            "evaluate",
            "--heads",
            str(tmp_path / "heads"),
            "--dpo_model",
            str(tmp_path / "nope"),
            "--output_dir",
            str(tmp_path / "ev"),
        ],
        capsys,
    )
    assert rc == 2 and "--train_baselines" in err and not (tmp_path / "ev").exists()
    rc, _, err = _run(
        [
            "iav",
            "evaluate",
            "--heads",
            str(tmp_path / "heads"),
            "--alphas",
            "0",
            "-2",
            "--output_dir",
            str(tmp_path / "ev"),
        ],
        capsys,
    )
    assert rc == 2 and "alpha" in err and not (tmp_path / "ev").exists()
