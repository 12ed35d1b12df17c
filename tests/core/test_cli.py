import subprocess
import sys

import pytest

from actlab.cli.main import main
from actlab.core.errors import ActlabError, unknown_choice


def test_unknown_family_is_one_line_exit_2():
    r = subprocess.run([sys.executable, "-m", "actlab.cli.main", "bogus"], capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "invalid choice: 'bogus'" in r.stderr
    assert "Traceback" not in r.stderr


def test_help_lists_families(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    for fam in ("zoo", "data", "ia2", "iav", "xmodel", "icae", "demo"):
        assert fam in out


def test_unknown_choice_message():
    msg = str(unknown_choice("dataset", "sst", ["sst2", "agnews"]))
    assert msg == "unknown dataset 'sst' (did you mean 'sst2'?); valid: agnews, sst2"


# ---------------------------------------------------------------------------------------------- configs
def test_help_is_fast_and_imports_no_torch():
    code = (
        "import sys\nfrom actlab.cli.main import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, 'heavy import'"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "<family>" in r.stdout


def test_every_verb_parser_holds_no_defaults_and_cli_has_no_hand_written_flags():
    """Defaults live in the dataclasses only: every flag's parser default is SUPPRESS (a file value is overridden
    only by a flag actually given)."""
    import argparse
    from pathlib import Path

    from actlab.cli.common import add_verb_arguments, all_verbs

    for name, verb in all_verbs():
        p = argparse.ArgumentParser()
        add_verb_arguments(p, verb)
        for a in p._actions:
            if a.dest not in ("help", "config_path"):
                assert a.default is argparse.SUPPRESS, (name, a.dest, a.default)
    cli = Path(__file__).resolve().parents[2] / "src" / "actlab" / "cli"
    n = sum(f.read_text().count(".add_argument(") for f in cli.glob("*.py"))
    assert n <= 4, n  # --version, --log_level (top level and per verb), --config_path


def test_precedence_defaults_file_flags_and_one_coercion(tmp_path):
    from actlab.cli.main import make_parser
    from actlab.core.config import config_from_namespace, load_config, schema
    from actlab.ia2.config import IA2TrainConfig

    p = tmp_path / "c.yaml"
    p.write_text("training_method: act\nlr: 1e-3\nlora_r: 4\nbatch_size: 2\n")
    argv = ["ia2", "train", "--config_path", str(p), "--lora_r", "16"]
    cfg = config_from_namespace(schema(IA2TrainConfig), make_parser(argv).parse_args(argv))
    assert cfg.lr == 1e-3 and isinstance(cfg.lr, float)  # YAML 1.2 float (PyYAML alone reads a string)
    assert (cfg.lora_r, cfg.batch_size, cfg.num_epochs) == (16, 2, IA2TrainConfig("act").num_epochs)
    # the Python API takes the same file with the same rules
    assert load_config(IA2TrainConfig, p, lora_r=16) == cfg
    p.write_text("training_method: act\nlora_r: abc\n")
    with pytest.raises(ActlabError, match="lora_r: expected an integer, got 'abc'"):
        load_config(IA2TrainConfig, p)


def test_nested_config_flat_flags_and_loss_config_key(tmp_path):
    from actlab.core.config import load_config
    from actlab.iav.config import TrainConfig

    p = tmp_path / "c.yaml"
    p.write_text("learning_rate: 2e-2\nloss_config:\n  beta: 0.3\n  lambda_kl: 0\n")
    cfg = load_config(TrainConfig, p, lambda_l2=0.5)
    assert cfg.learning_rate == 0.02 and (cfg.loss.beta, cfg.loss.lambda_kl, cfg.loss.lambda_l2) == (0.3, 0, 0.5)
    p.write_text("loss_config: 5\n")
    with pytest.raises(ActlabError, match="loss_config must be a mapping"):
        load_config(TrainConfig, p)


def test_force_is_an_alias_of_overwrite_when_the_field_exists():
    import argparse
    from dataclasses import dataclass

    from actlab.core.config import Schema

    @dataclass
    class C:
        overwrite: bool = False

    p = argparse.ArgumentParser()
    Schema(C).add_arguments(p)
    assert p.parse_args(["--force"]).overwrite is True and p.parse_args(["--overwrite", "false"]).overwrite is False


def test_a_crash_is_one_line_exit_1_and_debug_shows_the_traceback(monkeypatch, capsys):
    import importlib

    prep = importlib.import_module("actlab.data.prepare")  # (actlab.data.prepare is also a function)

    def boom(cfg=None):
        raise RuntimeError("something broke\nsecond line")

    monkeypatch.setattr(prep, "list_rows", boom)
    assert main(["data", "list"]) == 1
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "data list failed: RuntimeError: something broke second line" in lines[0]
    assert "(at actlab/cli/data.py:" in lines[0] and "ACTLAB_DEBUG=1" in lines[0] and "Traceback" not in err
    monkeypatch.setenv("ACTLAB_DEBUG", "1")
    assert main(["data", "list"]) == 1
    assert "Traceback" in capsys.readouterr().err


def test_log_level_flag_and_env(monkeypatch, capsys):
    import logging

    ours = logging.getLogger("actlab")
    assert main(["--log_level", "debug", "data", "list"]) == 0
    assert ours.level == logging.DEBUG and logging.getLogger().level == logging.DEBUG
    assert main(["data", "list", "--log_level", "error"]) == 0
    assert ours.level == logging.ERROR and logging.getLogger().level == logging.WARNING
    monkeypatch.setenv("ACTLAB_LOG_LEVEL", "warning")
    assert main(["data", "list"]) == 0
    assert ours.level == logging.WARNING
    monkeypatch.delenv("ACTLAB_LOG_LEVEL")
    assert main(["data", "list"]) == 0
    assert ours.level == logging.INFO  # default: actlab's status lines shown, third-party loggers at warning
    capsys.readouterr()
    logging.getLogger("actlab.some.module").info("resuming run from step 3")
    logging.getLogger("actlab.some.module").warning("odd value")
    logging.getLogger("transformers.x").info("not ours")
    err = capsys.readouterr().err
    assert err.splitlines() == ["resuming run from step 3", "warning: odd value"]
    monkeypatch.setenv("ACTLAB_LOG_LEVEL", "loud")
    assert main(["data", "list"]) == 2
    assert "ACTLAB_LOG_LEVEL 'loud'" in capsys.readouterr().err
    logging.getLogger().setLevel(logging.WARNING)


# ------------------------------------------------------------------------------------ the Python API
def test_every_verb_is_a_function_of_its_config_dataclass():
    import dataclasses
    import inspect
    import typing

    from actlab.cli.common import all_verbs

    names = []
    for name, verb in all_verbs():
        cls, fn = verb.config_class(), verb.api_function()
        assert dataclasses.is_dataclass(cls), name
        first = next(iter(inspect.signature(fn).parameters.values()))
        hint = typing.get_type_hints(fn).get(first.name)
        if name != "ia2 sweep":  # its schema is made from SweepConfig + IA2TrainConfig at run time
            assert hint is cls or cls in typing.get_args(hint), (name, hint, cls)
        names.append(name)
    assert len(names) == 30


def test_new_entry_points_called_with_their_config(tmp_path):
    from actlab.core.config import config_from_dict
    from actlab.data.make_train import MakeTrainConfig, run_make_train
    from actlab.data.prepare import DataListConfig, PrepareConfig, list_rows, run_prepare
    from actlab.ia2.verbs import PlotAllConfig, PlotConfig, plot, plot_all, sweep, sweep_cli_config

    d = tmp_path / "data"
    out = run_prepare(PrepareConfig(dataset=["syn_sst2"], num_train_samples=20, num_val_samples=4, data_dir=str(d)))
    assert out[0]["metadata"]["num_train_examples"] == 20 and not out[0]["skipped"]
    assert run_prepare(PrepareConfig(dataset="syn_sst2", data_dir=str(d)))[0]["skipped"]
    paths = run_make_train(
        MakeTrainConfig(datasets="syn_sst2", num_train_examples=[4, 8], num_runs=2, data_dir=str(d))
    )
    assert len(paths) == 4 and all(p.exists() for p in paths)
    assert dict((r[0], r[4]) for r in list_rows(DataListConfig(str(d))))["syn_sst2"] == "yes"
    with pytest.raises(ActlabError, match="no evaluation results"):
        plot(PlotConfig(trained_dataset="syn_sst2", outputs_dir=str(tmp_path / "empty")))
    with pytest.raises(ActlabError, match="no evaluation results"):
        plot_all(PlotAllConfig(outputs_dir=str(tmp_path / "empty")))
    cli_cfg = config_from_dict(
        sweep_cli_config(),
        {
            "training_methods": ["act", "tok"],
            "datasets": ["syn_sst2"],
            "num_train_examples": [4],
            "lrs": [1e-3, 1e-4],
            "data_dir": str(d),
            "output_dir": str(tmp_path / "o"),
            "dry_run": True,
        },
    )
    rows = sweep(cli_cfg)
    assert len(rows) == 4 and not (tmp_path / "o").exists()


def test_xmodel_verbs_called_with_their_config(tmp_path):
    from actlab.core.testing import micro_model, micro_tokenizer
    from actlab.xmodel.config import AlignConfig, CommunicateConfig, ExtractConfig
    from actlab.xmodel.verbs import align, communicate, extract

    tok = micro_tokenizer()
    dirs = []
    for name, seed, hidden in (("a", 0, 32), ("b", 1, 48)):
        m = micro_model("llama", tok, seed=seed, hidden=hidden)
        m.save_pretrained(tmp_path / name)
        tok.save_pretrained(tmp_path / name)
        dirs.append(str(tmp_path / name))
    txt = tmp_path / "t.txt"
    txt.write_text("\n".join(f"the cat {w} is red" for w in "one two three four five six seven eight".split()))
    pairs = extract(
        ExtractConfig(model_a=dirs[0], model_b=dirs[1], texts=str(txt), heldout=0.5, out=str(tmp_path / "p"))
    )
    scores = align(AlignConfig(pairs=str(pairs), layer_a=-1, layer_b=0, method="ridge", out=str(tmp_path / "m")))
    assert scores["layer_b"] == 0 and "r2" in scores and (tmp_path / "m" / "scores.json").exists()
    with pytest.raises(ActlabError, match="--layer_a 5 was not extracted"):
        align(AlignConfig(pairs=str(pairs), layer_a=5, layer_b=0, out=str(tmp_path / "m2")))
    res = communicate(
        CommunicateConfig(
            model_a=dirs[0],
            model_b=dirs[1],
            k=1,
            j=0,
            n=2,
            methods=["b_alone", "ac"],
            map=str(tmp_path / "m"),
            max_new_tokens=2,
        )
    )
    assert set(res["methods"]) == {"b_alone", "ac"}


def test_device_check_knows_what_this_machine_has(monkeypatch):
    import torch

    from actlab.core.config import check_device

    check_device("device", None)
    check_device("device", "cpu")
    with pytest.raises(ActlabError, match="'bogus' is not a device; valid: cpu, cuda"):
        check_device("device", "bogus")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ActlabError, match="CUDA is not available on this machine; valid here: cpu"):
        check_device("device", "cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    check_device("device", "cuda")
    check_device("device", "cuda:1")
    with pytest.raises(ActlabError, match="cuda:2: only 2 CUDA device"):
        check_device("device", "cuda:2")


def test_a_light_verb_does_not_import_torch():
    """`actlab data list` (not launched) stays light: the launcher guard imports torch only under WORLD_SIZE > 1."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK")}
    code = "import sys; from actlab.cli.main import main; main(['data', 'list']); print('torch' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-1000:]
    assert r.stdout.strip().splitlines()[-1] == "False"
