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
    code = (
        "import sys; import actlab.ia2.config, actlab.iav.config, actlab.icae.config, actlab.xmodel.config; "
        "print(sorted(m for m in ('torch', 'transformers', 'actlab.zoo') if m in sys.modules))"
    )
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"
    )


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


def test_train_returns_the_run_directory_in_every_family(world, tmp_path):
    """The world fixture trained through each family's ``train(cfg)``; a finished run of the same config is returned
    again without training; the family ``evaluate`` takes the config."""
    from actlab import ia2, iav, icae, xmodel

    assert world["iav_run"] == world["root"] / "iav" and (world["iav_run"] / "heads").is_dir()
    assert all(
        r.parent.parent == world["outputs"] / m and (r / "config.json").is_file() for m, r in world["ia2_runs"].items()
    )
    pre = icae.ICAEConfig(output_dir=str(world["root"] / "icae"), **world["icae_cfg"])
    assert world["icae_run"] == world["root"] / "icae" / "pretrain" and icae.train(pre) == world["icae_run"]
    ckpt = str(world["icae_run"] / "icae.safetensors")
    ft = icae.train(
        icae.ICAEConfig(
            **{**pre.__dict__, "task": "qa", "checkpoint_path": ckpt, "output_dir": str(tmp_path / "icae")}
        )
    )
    assert ft == tmp_path / "icae" / "finetune_qa" and (ft / "icae.safetensors").is_file()
    assert icae.evaluate(icae.ICAEConfig(**{**pre.__dict__, "checkpoint_path": ckpt}))["n"] == 2
    res = iav.evaluate(
        iav.EvalConfig(
            heads=str(world["iav_run"]),
            num_prompts=2,
            alphas=[0.0, 1.0],
            max_new_tokens=3,
            output_dir=str(tmp_path / "eval"),
        )
    )
    assert {m["method"] for m in res["methods"]} >= {"base"}
    assert all(p.exists() for p in ia2.evaluate(_eval_cfg(world)))
    pairs = str(_extract(world, tmp_path))
    assert (
        xmodel.train(xmodel.AlignConfig(pairs=pairs, layer_a=-1, layer_b=0, method="ridge", out=str(tmp_path / "m")))
        == tmp_path / "m"
    )
    assert (tmp_path / "m" / "scores.json").is_file()


# ------------------------------------------------------------------------------ every verb, by its config
DS = "syn_sst2_remap"


@pytest.fixture(scope="module")
def world(tmp_path_factory, micro_dir):
    """Shared inputs: a second micro model, prepared IA2 data with act and tok runs, an IAV run, an ICAE pretraining."""
    from actlab import ia2, iav, icae
    from actlab.core.testing import micro_model, micro_tokenizer
    from actlab.data import make_train, prepare
    from actlab.icae.data import prepare_pretrain

    root = tmp_path_factory.mktemp("api_world")
    tok = micro_tokenizer()
    micro_model("llama", tok, seed=1, hidden=48).save_pretrained(root / "b")
    tok.save_pretrained(root / "b")
    data, out = root / "data", root / "outputs"
    prepare("syn_sst2", data, num_train_samples=20, num_val_samples=4, label_template="remap")
    make_train(DS, data, num_train_examples=[4], num_runs=1, max_icl_demos=2)
    common = dict(
        dataset=DS,
        model_id=micro_dir,
        data_dir=str(data),
        output_dir=str(out),
        num_train_examples=4,
        num_generated_tokens=1,
        lora_r=2,
        lora_alpha=4,
        max_steps=2,
        lr=1e-2,
        dev_eval_steps=1,
    )
    runs = {
        m: ia2.train(ia2.IA2TrainConfig(m, **common, **({"label_type": "icl_outputs"} if m == "tok" else {})))
        for m in ("act", "tok")
    }
    iav_cfg = dict(
        model_name_or_path=micro_dir,
        num_train_samples=8,
        num_val_samples=0,
        batch_size=4,
        seq_length=40,
        max_prompt_length=20,
        max_steps=2,
        device="cpu",
        warmup_ratio=0.0,
    )
    iav_run = iav.train(iav.TrainConfig(output_dir=str(root / "iav"), **iav_cfg))
    icae_cfg = dict(
        model_name=micro_dir,
        fixed_mem_size=8,
        mean_compression_rate=4,
        lora_r=4,
        num_train_samples=20,
        num_eval_samples=2,
        batch_size=2,
        max_new_tokens=4,
        max_steps=2,
        logging_steps=1,
        save_steps=2,
        per_device_train_batch_size=2,
        warmup_steps=1,
        device="cpu",
    )
    pre_cfg = icae.ICAEConfig(output_dir=str(root / "icae"), **icae_cfg)
    prepare_pretrain(pre_cfg)
    icae_run = icae.train(pre_cfg)
    return {
        "a": micro_dir,
        "b": str(root / "b"),
        "data": data,
        "outputs": out,
        "ia2_runs": runs,
        "iav_cfg": iav_cfg,
        "iav_run": iav_run,
        "icae_cfg": icae_cfg,
        "icae_run": icae_run,
        "root": root,
    }


def _eval_cfg(w, types=("base", "act")):
    from actlab.ia2.evaluate import EvalConfig

    return EvalConfig(
        model_types=list(types),
        trained_datasets=[DS],
        icl_max_demos=2,
        num_eval_examples=4,
        outputs_dir=str(w["outputs"]),
        data_dir=str(w["data"]),
        model_id=w["a"],
    )


def _xmodel(w, **kw):
    from actlab.xmodel.config import XModelConfig

    base = dict(
        model_a=w["a"],
        model_b=w["b"],
        n_texts=24,
        heldout=0.25,
        shard_size=8,
        methods=["procrustes", "ridge"],
        epochs=1,
        n_eval=2,
        n_dev=2,
        k=0,
        j=0,
        ac_maps=["ridge"],
        max_new_tokens=2,
        message_tokens=2,
        batch_size=4,
        device="cpu",
    )
    base.update(kw)
    return XModelConfig(**base)


def _icae(w, tmp_path, **kw):
    from actlab.icae.config import ICAEConfig

    return ICAEConfig(**{**w["icae_cfg"], "output_dir": str(tmp_path / "icae"), **kw})


def _stub_zoo(monkeypatch, w, calls):
    """The zoo stands in for a build (no test builds a zoo model): ensure_built records its arguments."""
    import actlab.zoo
    import actlab.zoo.build

    def ensure_built(name, force=False, seed=None, dist=None):
        calls.append((name, force, seed))
        return w["a"]

    manifest = {"n_params": 1, "build_seconds": 0.0, "icl_accuracy": {"held_out_tasks": {"0": 0.5, "4": 0.9}}}
    for mod in (actlab.zoo, actlab.zoo.build):
        monkeypatch.setattr(mod, "ensure_built", ensure_built)
        monkeypatch.setattr(mod, "read_manifest", lambda name, seed=None: manifest)


def _zoo_build(w, tmp_path, monkeypatch):
    import actlab.zoo.build
    from actlab.cli.zoo import ZooBuildConfig
    from actlab.core.errors import ActlabError

    calls = []
    _stub_zoo(monkeypatch, w, calls)

    def not_built(name, seed=None):
        raise ActlabError(f"zoo model {name!r} is not built")

    monkeypatch.setattr(actlab.zoo.build, "validate", not_built)
    return ZooBuildConfig("tiny", seed=3), lambda out: out["built"] and calls == [("tiny", False, 3)]


def _main_demo(w, tmp_path, monkeypatch):
    import actlab.core.models
    import actlab.zoo
    from actlab.cli.demo import MainDemoConfig

    calls, load = [], actlab.core.models.load
    _stub_zoo(monkeypatch, w, calls)
    monkeypatch.setattr(actlab.zoo, "icl_accuracy", lambda model, tok, k, n, seed: 0.5)
    monkeypatch.setattr(actlab.core.models, "load", lambda name, **kw: load(w["a"], device="cpu"))
    return MainDemoConfig(n_tasks=2, skip_ia2=True), lambda out: out == 0 and calls == [("tiny", False, None)]


def _sweep(w, tmp_path, monkeypatch):
    from actlab.core.config import config_from_dict
    from actlab.ia2.verbs import sweep_cli_config

    cfg = config_from_dict(
        sweep_cli_config(),
        {
            "training_methods": ["act"],
            "datasets": [DS],
            "num_train_examples": [4],
            "lrs": [1e-3, 1e-4],
            "data_dir": str(w["data"]),
            "output_dir": str(tmp_path / "o"),
            "dry_run": True,
        },
    )
    return cfg, lambda rows: len(rows) == 2 and not (tmp_path / "o").exists()


def _cases():
    from actlab.cli.zoo import ZooListConfig
    from actlab.data.make_train import MakeTrainConfig
    from actlab.data.prepare import DataListConfig, PrepareConfig
    from actlab.ia2 import IA2TrainConfig
    from actlab.ia2.demo import DemoConfig
    from actlab.ia2.verbs import ActivationSimilarityConfig, PlotAllConfig, PlotConfig, SubspaceOverlapConfig
    from actlab.iav.config import CacheConfig, IAVDemoConfig, IAVGenerateConfig, TrainConfig
    from actlab.iav.evaluate import EvalConfig as IAVEval
    from actlab.iav.verbs import IAVEvaluateConfig, IAVLaunchConfig
    from actlab.icae.config import ICAEDemoConfig
    from actlab.xmodel.config import CommunicateConfig, ExtractConfig, RunAllConfig, XModelDemoConfig

    def plain(make, check):
        return lambda w, t, mp: (make(w, t), check)

    def evaluated(w, t):  # plot, plot-all and the analyses read the evaluation results
        from actlab.ia2.evaluate import evaluate

        evaluate(_eval_cfg(w))
        return w

    return {
        "zoo build": _zoo_build,
        "zoo list": plain(lambda w, t: ZooListConfig(), lambda rows: any(r[0] == "tiny" for r in rows)),
        "data list": plain(
            lambda w, t: DataListConfig(str(w["data"])),
            lambda rows: rows[0][0] == "name" and any(r[0] == "syn_sst2" for r in rows),
        ),
        "data prepare": plain(
            lambda w, t: PrepareConfig(
                dataset=["syn_agnews"], num_train_samples=8, num_val_samples=2, data_dir=str(t / "d")
            ),
            lambda out: out[0]["metadata"]["num_train_examples"] == 8,
        ),
        "data make-train": plain(
            lambda w, t: MakeTrainConfig(datasets=DS, num_train_examples=[2], num_runs=1, data_dir=str(w["data"])),
            lambda paths: all(p.exists() for p in paths),
        ),
        "ia2 train": plain(
            lambda w, t: IA2TrainConfig(
                "act",
                dataset=DS,
                model_id=w["a"],
                data_dir=str(w["data"]),
                output_dir=str(t / "o"),
                num_train_examples=4,
                lora_r=2,
                num_generated_tokens=1,
                max_steps=1,
                lr=1e-2,
            ),
            lambda run: (run / "config.json").is_file(),
        ),
        "ia2 sweep": _sweep,
        "ia2 evaluate": plain(lambda w, t: _eval_cfg(w), lambda paths: paths and all(p.exists() for p in paths)),
        "ia2 plot": plain(
            lambda w, t: PlotConfig(
                trained_dataset=DS, outputs_dir=str(evaluated(w, t)["outputs"]), plots_dir=str(t / "p")
            ),
            lambda paths: paths,
        ),
        "ia2 plot-all": plain(
            lambda w, t: PlotAllConfig(outputs_dir=str(evaluated(w, t)["outputs"]), plots_dir=str(t / "p")),
            lambda paths: paths,
        ),
        "ia2 analyze activation-similarity": plain(
            lambda w, t: ActivationSimilarityConfig(
                runs=_eval_cfg(w, ["act"]), num_samples=2, num_generated_tokens=1, plots_dir=str(t / "p")
            ),
            lambda out: "act" in str(out),
        ),
        "ia2 analyze subspace-overlap": plain(
            lambda w, t: SubspaceOverlapConfig(
                runs=_eval_cfg(w, ["act", "tok"]), methods=["act", "tok"], plots_dir=str(t / "p")
            ),
            lambda out: bool(out),
        ),
        "ia2 demo": plain(
            lambda w, t: DemoConfig(
                work_dir=str(t / "demo"),
                model_id=w["a"],
                N=4,
                num_runs=1,
                num_train_samples=20,
                num_eval_examples=4,
                num_epochs=1,
                methods=("act",),
                asim_samples=2,
                quick=True,
            ),
            lambda out: out["report"].exists(),
        ),
        "iav cache": plain(
            lambda w, t: CacheConfig(
                ref_model=w["a"],
                num_samples=8,
                seq_length=40,
                max_prompt_length=20,
                topk=8,
                cache_file=str(t / "c.safetensors"),
                device="cpu",
            ),
            lambda out: out.exists(),
        ),
        "iav train": plain(
            lambda w, t: TrainConfig(output_dir=str(t / "iav"), **w["iav_cfg"]), lambda run: (run / "heads").is_dir()
        ),
        "iav launch": plain(
            lambda w, t: IAVLaunchConfig(
                train=TrainConfig(output_dir=str(t / "l"), **w["iav_cfg"]), num_processes=1, print_only=True
            ),
            lambda rc: rc == 0,
        ),
        "iav generate": plain(
            lambda w, t: IAVGenerateConfig(heads=str(w["iav_run"]), prompt=["the cat is"]),
            lambda rows: len(rows) == 1 and rows[0]["alpha"] == 1.0,
        ),
        "iav evaluate": plain(
            lambda w, t: IAVEvaluateConfig(
                eval=IAVEval(
                    heads=str(w["iav_run"]), num_prompts=2, alphas=[1.0], max_new_tokens=3, output_dir=str(t / "e")
                )
            ),
            lambda res: {m["method"] for m in res["methods"]} >= {"base"},
        ),
        "iav demo": plain(
            lambda w, t: IAVDemoConfig(
                model_id=w["a"], output_dir=str(t / "d"), num_prompts=2, max_new_tokens=3, quick=True
            ),
            lambda res: bool(res),
        ),
        "xmodel extract": plain(
            lambda w, t: ExtractConfig(
                model_a=w["a"], model_b=w["b"], out=str(t / "p"), n_texts=24, heldout=0.25, shard_size=8
            ),
            lambda p: p.exists(),
        ),
        "xmodel align": _align,
        "xmodel communicate": plain(
            lambda w, t: CommunicateConfig(
                model_a=w["a"], model_b=w["b"], k=0, j=0, n=2, methods=["b_alone", "skyline"], max_new_tokens=2
            ),
            lambda res: set(res["methods"]) == {"b_alone", "skyline"},
        ),
        "xmodel run-all": plain(lambda w, t: RunAllConfig(out=str(t / "x"), xmodel=_xmodel(w)), lambda res: bool(res)),
        "xmodel demo": plain(
            lambda w, t: XModelDemoConfig(out=str(t / "x"), seeds=[0], xmodel=_xmodel(w)), lambda md: "|" in md
        ),
        "icae prepare-pretrain": plain(lambda w, t: _icae(w, t), lambda out: all(p.exists() for p in out.values())),
        "icae pretrain": _icae_pretrain,
        "icae finetune": plain(
            lambda w, t: _icae(w, t, task="qa", checkpoint_path=str(w["icae_run"] / "icae.safetensors")),
            lambda out: out["weights"].endswith("icae.safetensors"),
        ),
        "icae infer": plain(
            lambda w, t: _icae(w, t, checkpoint_path=str(w["icae_run"] / "icae.safetensors")),
            lambda s: s["task"] == "ae" and s["n"] == 2,
        ),
        "icae demo": plain(
            lambda w, t: ICAEDemoConfig(icae=_icae(w, t, num_train_samples=16), quick=True), lambda res: bool(res)
        ),
        "demo": _main_demo,
    }


def _extract(w, tmp_path):
    from actlab.xmodel.config import ExtractConfig
    from actlab.xmodel.verbs import extract

    return extract(
        ExtractConfig(model_a=w["a"], model_b=w["b"], out=str(tmp_path / "p"), n_texts=24, heldout=0.25, shard_size=8)
    )


def _align(w, tmp_path, monkeypatch):
    from actlab.xmodel.config import AlignConfig

    cfg = AlignConfig(pairs=str(_extract(w, tmp_path)), layer_a=-1, layer_b=0, method="ridge", out=str(tmp_path / "m"))
    return cfg, lambda scores: scores["layer_b"] == 0 and (tmp_path / "m" / "scores.json").exists()


def _icae_pretrain(w, tmp_path, monkeypatch):
    from actlab.icae.data import prepare_pretrain

    cfg = _icae(w, tmp_path)
    prepare_pretrain(cfg)
    return cfg, lambda out: out["weights"].endswith("icae.safetensors") and not out.get("skipped")


SLOW = {"iav demo"}  # trains IAV heads, a TRL DPO model and an ARM for two seeds


def _verbs():
    from actlab.cli.common import all_verbs

    return dict(all_verbs())


def test_the_table_covers_every_verb():
    assert set(_cases()) == set(_verbs())


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in sorted(_cases())]
)
def test_every_verb_runs_as_a_function_of_its_config(name, world, tmp_path, monkeypatch):
    verb = _verbs()[name]
    cfg, check = _cases()[name](world, tmp_path, monkeypatch)
    cls = verb.config_class()
    assert isinstance(cfg, cls), (name, type(cfg), cls)
    assert check(verb.api_function()(cfg)), name
