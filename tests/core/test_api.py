"""The Python API: every family's ``__init__`` exports its configs, model, ``train`` and ``evaluate``; ``train(cfg)``
returns the run directory; verbs run as functions of their config alone (models given as local directories)."""

import importlib
import subprocess
import sys

import pytest

FAMILIES = {
    "ia2": {"IA2TrainConfig", "EvalConfig", "train", "evaluate"},
    "iav": {"TrainConfig", "EvalConfig", "IAVModel", "train", "evaluate"},
    "icae": {"ICAEConfig", "ICAE", "SimpleLLM", "train", "evaluate"},
    "xmodel": {"AlignConfig", "CommunicateConfig", "ExtractConfig", "train", "evaluate"},
}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_family_exports(family):
    pkg = importlib.import_module(f"actlab.{family}")
    assert FAMILIES[family] <= set(pkg.__all__)
    for name in pkg.__all__:
        assert getattr(pkg, name) is not None, name
    assert callable(pkg.train) and callable(pkg.evaluate)


def test_importing_a_family_config_stays_cheap():
    code = ("import sys; import actlab.ia2.config, actlab.iav.config, actlab.icae.config, actlab.xmodel.config; "
            "print(sorted(m for m in ('torch', 'transformers', 'actlab.zoo') if m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"


def test_evaluate_submodules_stay_modules_and_are_callable():
    import actlab.ia2
    import actlab.ia2.evaluate as ev

    assert ev.EvalConfig is actlab.ia2.EvalConfig and actlab.ia2.evaluate is ev and callable(ev)


@pytest.fixture(scope="module")
def micro_dir(tmp_path_factory):
    from actlab.core.testing import micro_model, micro_tokenizer

    tok = micro_tokenizer()
    d = tmp_path_factory.mktemp("api_micro")
    micro_model("llama", tok).save_pretrained(d)
    tok.save_pretrained(d)
    return str(d)


def test_iav_train_returns_its_run_directory_and_evaluate_generate_take_configs(micro_dir, tmp_path):
    from actlab import iav
    from actlab.iav.config import IAVGenerateConfig
    from actlab.iav.verbs import generate

    run = iav.train(iav.TrainConfig(model_name_or_path=micro_dir, output_dir=str(tmp_path / "run"),
                                    num_train_samples=8, num_val_samples=0, batch_size=4, seq_length=40,
                                    max_prompt_length=20, max_steps=2, device="cpu", warmup_ratio=0.0))
    assert run == tmp_path / "run" and (run / "heads").is_dir()
    res = iav.evaluate(iav.EvalConfig(heads=str(run), num_prompts=2, alphas=[0.0, 1.0], max_new_tokens=3,
                                      output_dir=str(tmp_path / "eval")))
    assert {m["method"] for m in res["methods"]} >= {"base"}
    from actlab.iav.verbs import IAVEvaluateConfig
    from actlab.iav.verbs import evaluate as evaluate_verb

    again = evaluate_verb(IAVEvaluateConfig(eval=iav.EvalConfig(heads=str(run), num_prompts=2, alphas=[1.0],
                                                                max_new_tokens=3, output_dir=str(tmp_path / "e2"))))
    assert {m["method"] for m in again["methods"]} >= {"base"}
    out = generate(IAVGenerateConfig(heads=str(run), prompt=["the cat is"], alpha=[0.0, 1.0]))
    assert [r["alpha"] for r in out] == [0.0, 1.0]


def test_icae_train_returns_its_run_directory_and_evaluate_takes_the_config(micro_dir, tmp_path):
    from actlab import icae
    from actlab.icae.data import prepare_pretrain

    cfg = icae.ICAEConfig(model_name=micro_dir, fixed_mem_size=8, mean_compression_rate=4, lora_r=4,
                          output_dir=str(tmp_path / "run"), num_train_samples=20, num_eval_samples=2, batch_size=2,
                          max_new_tokens=4, max_steps=2, logging_steps=1, save_steps=2,
                          per_device_train_batch_size=2, warmup_steps=1, device="cpu")
    prepare_pretrain(cfg)
    run = icae.train(cfg)
    assert run == tmp_path / "run" / "pretrain" and (run / "icae.safetensors").is_file()
    assert icae.train(cfg) == run  # a finished run of the same config is returned as it is
    summary = icae.evaluate(icae.ICAEConfig(**{**cfg.__dict__, "checkpoint_path": str(run / "icae.safetensors")}))
    assert summary["task"] == "ae" and summary["n"] == 2
    ft = icae.train(icae.ICAEConfig(**{**cfg.__dict__, "task": "qa", "checkpoint_path": str(run / "icae.safetensors")}))
    assert ft == tmp_path / "run" / "finetune_qa" and (ft / "icae.safetensors").is_file()


def test_ia2_train_returns_its_run_directory_and_evaluate_takes_the_config(micro_dir, tmp_path):
    from actlab import ia2
    from actlab.data import make_train, prepare

    ds, data, out = "syn_sst2_remap", tmp_path / "data", tmp_path / "outputs"
    prepare("syn_sst2", data, num_train_samples=20, num_val_samples=4, label_template="remap")
    make_train(ds, data, num_train_examples=[4], num_runs=1, max_icl_demos=2)
    run = ia2.train(ia2.IA2TrainConfig("act", dataset=ds, model_id=micro_dir, data_dir=str(data), output_dir=str(out),
                                       num_train_examples=4, num_generated_tokens=1, lora_r=2, lora_alpha=4,
                                       max_steps=2, lr=1e-2, dev_eval_steps=1))
    assert run.parent.parent == out / "act" and (run / "config.json").is_file()
    paths = ia2.evaluate(ia2.EvalConfig(model_types=["base", "act"], trained_datasets=[ds], icl_max_demos=2,
                                        num_eval_examples=4, outputs_dir=str(out), data_dir=str(data),
                                        model_id=micro_dir))
    assert paths and all(p.exists() for p in paths)


def test_zoo_list_is_a_function_of_its_config():
    from actlab.cli.zoo import ZooListConfig, list_models

    rows = list_models(ZooListConfig())
    assert "tiny" in str(rows)
