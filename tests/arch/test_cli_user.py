"""As a new user would: ``actlab ia2 train`` on saved micro models of other architectures, good and bad input."""

import json

import pytest

from actlab.cli.main import main
from tests.arch import matrix as M


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("arch_cli")
    tok = M.tokenizer()
    for name in ("falcon", "gpt_neox", "mixtral"):
        M.build(name, tok).save_pretrained(root / name)
        tok.save_pretrained(root / name)
    M.ia2_data(root / "data")
    return root


def _train(world, out, model, *extra):
    return main(
        [
            "ia2",
            "train",
            "--dataset",
            M.IA2_DS,
            "--model_id",
            str(world / model),
            "--data_dir",
            str(world / "data"),
            "--output_dir",
            str(out),
            "--num_train_examples",
            "4",
            "--max_steps",
            "1",
            "--num_generated_tokens",
            "2",
            *extra,
        ]
    )


@pytest.mark.parametrize(
    "model,extra,adapted",
    [
        (
            "falcon",
            ["--training_method", "act", "--lora_type", "kv"],
            ["transformer.h.*.self_attention.query_key_value"],
        ),
        (
            "gpt_neox",
            ["--training_method", "ia3-act", "--ia3_type", "query_key_value,dense_4h_to_h"],
            ["gpt_neox.layers.*.attention.query_key_value", "gpt_neox.layers.*.mlp.dense_4h_to_h"],
        ),
        (
            "mixtral",
            ["--training_method", "act", "--lora_type", "od"],
            ["model.layers.*.mlp.experts.down_proj", "model.layers.*.self_attn.o_proj"],
        ),
        ("falcon", ["--training_method", "prefix-act", "--num_virtual_tokens", "3"], []),
    ],
)
def test_train_records_the_real_modules(world, tmp_path, model, extra, adapted):
    assert _train(world, tmp_path / "out", model, *extra) == 0
    (cfg_file,) = (tmp_path / "out").rglob("config.json")
    assert json.loads(cfg_file.read_text())["adapter_modules"] == adapted
    assert (cfg_file.parent / "COMPLETE").exists()


@pytest.mark.parametrize(
    "model,extra,msg",
    [
        ("gpt_neox", ["--training_method", "act", "--lora_type", "qg"], "gpt_neox has no module for role g"),
        ("mixtral", ["--training_method", "ia3-act", "--ia3_type", "qd"], "in mixtral roles gud are the MoE experts"),
        ("falcon", ["--training_method", "act", "--lora_type", "q_proj"], "names q_proj, which falcon does not have"),
    ],
)
def test_bad_targets_one_line_exit_2_nothing_written(world, tmp_path, capsys, model, extra, msg):
    out = tmp_path / "out"
    rc = _train(world, out, model, *extra)
    err = [x for x in capsys.readouterr().err.splitlines() if x.strip() and "Loading weights" not in x]
    assert rc == 2 and len(err) == 1 and err[0].startswith("actlab: error: ") and msg in err[0], err
    assert not out.exists() or not any(out.rglob("config.json"))
