import pytest
import torch

from actlab.core import arch
from actlab.core.capture import capture, intervene
from actlab.core.errors import ActlabError
from actlab.core.models import encode, model_inputs

TEXTS = ["the cat is on the tree .", "one two", "alice has three apple and bob has two", "red"]


@pytest.fixture(params=["llama", "qwen3", "gpt2"])
def model(request, micro_tok):
    from actlab.core.testing import micro_model

    return micro_model(request.param, micro_tok, layers=3)


def test_block_output_equals_hidden_states(model, micro_tok):
    enc = encode(micro_tok, TEXTS[:2])
    with torch.no_grad(), capture(model, "block_output") as cap:
        out = model(**model_inputs(model, enc), output_hidden_states=True)
    n = arch.num_layers(model)
    assert len(out.hidden_states) == n + 1
    for layer in range(n - 1):
        torch.testing.assert_close(cap[layer], out.hidden_states[layer + 1], rtol=0, atol=0)
    # the last hidden state has the final norm applied
    norm = arch.get_module(model, arch.paths(model)["norm"])
    torch.testing.assert_close(norm(cap[n - 1]), out.hidden_states[n], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(cap[n - 1], out.hidden_states[n])


def test_attn_and_mlp_outputs_are_the_residual_updates(model, micro_tok):
    """block_out = block_in + attn_output + mlp_output (pre-norm residual blocks): attn/mlp sites are pre-residual."""
    enc = encode(micro_tok, TEXTS[:2])
    with torch.no_grad(), capture(model, ["attn_output", "mlp_output", "block_output"]) as cap:
        out = model(**model_inputs(model, enc), output_hidden_states=True)
    for layer in range(arch.num_layers(model)):
        recon = out.hidden_states[layer] + cap["attn_output", layer] + cap["mlp_output", layer]
        torch.testing.assert_close(recon, cap["block_output", layer], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("arch_name", ["gpt2", "llama"])
def test_batched_capture_equals_one_by_one_left_padded(arch_name, micro_tok):
    from actlab.core.testing import micro_model

    model = micro_model(arch_name, micro_tok, layers=2)
    enc = encode(micro_tok, TEXTS, side="left")
    assert (enc["attention_mask"][:, 0] == 0).any(), "fixture must contain left padding"
    with torch.no_grad(), capture(model, "block_output", positions=-1) as cap:
        model(**model_inputs(model, enc))
    batched = cap.stack()  # [L, B, d]
    for i, t in enumerate(TEXTS):
        one = encode(micro_tok, [t])
        with torch.no_grad(), capture(model, "block_output", positions=-1) as c1:
            model(**model_inputs(model, one))
        torch.testing.assert_close(batched[:, i], c1.stack()[:, 0], rtol=1e-5, atol=1e-5)


def test_gpt2_without_position_ids_would_differ(micro_tok):
    """Negative control: the padding bug the test above guards against is real for absolute positions."""
    from actlab.core.testing import micro_model

    model = micro_model("gpt2", micro_tok, layers=2)
    enc = encode(micro_tok, TEXTS, side="left")
    with torch.no_grad(), capture(model, "block_output", layers=-1, positions=-1) as cap:
        model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])  # no position_ids
    one = encode(micro_tok, [TEXTS[1]])
    with torch.no_grad(), capture(model, "block_output", layers=-1, positions=-1) as c1:
        model(**one)
    assert not torch.allclose(cap[1][1], c1[1][0], atol=1e-3)


def test_positions_tensor_and_slice(micro_llama, micro_tok):
    enc = encode(micro_tok, TEXTS[:3], side="right")
    last = enc["attention_mask"].sum(1) - 1
    with (
        torch.no_grad(),
        capture(micro_llama, "attn_output", layers=[0, -1], positions=last) as cap,
        capture(micro_llama, "attn_output", layers=[0, -1]) as full,
        capture(micro_llama, "attn_output", layers=0, positions=slice(1, 3)) as sl,
    ):
        micro_llama(**enc)
    assert cap.layer_ids == [0, 1]
    for i in range(3):
        torch.testing.assert_close(cap[1][i], full[1][i, last[i]])
    torch.testing.assert_close(sl[0], full[0][:, 1:3])
    pos2 = torch.stack([last, last - 1], 1)
    with torch.no_grad(), capture(micro_llama, "attn_output", layers=0, positions=pos2) as c2:
        micro_llama(**enc)
    assert c2[0].shape == (3, 2, 32)
    torch.testing.assert_close(c2[0][:, 0], full[0][torch.arange(3), last])


def test_capture_keeps_grad_when_asked(micro_llama, micro_tok):
    enc = encode(micro_tok, TEXTS[:2])
    with capture(micro_llama, "attn_output", positions=-1, detach=False) as cap:
        micro_llama(**model_inputs(micro_llama, enc))
    loss = cap.stack().pow(2).mean()
    loss.backward()
    g = micro_llama.model.layers[0].self_attn.o_proj.weight.grad
    assert g is not None and g.abs().sum() > 0
    micro_llama.zero_grad(set_to_none=True)


def test_hooks_removed_after_exception(micro_llama):
    mods = [m for m in micro_llama.modules()]
    before = sum(len(m._forward_hooks) for m in mods)
    with pytest.raises(RuntimeError, match="boom"):
        with capture(micro_llama, ["attn_output", "block_output", "mlp_output"]):
            assert sum(len(m._forward_hooks) for m in mods) > before
            raise RuntimeError("boom")
    assert sum(len(m._forward_hooks) for m in mods) == before
    with pytest.raises(RuntimeError, match="boom"):
        with intervene(micro_llama, "block_output", 0, torch.zeros(32)):
            raise RuntimeError("boom")
    assert sum(len(m._forward_hooks) for m in mods) == before


def test_raw_module_paths(micro_llama, micro_tok):
    enc = encode(micro_tok, TEXTS[:2])
    with (
        torch.no_grad(),
        capture(micro_llama, "model.layers.{layer}.mlp.down_proj", layers=[1]) as cap,
        capture(micro_llama, "mlp_output", layers=[1]) as ref,
        capture(micro_llama, "model.norm") as nrm,
    ):
        out = micro_llama(**model_inputs(micro_llama, enc), output_hidden_states=True)
    torch.testing.assert_close(cap["model.layers.{layer}.mlp.down_proj", 1], ref[1])
    torch.testing.assert_close(nrm["model.norm", None], out.hidden_states[-1])


def test_bad_sites_are_one_line_errors(micro_llama):
    with pytest.raises(ActlabError, match="unknown site 'resid'.*attn_output"):
        with capture(micro_llama, "resid"):
            pass
    with pytest.raises(ActlabError, match=r"layer 5 out of range for a 2-layer model; valid: 0..1"):
        with capture(micro_llama, "block_output", layers=[5]):
            pass
    with pytest.raises(ActlabError, match="unknown module path 'model.layers.0.mlpp'"):
        with capture(micro_llama, "model.layers.0.mlpp"):
            pass


def test_peft_wrapped_models_resolve_the_same_sites(micro_tok):
    from peft import LoraConfig, PrefixTuningConfig, PromptTuningConfig, get_peft_model

    from actlab.core.testing import micro_model

    enc = encode(micro_tok, TEXTS[:2], side="right")
    base = micro_model("llama", micro_tok)
    with torch.no_grad(), capture(base, "attn_output") as ref:
        base(**enc)
    # LoRA (B = 0 at init): same sites, same values
    lora = get_peft_model(micro_model("llama", micro_tok), LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    with torch.no_grad(), capture(lora, "attn_output") as cap:
        lora(**enc)
    for layer in range(2):
        torch.testing.assert_close(cap[layer], ref[layer])
    # prompt tuning: the sequence is 5 + L long inside; capture returns positions aligned with the input tokens
    pt = get_peft_model(
        micro_model("llama", micro_tok), PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=5)
    )
    with torch.no_grad(), capture(pt, "block_output", positions=-1) as cap, capture(pt, "block_output") as full:
        out = pt(**enc, output_hidden_states=True)
    assert out.hidden_states[1].shape[1] == 5 + enc["input_ids"].shape[1]
    torch.testing.assert_close(full[0], out.hidden_states[1][:, 5:])
    torch.testing.assert_close(cap[0], out.hidden_states[1][:, -1])
    # prefix tuning: no positional shift
    px = get_peft_model(
        micro_model("llama", micro_tok), PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=5)
    )
    with torch.no_grad(), capture(px, "block_output", layers=0) as cap:
        out = px(**enc, output_hidden_states=True)
    assert cap[0].shape[1] == enc["input_ids"].shape[1]
    torch.testing.assert_close(cap[0], out.hidden_states[1])


@pytest.mark.parametrize("mode", ["replace", "add", "mean"])
def test_intervene_writes_at_the_intended_layer(micro_tok, mode):
    """Edit block_output of layer 1 of 3. (transformers v5 records output_hidden_states with hooks installed before
    ours, so hidden_states[2] shows the pre-edit value; hidden_states[3] and later captures see the edit.)"""
    from actlab.core.testing import micro_model

    model = micro_model("llama", micro_tok, layers=3)
    enc = encode(micro_tok, TEXTS[:2])
    v = torch.randn(2, 32)
    with torch.no_grad():
        with capture(model, "attn_output") as attn_clean:
            clean = model(**model_inputs(model, enc), output_hidden_states=True).hidden_states
        with (
            intervene(model, "block_output", 1, v, mode=mode) as h,
            capture(model, "block_output") as cap,
            capture(model, "attn_output") as attn,
        ):
            out = model(**model_inputs(model, enc), output_hidden_states=True).hidden_states
    expected = {"replace": v, "add": clean[2][:, -1] + v, "mean": (clean[2][:, -1] + v) / 2}[mode]
    assert h.applied == 1
    torch.testing.assert_close(cap[1][:, -1], expected)
    torch.testing.assert_close(cap[1][:, :-1], clean[2][:, :-1])  # other positions untouched
    torch.testing.assert_close(cap[0], clean[1])  # the layer before: untouched
    torch.testing.assert_close(attn[1], attn_clean[1])  # inside layer 1, before its output: untouched
    assert not torch.allclose(attn[2][:, -1], attn_clean[2][:, -1])  # layer 2 reads the edit
    assert not torch.allclose(out[3][:, -1], clean[3][:, -1])  # and it reaches the final hidden state
    torch.testing.assert_close(out[3][:, :-1], clean[3][:, :-1])  # causal: earlier positions unaffected


def test_intervene_prefill_only_during_generate(micro_llama, micro_tok):
    enc = encode(micro_tok, TEXTS[:2])
    with torch.no_grad(), intervene(micro_llama, "block_output", 1, torch.randn(32)) as h:
        micro_llama.generate(**enc, max_new_tokens=5, do_sample=False, pad_token_id=micro_tok.pad_token_id)
    assert h.calls == 5 and h.applied == 1  # one prefill + 4 cached decode steps; edited once
    with torch.no_grad(), intervene(micro_llama, "block_output", 1, torch.randn(32), prefill_only=False) as h2:
        micro_llama.generate(**enc, max_new_tokens=5, do_sample=False, pad_token_id=micro_tok.pad_token_id)
    assert h2.applied == 5


def test_capture_during_generate_first_call_and_all_calls(micro_llama, micro_tok):
    enc = encode(micro_tok, TEXTS[:2])
    with (
        torch.no_grad(),
        capture(micro_llama, "attn_output", layers=0, positions=-1) as cap,
        capture(micro_llama, "attn_output", layers=0, positions=-1, first_call_only=True) as first,
    ):
        micro_llama.generate(**enc, max_new_tokens=4, do_sample=False, pad_token_id=micro_tok.pad_token_id)
    assert len(cap.calls(0)) == 4 and len(first.calls(0)) == 1
    assert cap.cat(0).shape == (2, 4, 32)
    torch.testing.assert_close(first[0], cap[0])
