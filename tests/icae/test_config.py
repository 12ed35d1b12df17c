from pathlib import Path

import pytest

from actlab.core.errors import ActlabError
from actlab.icae.config import ICAEConfig

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("m", [3, 6, 100, 0, -4])
def test_fixed_mem_size_power_of_two(m):
    with pytest.raises(ActlabError, match="power of 2"):
        ICAEConfig(fixed_mem_size=m)


@pytest.mark.parametrize("m", [1, 2, 32, 128])
def test_fixed_mem_size_ok(m):
    assert ICAEConfig(fixed_mem_size=m).fixed_mem_size == m


def test_unknown_task_and_model_type():
    with pytest.raises(ActlabError, match="unknown task 'qaa'.*did you mean 'qa'"):
        ICAEConfig(task="qaa")
    with pytest.raises(ActlabError, match="model_type"):
        ICAEConfig(model_type="gpt")


def test_unknown_key_and_bad_types(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("fixed_mem_sze: 32\n")
    with pytest.raises(ActlabError, match="unknown key 'fixed_mem_sze'.*did you mean 'fixed_mem_size'"):
        ICAEConfig.from_yaml(p)
    p.write_text("use_position_identifiers: maybe\n")
    with pytest.raises(ActlabError, match="true or false"):
        ICAEConfig.from_yaml(p)
    p.write_text("fixed_mem_size: '32'\n")
    with pytest.raises(ActlabError, match="integer"):
        ICAEConfig.from_yaml(p)
    p.write_text("- a\n- b\n")
    with pytest.raises(ActlabError, match="mapping"):
        ICAEConfig.from_yaml(p)
    with pytest.raises(ActlabError, match="not found"):
        ICAEConfig.from_yaml(tmp_path / "missing.yaml")


def test_fa2_with_epl_and_fp16_rejected():
    with pytest.raises(ActlabError, match="flash_attention_2"):
        ICAEConfig(attn_implementation="flash_attention_2", use_position_identifiers=True)
    ICAEConfig(attn_implementation="flash_attention_2", use_position_identifiers=False)
    with pytest.raises(ActlabError, match="float16"):
        ICAEConfig(dtype="float16")


def test_shipped_configs_load_and_round_trip(tmp_path):
    files = sorted((ROOT / "configs" / "icae").glob("*.yaml"))
    assert len(files) >= 5
    for f in files:
        cfg = ICAEConfig.from_yaml(f)
        cfg.to_yaml(tmp_path / f.name)
        assert ICAEConfig.from_yaml(tmp_path / f.name) == cfg


def test_lora_target_modules_forms():
    assert ICAEConfig(lora_target_modules="all-linear").lora_target_modules == "all-linear"
    assert ICAEConfig(lora_target_modules=["q_proj"]).lora_target_modules == ["q_proj"]
    with pytest.raises(ActlabError, match="lora_target_modules"):
        ICAEConfig(lora_target_modules="q_proj")
