"""``actlab iav launch`` (the seed's ``train.sh``): the accelerate command it builds, and the one-process fallback."""

import json

import pytest

from actlab.cli.main import main, make_parser


def _cfg(argv):
    from actlab.core.config import config_from_namespace, schema

    full = ["iav", "launch", *argv]
    ns = make_parser(full).parse_args(full)
    from actlab.iav.verbs import IAVLaunchConfig

    return config_from_namespace(schema(IAVLaunchConfig), ns)


def test_command_for_several_gpus_round_trips(tmp_path):
    from actlab.core.config import config_from_namespace, schema
    from actlab.iav.config import TrainConfig
    from actlab.iav.verbs import launch_command

    cfg = _cfg(
        [
            "--output_dir",
            str(tmp_path / "o"),
            "--lambda_kl",
            "0.2",
            "--bf16",
            "--batch_size",
            "2",
            "--gradient_checkpointing",
        ]
    )
    cmd = launch_command(cfg, n_gpus=4)
    i = cmd.index("accelerate.commands.launch")
    assert cmd[i + 1 : i + 4] == ["--multi_gpu", "--num_processes", "4"]
    tail = cmd[cmd.index("actlab.cli.main") + 1 :]
    assert tail[:2] == ["iav", "train"]
    back = config_from_namespace(schema(TrainConfig), make_parser(tail).parse_args(tail))
    assert back == cfg.train  # the launched processes train exactly this config
    assert launch_command(cfg, n_gpus=1) is None and launch_command(cfg, n_gpus=0) is None
    cfg2 = _cfg(["--output_dir", str(tmp_path / "o"), "--num_processes", "3"])
    assert launch_command(cfg2, n_gpus=0)[i + 3] == "3"  # an explicit count wins over the detected one


def test_print_only_writes_nothing(tmp_path, capsys):
    assert main(["iav", "launch", "--output_dir", str(tmp_path / "o"), "--num_processes", "2", "--print_only"]) == 0
    out = capsys.readouterr().out
    assert "accelerate.commands.launch --multi_gpu --num_processes 2" in out and not (tmp_path / "o").exists()


def test_no_gpu_trains_in_process(tmp_path, capsys, micro_tok, micro_llama, monkeypatch):
    import actlab.iav.verbs as verbs

    monkeypatch.setattr(verbs, "visible_gpus", lambda: 0)
    d = tmp_path / "micro"
    micro_llama.save_pretrained(d)
    micro_tok.save_pretrained(d)
    out = tmp_path / "run"
    rc = main(
        [
            "iav",
            "launch",
            "--model_name_or_path",
            str(d),
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
        ]
    )
    assert rc == 0
    cap = capsys.readouterr()
    assert "one process (visible GPUs: 0)" in cap.err  # the status line (logged); the result on stdout
    assert cap.out.strip().splitlines() == [f"heads: {out / 'heads'}"]
    assert (out / "COMPLETE").exists() and json.loads((out / "config.json").read_text())["max_steps"] == 1


@pytest.mark.parametrize(
    "argv,msg", [(["--num_processes", "0"], "--num_processes"), (["--learning_rate", "0"], "learning_rate")]
)
def test_bad_input(argv, msg, tmp_path, capsys):
    assert main(["iav", "launch", "--output_dir", str(tmp_path / "o"), *argv]) == 2
    err = capsys.readouterr().err
    assert msg in err and len(err.strip().splitlines()) == 1 and not (tmp_path / "o").exists()
