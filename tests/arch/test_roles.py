"""Role letters resolve to each architecture's real modules; sites, prompt/prefix sizes, heads and refusals."""

import pytest
import torch

from actlab.core import adapters, arch
from actlab.core.capture import capture, intervene
from actlab.core.errors import ActlabError
from tests.arch import matrix as M


@pytest.fixture(scope="module")
def tok():
    return M.tokenizer()


def _leaves(targets):
    return {x.rsplit(".", 1)[-1] for x in targets.modules}


@pytest.mark.parametrize(
    "name,spec,want",
    [
        ("phi3", "k", {"qkv_proj"}),  # one fused module serves q, k and v
        ("phi3", "u", {"gate_up_proj"}),
        ("gpt_neox", "qo", {"query_key_value", "dense"}),
        ("falcon", "kvd", {"query_key_value", "dense_4h_to_h"}),
        ("gpt2", "o", {"c_proj"}),
        ("opt", "ud", {"fc1", "fc2"}),  # the MLP's linears sit on OPT's layer
        ("gptj", "od", {"out_proj", "fc_out"}),
        ("phi", "od", {"dense", "fc2"}),
        ("llama", "qko", {"q_proj", "k_proj", "o_proj"}),
    ],
)
def test_roles_resolve_to_the_real_modules(name, spec, want, tok):
    model = M.build(name, tok)
    t = adapters.resolve_targets(model, spec)
    assert _leaves(t) == want and not t.parameters


def test_gpt2_output_and_down_projections_are_told_apart(tok):
    model = M.build("gpt2", tok)  # both are called c_proj: the target names carry their parent
    o, d = adapters.resolve_targets(model, "o").modules, adapters.resolve_targets(model, "d").modules
    assert o == ["attn.c_proj"] and d == ["mlp.c_proj"]
    pm = adapters.attach(model, adapters.peft_config("lora", model, modules="o", r=2))
    assert adapters.adapted_modules(pm) == ["transformer.h.*.attn.c_proj"]


@pytest.mark.parametrize("name", ["mixtral", "qwen3_moe"])
def test_moe_experts_are_lora_target_parameters(name, tok):
    model = M.build(name, tok)
    t = adapters.resolve_targets(model, "gud")
    assert not t.modules and set(t.parameters) == {"mlp.experts.gate_up_proj", "mlp.experts.down_proj"}
    pm = adapters.attach(model, adapters.peft_config("lora", model, modules="qgd", r=2))
    assert "model.layers.*.mlp.experts.gate_up_proj" in adapters.adapted_modules(pm)
    with pytest.raises(ActlabError, match=rf"--ia3_type 'all': in {name} roles gud are the MoE experts"):
        adapters.peft_config("ia3", M.build(name, tok), modules="all")


def test_peft_defaults_are_among_the_resolved_roles(tok):
    """Where PEFT knows a model type's LoRA targets, they are what our roles find (qv, plus fc1/fc2 for Phi)."""
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as PEFT

    seen = 0
    for name in M.ARCHS:
        model = M.build(name, tok)
        known = PEFT.get(arch.model_type(model))
        if not isinstance(known, list):
            continue
        seen += 1
        assert set(known) <= _leaves(adapters.resolve_targets(model, "all")), name
        assert adapters.default_lora_targets(model).modules == known
    assert seen >= 15
    for name in ("phi3", "olmo2", "cohere", "granite"):  # no PEFT default: the q and v roles
        t = adapters.default_lora_targets(M.build(name, tok))
        assert _leaves(t) == ({"qkv_proj"} if name == "phi3" else {"q_proj", "v_proj"}), name


def test_all_linear_and_explicit_lists(tok):
    model = M.build("falcon", tok)
    t = adapters.resolve_targets(model, "all-linear")
    assert _leaves(t) == {"query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"}  # never lm_head
    assert adapters.resolve_targets(model, "query_key_value,dense").modules == ["query_key_value", "dense"]
    assert adapters.resolve_targets(model, ["dense_4h_to_h"]).modules == ["dense_4h_to_h"]
    with pytest.raises(ActlabError, match="names q_proj, which falcon does not have; its linear modules are: dense,"):
        adapters.resolve_targets(model, "q_proj,dense")


@pytest.mark.parametrize(
    "spec,msg",
    [
        ("qg", "--lora_type 'qg': gpt_neox has no module for role g; its roles are qkvoud (q=query_key_value"),
        ("qq", "a role letter is repeated"),
        ("q k", "bad --lora_type 'q k'"),
    ],
)
def test_bad_targets_are_one_line(spec, msg, tok):
    with pytest.raises(ActlabError) as e:
        adapters.peft_config("lora", M.build("gpt_neox", tok), modules=spec)
    assert msg in str(e.value) and "\n" not in str(e.value)


def test_ia2_config_takes_all_linear_and_lists():
    from actlab.ia2 import IA2TrainConfig

    assert IA2TrainConfig("act", lora_type="all-linear").lora_type == "all-linear"
    assert IA2TrainConfig("ia3-act", ia3_type="query_key_value,dense").ia3_type == "query_key_value,dense"
    with pytest.raises(ActlabError, match="repeated"):
        IA2TrainConfig("act", lora_type="qkq")


# ---------------------------------------------------------------------------------------- prompt and prefix
def test_prompt_tuning_is_as_wide_as_the_input_embeddings(tok):
    from actlab.core.testing import OPT_EMBED, OPT_HIDDEN

    model = M.build("opt", tok)
    cfg = adapters.peft_config("prompt", model, num_virtual_tokens=3)
    assert cfg.token_dim == OPT_EMBED != OPT_HIDDEN == arch.hidden_size(model)
    pm = adapters.attach(model, cfg)
    ids = torch.tensor([tok("the cat is red")["input_ids"]])
    assert pm(input_ids=ids).logits.shape[1] == ids.shape[1] + 3


# (layers, kv heads as cached, head size): multi-query Falcon caches 1 head; the new Falcon layout caches its 2 KV
# groups expanded to the 4 query heads; GQA Llama its 2 KV heads; Gemma-2 head_dim 16 (× 4 heads ≠ hidden 32)
@pytest.mark.parametrize(
    "name,geometry",
    [
        ("falcon", (2, 1, 8)),
        ("falcon_new", (2, 4, 8)),
        ("llama", (2, 2, 8)),
        ("gemma2", (2, 2, 16)),
        ("gpt2", (2, 4, 8)),
    ],
)
def test_prefix_is_sized_from_the_kv_cache(name, geometry, tok):
    model = M.build(name, tok)
    cfg = adapters.peft_config("prefix", model, num_virtual_tokens=3)
    assert (cfg.num_layers, cfg.num_attention_heads, cfg.token_dim // cfg.num_attention_heads) == geometry
    pm = adapters.attach(model, cfg)
    enc = tok(["the cat is red", "a dog"], return_tensors="pt", padding=True)
    out = pm(**enc)
    assert out.logits.shape[:2] == enc["input_ids"].shape


@pytest.mark.parametrize("family", ["prompt", "prefix"])
def test_an_architecture_peft_cannot_serve_is_one_line(family, tok, monkeypatch):
    """Checked when the config is made (before targets or adapters are built) and again once attached."""
    model = M.build("llama", tok)
    cfg = adapters.peft_config(family, M.build("llama", tok), num_virtual_tokens=3)
    real = type(model.model).forward

    def broken(self, *a, **k):
        if k.get("inputs_embeds") is not None or k.get("past_key_values") is not None:
            raise RuntimeError("shape '[1, 3, 4, 8]' is invalid for input of size 48\nmore")
        return real(self, *a, **k)

    monkeypatch.setattr(type(model.model), "forward", broken)
    for call in (
        lambda: adapters.peft_config(family, model, num_virtual_tokens=3),
        lambda: adapters.attach(model, cfg),
    ):
        with pytest.raises(ActlabError) as e:
            call()
        assert str(e.value).startswith(f"{family} tuning cannot run on llama: PEFT's virtual tokens do not fit")
        assert "RuntimeError: shape" in str(e.value) and "\n" not in str(e.value)


# --------------------------------------------------------------------------------------------------- sites
def test_layouts(tok):
    got = {n: arch.layout(M.build(n, tok)) for n in ("llama", "falcon", "opt", "gptj", "mixtral", "gpt_neox")}
    assert got["falcon"].attn == "self_attention" and got["falcon"].block == "parallel"
    assert got["opt"].mlp == "fc2" and not got["opt"].mlp_module and got["opt"].block == "sequential"
    assert got["gptj"].block == got["gpt_neox"].block == "parallel" and got["mixtral"].block == "moe"
    assert got["gpt_neox"].attn == "attention" and got["llama"].norm == "model.norm"


def test_missing_site_names_the_sites_that_exist(tok):
    model = M.build("llama", tok)
    for layer in model.model.layers:
        del layer.mlp
    with pytest.raises(ActlabError) as e:
        with capture(model, "mlp_output", layers=0):
            pass
    assert str(e.value) == (
        "site 'mlp_output' does not exist in llama (no mlp module in its layers); its sites are: "
        "attn_output, block_output, or a module path"
    )


def test_opt_mlp_site_is_per_token_and_writable(tok):
    model = M.build("opt", tok)
    enc = tok(["the cat is red and the dog is blue", "alice has a book"], return_tensors="pt", padding=True)
    with torch.no_grad(), capture(model, "mlp_output", layers=[0, 1], positions=-1) as cap:
        base = model(**enc).logits
    assert cap[0].shape == (2, arch.hidden_size(model))
    with torch.no_grad(), intervene(model, "mlp_output", 1, torch.zeros(2, arch.hidden_size(model))) as h:
        edited = model(**enc).logits
    assert h.applied == 1 and edited.shape == base.shape
    assert torch.equal(edited[:, :-1], base[:, :-1]) and not torch.equal(edited[:, -1], base[:, -1])


# --------------------------------------------------------------------------------------------------- heads
@pytest.mark.parametrize(
    "name,linear",
    [("llama", True), ("cohere", False), ("gemma2", False), ("granite", False), ("opt", True), ("phi", True)],
)
def test_head_quirks_are_found_and_kept(name, linear, tok):
    model = M.build(name, tok)
    enc = tok(["the cat is red"], return_tensors="pt")
    with torch.no_grad():
        h = model.base_model(**enc).last_hidden_state
        want = model(**enc).logits
        plain = model.get_output_embeddings()(h)
        assert arch.head_is_linear(model) == linear
        assert torch.equal(plain, want) == linear  # lm_head alone would be wrong exactly where the path is not
        assert torch.equal(arch.output_logits(model, h), want)
        assert torch.equal(arch.postprocess_logits(model, plain), want)


# ---------------------------------------------------------------------------------------------------- ICAE
def test_icae_learned_positions_refuse_past_the_table(tok):
    from actlab.icae.config import ICAEConfig
    from actlab.icae.model import ICAE

    assert arch.learned_positions(M.build("llama", tok)) is None
    assert arch.learned_positions(M.build("opt", tok)) == arch.learned_positions(M.build("gpt2", tok)) == 256
    icae = ICAE(M.build("gpt2", tok), tok, ICAEConfig(fixed_mem_size=4, mean_compression_rate=2, lora_r=2))
    with pytest.raises(ActlabError, match="past the 256 learned positions of gpt2; lower max_seq_len or max_new"):
        icae.generate(["the cat is red"], special="AE", max_new_tokens=300)
    assert len(icae.generate(["the cat is red"], special="AE", max_new_tokens=3)) == 1


def test_icae_attention_is_the_models_default():
    from actlab.icae.config import ICAEConfig

    assert ICAEConfig().attn_implementation is None
    assert ICAEConfig(attn_implementation="eager").attn_implementation == "eager"


@pytest.mark.parametrize("name", ["gpt2", "opt", "llama", "falcon"])
def test_icae_decoder_positions_match_the_models_own(name, tok):
    """ICAE's decoder loop (left-padded batch, explicit 0-based position ids, KV cache) gives what HF's own
    generate gives for each row alone: learned absolute tables (GPT-2; OPT, which adds its offset itself) and rotary."""
    from actlab.core.models import generate
    from actlab.icae.model import SimpleLLM

    model = M.build(name, tok)
    ctx = ["the cat is red and the dog is blue . alice has a book", "bob is in rome"]
    prompts = ["what is red ?", "where ?"]
    batched = SimpleLLM(model, tok).generate(ctx, prompts, max_new_tokens=5)
    alone = [generate(model, tok, [f"{c} {p}"], max_new_tokens=5)[0] for c, p in zip(ctx, prompts)]
    assert batched == alone
