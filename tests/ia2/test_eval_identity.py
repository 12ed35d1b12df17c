"""An IA2 result's identity: runs that differ in one training setting get their own computed result; a recorded
result whose settings differ is recomputed, never skipped; the generation length follows num_generated_tokens_eval."""

import json

import pytest

from actlab.core.testing import micro_model, micro_tokenizer

DS = "syn_sst2"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Four short real trainings on a micro model: tok T=1 / T=2 (icl_outputs), tok T=1 ground_truth, and t2a on
    each label type (so the t2a results differ only in their tok parent's label type)."""
    from actlab.data import make_train, prepare
    from actlab.ia2.config import IA2TrainConfig
    from actlab.ia2.trainer import train

    root = tmp_path_factory.mktemp("ia2_ident")
    data = root / "data"
    prepare(DS, data, num_train_samples=30, num_val_samples=6)
    make_train(DS, data, num_train_examples=[4], num_runs=1, max_icl_demos=2)
    tok = micro_tokenizer()
    model = micro_model("llama", tok)
    out = root / "outputs"
    common = dict(
        dataset=DS,
        model_id="micro",
        data_dir=str(data),
        output_dir=str(out),
        num_train_examples=4,
        lora_r=2,
        lora_alpha=4,
        max_steps=2,
        lr=1e-2,
        dev_eval_steps=1,
    )
    paths = {}
    for key, method, kw in (
        ("tok_T1", "tok", dict(label_type="icl_outputs", num_generated_tokens=1)),
        ("tok_T2", "tok", dict(label_type="icl_outputs", num_generated_tokens=2)),
        ("tok_gt", "tok", dict(label_type="ground_truth", num_generated_tokens=1)),
        ("t2a_icl", "t2a", dict(label_type="icl_outputs", num_generated_tokens=1)),
        ("t2a_gt", "t2a", dict(label_type="ground_truth", num_generated_tokens=1)),
    ):
        paths[key] = train(IA2TrainConfig(method, **common, **kw), micro_model("llama", tok), tok)
    return {"root": root, "data": data, "outputs": out, "model": model, "tok": tok, "runs": paths}


def _cfg(w, **kw):
    from actlab.ia2.evaluate import EvalConfig

    base = dict(
        model_types=["tok", "t2a"],
        trained_datasets=[DS],
        icl_max_demos=2,
        num_eval_examples=6,
        outputs_dir=str(w["outputs"]),
        data_dir=str(w["data"]),
        model_id="micro",
    )
    base.update(kw)
    return EvalConfig(**base)


def _docs(paths):
    return {p: json.loads(p.read_text()) for p in paths}


def test_runs_differing_in_T_label_type_or_icl_get_distinct_computed_results(trained):
    from actlab.ia2.evaluate import evaluate

    w = trained
    pre = {"micro": (w["model"], w["tok"])}
    logs = []
    paths = evaluate(_cfg(w), preloaded=pre, log=logs.append)
    assert len(paths) == 5 and len(set(paths)) == 5, paths  # one result per run: T, label type, parent's label type
    docs = _docs(paths)
    assert {d["identity"]["trained"]["num_generated_tokens"] for d in docs.values()} == {1, 2}
    assert {d["identity"]["trained"]["label_type"] for d in docs.values()} == {"icl_outputs", "ground_truth"}
    for d in docs.values():
        run = json.loads((w["runs"][_key(w, d)] / "config.json").read_text())
        assert d["identity"]["trained"]["label_type"] == run["label_type"]
        assert d["without_icl"]["n"] == 6 and d["with_icl_accuracy"] is None  # computed, without ICL
    assert not any("skipped" in x for x in logs)
    # the same request again: every result serves it
    logs.clear()
    evaluate(_cfg(w), preloaded=pre, log=logs.append)
    assert any("5 of 5 results exist, skipped" in x for x in logs), logs
    # with ICL after a plain evaluate: recomputed (not skipped), with_icl_accuracy filled
    logs.clear()
    paths_icl = evaluate(_cfg(w, eval_with_icl=True), preloaded=pre, log=logs.append)
    assert paths_icl == paths
    assert sum("recomputing" in x and "with_icl: False -> True" in x for x in logs) == 5, logs
    for d in _docs(paths).values():
        assert d["with_icl"]["n"] == 6 and d["with_icl_accuracy"] is not None
        assert d["identity"]["with_icl"] is True
    # a result with ICL also serves a plain request
    logs.clear()
    evaluate(_cfg(w), preloaded=pre, log=logs.append)
    assert any("5 of 5 results exist, skipped" in x for x in logs), logs


def _key(w, doc):
    name = doc["identity"]["trained"]
    for k, p in w["runs"].items():
        c = json.loads((p / "config.json").read_text())
        if all(c.get(f) == name.get(f) for f in ("training_method", "label_type", "num_generated_tokens")):
            return k
    raise AssertionError(name)


def test_a_result_with_other_recorded_settings_is_recomputed(trained):
    from actlab.ia2.evaluate import evaluate

    w = trained
    pre = {"micro": (w["model"], w["tok"])}
    paths = evaluate(_cfg(w, model_types=["tok"]), preloaded=pre, log=None)
    victim = paths[0]
    doc = json.loads(victim.read_text())
    doc["identity"]["trained"]["lr"] = 0.5  # as if the run had been retrained with another lr into the same dir
    doc["without_icl_accuracy"] = -1.0
    victim.write_text(json.dumps(doc))
    logs = []
    evaluate(_cfg(w, model_types=["tok"]), preloaded=pre, log=logs.append)
    assert any("recomputing" in x and victim.name in x and "trained.lr: 0.5 -> 0.01" in x for x in logs), logs
    assert json.loads(victim.read_text())["without_icl_accuracy"] >= 0
    # a result written before identities were recorded is recomputed too
    doc = json.loads(victim.read_text())
    del doc["identity"]
    victim.write_text(json.dumps(doc))
    logs.clear()
    evaluate(_cfg(w, model_types=["tok"]), preloaded=pre, log=logs.append)
    assert any("no recorded settings" in x for x in logs), logs
    assert "identity" in json.loads(victim.read_text())


def test_num_generated_tokens_eval_sets_the_generation_length(trained, monkeypatch):
    import actlab.core.models as models_mod
    from actlab.data import get_dataset, prepare
    from actlab.ia2.evaluate import evaluate

    w = trained
    prepare("syn_gsm8k", w["data"], num_train_samples=10, num_val_samples=3)
    seen = []
    real = models_mod.generate

    def spy(model, tok, prompts, max_new_tokens=32, **kw):
        seen.append(max_new_tokens)
        ids = real(model, tok, prompts, max_new_tokens=max_new_tokens, return_ids=True, **kw)
        assert all(len(x) <= max_new_tokens for x in ids)
        return real(model, tok, prompts, max_new_tokens=max_new_tokens, **kw)

    monkeypatch.setattr(models_mod, "generate", spy)
    pre = {"micro": (w["model"], w["tok"])}
    base = dict(
        model_types=["base"],
        trained_datasets=None,
        eval_datasets=["syn_gsm8k"],
        num_eval_examples=3,
        num_examples=[4],
        icl_source_datasets=[DS],
    )
    paths3 = evaluate(_cfg(w, num_generated_tokens_eval=3, **base), preloaded=pre, log=None)
    assert seen and set(seen) == {3}
    seen.clear()
    paths7 = evaluate(_cfg(w, num_generated_tokens_eval=7, **base), preloaded=pre, log=None)
    assert set(seen) == {7}
    assert set(paths3).isdisjoint(paths7)  # T is in the name: both results kept
    assert json.loads(paths7[0].read_text())["config"]["num_generated_tokens_eval"] == 7
    # not given: the registry's length
    seen.clear()
    evaluate(_cfg(w, **base), preloaded=pre, log=None)
    assert set(seen) == {get_dataset("syn_gsm8k").max_new_tokens}


def test_cli_args_reach_the_generation_length():
    from actlab.cli.main import make_parser
    from actlab.core.config import config_from_namespace
    from actlab.ia2.evaluate import EvalConfig

    parser = make_parser()
    ns = parser.parse_args(["ia2", "evaluate", "--num_generated_tokens_eval", "5"])
    assert config_from_namespace(EvalConfig, ns).num_generated_tokens_eval == 5
    # not given: None, so multi-token tasks keep the registry's length
    ns = parser.parse_args(["ia2", "evaluate"])
    assert config_from_namespace(EvalConfig, ns).num_generated_tokens_eval is None
