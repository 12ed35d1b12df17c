"""IA2 training on micro models: every method trains, saves and reloads; offsets, a2t parent, resume, bad input."""

import json

import pytest
import torch

from actlab.core import adapters
from actlab.core.testing import micro_model, micro_tokenizer
from actlab.ia2 import METHODS, SEED_METHODS, IA2TrainConfig
from actlab.ia2 import naming as naming_mod
from actlab.ia2.trainer import train

DS = "syn_sst2_remap"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    from actlab.data import make_train, prepare

    d = tmp_path_factory.mktemp("ia2_train_data")
    prepare("syn_sst2", d, num_train_samples=30, num_val_samples=6, label_template="remap")
    make_train(DS, d, num_train_examples=[4], num_runs=1, max_icl_demos=3)
    return d


@pytest.fixture(scope="module")
def tok():
    return micro_tokenizer(extra_words=("Friday", "Text", "Label"))


def _cfg(method, data_dir, out, **kw):
    obj = method.split("-")[-1]
    base = dict(
        dataset=DS,
        model_id="micro",
        data_dir=str(data_dir),
        output_dir=str(out),
        num_train_examples=4,
        num_generated_tokens=2,
        num_virtual_tokens=3,
        lora_r=4,
        lora_alpha=8,
        max_steps=3,
        lr=1e-2,
        dev_eval_steps=1,
    )
    if obj in ("tok", "a2t", "t2a"):
        base["label_type"] = "icl_outputs"
    if obj == "tna":
        base["ce_loss_weight"] = 0.5
    if method.startswith("ia3"):
        base["lr"] = 1e-1
    base.update(kw)
    return IA2TrainConfig(method, **base)


def test_method_names():
    assert len(SEED_METHODS) == 20 and "tokl" in METHODS
    assert {"tok", "act", "tna", "a2t", "t2a", "ia3-t2a", "prompt-tna", "prefix-a2t"} <= set(SEED_METHODS)


def test_seed_naming():
    kw = dict(model_id="meta-llama/Llama-3.2-1B", lora_type="qkv", num_train_examples=100, lr=1e-4, run_idx=0)
    assert (
        naming_mod.run_name(IA2TrainConfig("tok", label_type="icl_outputs", **kw))
        == "Llama-3.2-1B_qkv_8_8_1_100_0.0001_0_icl_outputs"
    )
    assert naming_mod.run_name(IA2TrainConfig("act", **kw)) == "Llama-3.2-1B_qkv_8_8_1_100_0.0001_0"
    assert (
        naming_mod.run_name(IA2TrainConfig("tna", ce_loss_weight=0.002, **kw))
        == "Llama-3.2-1B_qkv_8_8_1_100_0.0001_0_0.002"
    )
    assert (
        naming_mod.run_name(IA2TrainConfig("ia3-act", ia3_type="qkv", **kw)) == "Llama-3.2-1B_ia3_qkv_1_100_0.0001_0"
    )
    c = IA2TrainConfig("prompt-a2t", label_type="ground_truth", num_virtual_tokens=20, **kw)
    assert str(naming_mod.run_dir(c)) == "outputs/prompt-a2t/gsm8k/Llama-3.2-1B_prompt_20_1_100_0.0001_0_ground_truth"
    assert str(naming_mod.parent_dir(c)) == "outputs/prompt-act/gsm8k/Llama-3.2-1B_prompt_20_1_100_0.0001_0"
    t2a = IA2TrainConfig("t2a", label_type="ground_truth", **kw)
    assert naming_mod.parent_dir(t2a).name == "Llama-3.2-1B_qkv_8_8_1_100_0.0001_0_ground_truth"


def _snapshot(model):
    return [(p, p.detach().clone()) for p in model.parameters()]


def _train_checked(method, data_dir, out, tok, monkeypatch, arch="llama", **kw):
    """Train ``method`` 3 steps on the fixed batch (N=4 = one batch); return (path, peft_model, initial state)."""
    model = micro_model(arch, tok)
    base_before = _snapshot(model)
    init = {}
    real_attach = adapters.attach

    def spy(m, c, seed=None):
        pm = real_attach(m, c, seed=seed)
        init.update(adapters.adapter_state(pm))
        return pm

    monkeypatch.setattr(adapters, "attach", spy)
    path, pm = train(_cfg(method, data_dir, out, **kw), model, tok, return_model=True)
    rows = [r for r in (json.loads(x) for x in (path / "metrics.jsonl").read_text().splitlines())]
    losses = [r["train/loss"] for r in rows]
    assert len(losses) == 3 and all(torch.isfinite(torch.tensor(losses))), losses
    assert losses[-1] < losses[0], (method, losses)
    assert all(torch.equal(p, c) for p, c in base_before), "base parameters changed"
    return path, pm, init


def _check_saved(path, pm, tok, init):
    trained = adapters.adapter_state(pm)
    assert any(not torch.equal(trained[k], init[k].to(trained[k].device)) for k in init), "adapter did not change"
    cfg = json.loads((path / "config.json").read_text())
    assert cfg["training_method"] == path.parent.parent.name and (path / "COMPLETE").exists()
    assert (path / "adapter_model.safetensors").exists() and not (path / "checkpoint").exists()
    fresh = micro_model("llama", tok)
    re = adapters.load_adapter(fresh, path)
    re.eval()
    pm.eval()
    ids = torch.tensor([tok("Text: good\nLabel:")["input_ids"]])
    with torch.no_grad():
        torch.testing.assert_close(re(input_ids=ids).logits, pm(input_ids=ids).logits, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("method", [m for m in METHODS if m.split("-")[-1] not in ("a2t", "t2a")])
def test_method_trains_saves_reloads(method, data_dir, tmp_path, tok, monkeypatch):
    path, pm, init = _train_checked(method, data_dir, tmp_path, tok, monkeypatch)
    _check_saved(path, pm, tok, init)
    summary = json.loads((path / "train_summary.json").read_text())
    assert summary["steps"] == 3 and summary["n_train"] == 4 and summary["n_dev"] == 2
    if method in ("prefix-act", "prompt-tok"):  # the trained adapter generates; batched = one by one
        from actlab.core.models import generate

        prompts = ["Text: good cat\nLabel:", "Text: bad\nLabel:"]
        batched = generate(pm, tok, prompts, max_new_tokens=3, return_ids=True)
        single = [generate(pm, tok, [p], max_new_tokens=3, return_ids=True)[0] for p in prompts]
        assert batched == single and all(len(x) > 0 for x in batched)


@pytest.mark.parametrize("method", [m for m in SEED_METHODS if m.split("-")[-1] in ("a2t", "t2a")])
def test_sequential_method(method, data_dir, tmp_path, tok, monkeypatch):
    cfg = _cfg(method, data_dir, tmp_path)
    parent = cfg.parent_config()
    ppath = train(parent.__class__(**{**parent.to_dict(), "max_steps": 1}), micro_model("llama", tok), tok)
    assert ppath == naming_mod.parent_dir(cfg)
    from actlab.core.io import load_tensors

    parent_state, _ = load_tensors(ppath / "adapter_model.safetensors")
    path, pm, _ = _train_checked(method, data_dir, tmp_path, tok, monkeypatch)
    # the child started from the parent: compare its trained state with the parent's saved one (PEFT key names)
    from peft import get_peft_model_state_dict

    assert set(get_peft_model_state_dict(pm)) == set(parent_state)
    _check_saved(path, pm, tok, {k: v for k, v in parent_state.items()})
    assert json.loads((path / "config.json").read_text())["parent_dir"] == str(ppath)


def test_a2t_starts_from_act_adapter(data_dir, tmp_path, tok, monkeypatch):
    act = train(_cfg("act", data_dir, tmp_path, max_steps=2), micro_model("llama", tok), tok)
    from actlab.core.io import load_tensors

    act_state, _ = load_tensors(act / "adapter_model.safetensors")
    assert any(k.endswith("lora_B.weight") and v.abs().sum() > 0 for k, v in act_state.items())  # B left zero-init
    start = {}
    real = adapters.load_adapter

    def spy(m, path, trainable=False):
        pm = real(m, path, trainable)
        start.update(adapters.adapter_state(pm), path=str(path))
        return pm

    monkeypatch.setattr(adapters, "load_adapter", spy)
    a2t = train(_cfg("a2t", data_dir, tmp_path, max_steps=1), micro_model("llama", tok), tok)
    assert start.pop("path") == str(act)
    assert set(start) == set(act_state)
    for k in act_state:
        torch.testing.assert_close(start[k], act_state[k], atol=0, rtol=0)
    a2t_state, _ = load_tensors(a2t / "adapter_model.safetensors")
    assert any(not torch.equal(a2t_state[k], act_state[k]) for k in act_state)  # and then trained on


def test_prompt_tuning_offset_matches_manual_forward(tok):
    from peft import PromptTuningConfig, TaskType, get_peft_model

    from actlab.ia2.losses import student_forward

    nv = 5
    pm = get_peft_model(
        micro_model("llama", tok), PromptTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=nv)
    )
    q = [tok("Text: good good\nLabel:")["input_ids"], tok("Text: bad\nLabel:")["input_ids"]]
    y = [[7, 8, 9], [10]]
    logits, acts, valid = student_forward(pm, q, y, tok.pad_token_id, site="attn_output", layers=None)
    base = pm.get_base_model()
    for i in range(2):
        ids = torch.tensor([q[i] + y[i][:-1]])
        emb = torch.cat([pm.get_prompt(batch_size=1), base.get_input_embeddings()(ids)], 1)
        rec = []
        hooks = [
            layer.self_attn.register_forward_hook(lambda m, a, o, rec=rec: rec.append(o[0]))
            for layer in base.model.layers
        ]
        with torch.no_grad():
            full = base(inputs_embeds=emb).logits
        for h in hooks:
            h.remove()
        pos = [len(q[i]) - 1 + t for t in range(len(y[i]))]
        want_logits = full[0, [nv + p for p in pos]]
        want_acts = torch.stack([r[0, [nv + p for p in pos]] for r in rec])
        torch.testing.assert_close(logits[i, : len(y[i])].detach(), want_logits, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(acts[:, i, : len(y[i])].detach(), want_acts, atol=1e-5, rtol=1e-5)
        # without the offset we would read other positions: make sure the test can tell
        assert not torch.allclose(full[0, pos], want_logits, atol=1e-3)
    assert valid.tolist() == [[True, True, True], [True, False, False]]


def test_resume_after_kill(data_dir, tmp_path, tok, monkeypatch):
    from actlab.ia2 import losses

    ref = train(
        _cfg("act", data_dir, tmp_path / "ref", max_steps=4, checkpoint_every=2), micro_model("llama", tok), tok
    )
    real = losses.compute_losses
    calls = {"n": 0}

    def dying(*a, **k):
        calls["n"] += 1
        if calls["n"] > 4 + 2:  # 1 train + 1 dev call per step (dev_eval_steps=1) → dies during step 4
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(losses, "compute_losses", dying)
    cfg = _cfg("act", data_dir, tmp_path / "run", max_steps=4, checkpoint_every=2)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, micro_model("llama", tok), tok)
    path = naming_mod.run_dir(cfg)
    assert (path / "checkpoint" / "state.safetensors").exists() and not (path / "COMPLETE").exists()
    monkeypatch.setattr(losses, "compute_losses", real)
    train(cfg, micro_model("llama", tok), tok)
    rows = [json.loads(x) for x in (path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    ref_rows = [json.loads(x) for x in (ref / "metrics.jsonl").read_text().splitlines()]
    for a, b in zip(rows, ref_rows, strict=True):
        assert a["train/loss"] == pytest.approx(b["train/loss"], rel=1e-5)
    from actlab.core.io import load_tensors

    got, _ = load_tensors(path / "adapter_model.safetensors")
    want, _ = load_tensors(ref / "adapter_model.safetensors")
    for k in want:
        torch.testing.assert_close(got[k], want[k], atol=1e-6, rtol=1e-5)


def test_early_stopping_restores_best(data_dir, tmp_path, tok):
    # a huge lr makes the dev loss blow up after the first steps → early stop → best state restored
    path = train(
        _cfg("act", data_dir, tmp_path, max_steps=None, num_epochs=30, lr=3.0, patience=2),
        micro_model("llama", tok),
        tok,
    )
    s = json.loads((path / "train_summary.json").read_text())
    rows = [json.loads(x) for x in (path / "metrics.jsonl").read_text().splitlines()]
    assert s["early_stopped"] and s["steps"] < 30
    assert s["best_dev_loss"] == pytest.approx(min(r["dev/loss"] for r in rows))


def test_losses_match_upstream_formulas(tok):
    import torch.nn.functional as F

    from actlab.ia2.losses import act_loss, ce_loss, student_forward

    g = torch.Generator().manual_seed(0)
    acts = torch.randn(3, 2, 4, 8, generator=g)
    valid = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]], dtype=torch.bool)
    tg = [torch.randn(3, 4, 8, generator=g), torch.randn(3, 2, 8, generator=g)]
    want = torch.stack([F.mse_loss(acts[:, 0], tg[0]) * 3, F.mse_loss(acts[:, 1, :2], tg[1]) * 3]).mean()
    torch.testing.assert_close(act_loss(acts, tg, valid), want)
    logits = torch.randn(2, 4, 11, generator=g)
    labels = [[1, 2, 3, 4], [5, 6]]
    want = torch.stack(
        [F.cross_entropy(logits[0], torch.tensor(labels[0])), F.cross_entropy(logits[1, :2], torch.tensor(labels[1]))]
    ).mean()
    torch.testing.assert_close(ce_loss(logits, labels, valid), want)
    # stopping the forward after the deepest aligned site gives the same activations and gradients
    m = micro_model("llama", tok)
    q, y = [tok("Text: good\nLabel:")["input_ids"]] * 2, [[5, 6], [7]]
    for layers in (None, [0]):
        got = []
        for need in (True, False):
            m.zero_grad()
            _, a, _ = student_forward(m, q, y, tok.pad_token_id, site="attn_output", layers=layers, need_logits=need)
            a.pow(2).sum().backward()
            got.append((a.detach(), m.model.layers[0].self_attn.q_proj.weight.grad.clone()))
        torch.testing.assert_close(got[0][0], got[1][0])
        torch.testing.assert_close(got[0][1], got[1][1])


def test_tna_ground_truth_multi_token(data_dir, tmp_path, tok, monkeypatch):
    # upstream crashes here (shape mismatch); the CE part gets its own forward on the ground-truth tokens
    path, pm, init = _train_checked("tna", data_dir, tmp_path, tok, monkeypatch, label_type="ground_truth")
    assert path.name.endswith("_0.5")
    row = json.loads((path / "metrics.jsonl").read_text().splitlines()[0])
    assert row["train/loss"] == pytest.approx(0.5 * row["train/act"] + 0.5 * row["train/ce"], rel=1e-5)


@pytest.mark.parametrize("method", ["prefix-tna", "prompt-act", "ia3-tok"])
def test_qwen3_families(method, data_dir, tmp_path, tok, monkeypatch):
    """The GPU targets (Qwen3, Llama) share the code path: a micro Qwen3 trains every adapter family too."""
    path, pm, init = _train_checked(method, data_dir, tmp_path, tok, monkeypatch, arch="qwen3")
    trained = adapters.adapter_state(pm)
    assert any(not torch.equal(trained[k], init[k]) for k in init)


def test_adapter_init_and_training_follow_the_run_seed(data_dir, tmp_path, tok):
    """The adapter's random init comes from the run's seed, not from the global RNG (which torch does not seed to a
    fixed value across processes): two runs with the RNG elsewhere save the same adapter."""
    from actlab.core.io import load_tensors

    got = []
    for rng in (1, 2):
        model = micro_model("llama", tok)
        torch.manual_seed(rng)
        out = train(_cfg("act", data_dir, tmp_path / str(rng), max_steps=2), model, tok)
        got.append(load_tensors(out / "adapter_model.safetensors")[0])
    assert any("lora_A" in k for k in got[0])
    for k in got[0]:
        assert torch.equal(got[0][k], got[1][k]), k


@pytest.mark.parametrize("method", ["tok", "tokl", "act", "tna", "ia3-act", "ia3-tok", "prompt-tok", "prompt-act"])
def test_gradient_checkpointing_on_and_same_weights(method, data_dir, tmp_path, tok):
    """--gradient_checkpointing: the model's checkpointing is on during training and two optimizer steps give the
    plain run's adapter weights (float tolerance)."""
    from actlab.core.gradckpt import is_gradient_checkpointing

    pa, plain = train(
        _cfg(method, data_dir, tmp_path / "plain", max_steps=2), micro_model("llama", tok), tok, return_model=True
    )
    seen = []
    model = micro_model("llama", tok)
    real = model.forward

    def spy(*a, **k):  # what the model's layers have while the training steps run
        seen.append(
            (
                model.training,
                is_gradient_checkpointing(model),
                all(layer.gradient_checkpointing for layer in model.model.layers),
            )
        )
        return real(*a, **k)

    model.forward = spy
    pb, ckpt = train(
        _cfg(method, data_dir, tmp_path / "gc", max_steps=2, gradient_checkpointing=True),
        model,
        tok,
        return_model=True,
    )
    assert any(s == (True, True, True) for s in seen), seen
    assert not is_gradient_checkpointing(plain)
    a, b = adapters.adapter_state(plain), adapters.adapter_state(ckpt)
    assert set(a) == set(b)
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-5, rtol=1e-4), (method, k, (a[k] - b[k]).abs().max())
    la, lb = ([json.loads(x)["train/loss"] for x in (p / "metrics.jsonl").read_text().splitlines()] for p in (pa, pb))
    assert la == pytest.approx(lb, rel=1e-4, abs=1e-6) and la[0] != la[1]  # the same steps, and they trained


@pytest.mark.parametrize("method", ["prefix-tok", "prefix-act"])
def test_gradient_checkpointing_refused_where_it_cannot_apply(method, data_dir, tmp_path):
    from actlab.core.errors import ActlabError

    with pytest.raises(ActlabError, match="--gradient_checkpointing does not apply"):
        _cfg(method, data_dir, tmp_path / "x", gradient_checkpointing=True)
    assert not (tmp_path / "x").exists()
