"""IAVModel: exact base logits at α = 0, zero-initialised alignment head, decoding, save/load."""

import pytest
import torch

from actlab.core.errors import ActlabError
from actlab.core.models import generate
from actlab.core.testing import micro_model
from actlab.iav.generate import _top_p_filter, generate_genarm, generate_iav, generate_plain
from actlab.iav.model import IAVModel

PROMPTS = ["the cat is", "one two three four five", "alice has a red"]


@pytest.fixture
def own_llama(micro_tok):
    """A fresh micro Llama per test: IAVModel freezes the model it wraps, and the session-wide one is shared with
    tests that train it (tests/core/test_capture.py)."""
    return micro_model("llama", micro_tok)


@pytest.mark.parametrize("arch", ["llama", "qwen3", "gpt2"])
def test_alpha_zero_reproduces_base_logits_exactly(micro_tok, arch):
    lm = micro_model(arch, micro_tok)
    iav = IAVModel(lm, tokenizer=micro_tok)
    enc = micro_tok(PROMPTS, return_tensors="pt", padding=True)
    with torch.no_grad():
        ref = lm(input_ids=enc.input_ids, attention_mask=enc.attention_mask).logits
        out = iav(enc.input_ids, enc.attention_mask, alpha=0.0)
    assert torch.equal(out["z_final"], ref)
    assert torch.equal(out["z_ref"], ref)  # the frozen reference head gives the exact reference logits


def test_zero_initialised_alignment_head_gives_base_at_step0(micro_tok, own_llama):
    iav = IAVModel(own_llama, tokenizer=micro_tok)
    assert torch.count_nonzero(iav.align_head.weight) == 0
    enc = micro_tok(PROMPTS, return_tensors="pt", padding=True)
    for a in (0.5, 1.0, 2.0):
        out = iav(enc.input_ids, enc.attention_mask, alpha=a)
        assert torch.equal(out["z_final"], out["z_base"])
        assert torch.equal(out["a"], torch.zeros_like(out["a"]))


def test_trainable_heads_fp32_backbone_frozen(micro_tok, own_llama):
    iav = IAVModel(own_llama)
    trainable = {n for n, p in iav.named_parameters() if p.requires_grad}
    assert trainable == {"base_head.weight", "align_head.weight"}
    assert iav.base_head.weight.dtype == torch.float32 and iav.align_head.weight.dtype == torch.float32
    frozen = IAVModel(own_llama, freeze_base_head=True)
    assert {n for n, p in frozen.named_parameters() if p.requires_grad} == {"align_head.weight"}


def test_alpha_zero_generation_equals_core_generate(micro_tok, own_llama):
    iav = IAVModel(own_llama, tokenizer=micro_tok)
    ours = generate_iav(iav, micro_tok, PROMPTS, alpha=0.0, max_new_tokens=10)
    assert ours == generate(own_llama, micro_tok, PROMPTS, max_new_tokens=10)
    assert ours == generate_plain(own_llama, micro_tok, PROMPTS, max_new_tokens=10)


def test_generation_batched_equals_single_and_alpha_changes_it(micro_tok, own_llama):
    iav = IAVModel(own_llama, tokenizer=micro_tok)
    torch.manual_seed(1)
    with torch.no_grad():
        iav.align_head.weight.normal_(0, 2.0)
    iav.invalidate()
    batched = iav.generate(PROMPTS, alpha=1.5, max_new_tokens=8)
    single = [iav.generate(p, alpha=1.5, max_new_tokens=8) for p in PROMPTS]
    assert batched == single
    assert batched != iav.generate(PROMPTS, alpha=0.0, max_new_tokens=8)
    # the fused head (one matmul per token) decodes like z_base + α·a_t
    assert generate_iav(iav, micro_tok, PROMPTS, alpha=1.5, fused=False, max_new_tokens=8) == batched


def test_sampling_is_seeded(micro_tok, own_llama):
    iav = IAVModel(own_llama, tokenizer=micro_tok)
    kw = dict(alpha=1.0, max_new_tokens=12, do_sample=True, temperature=0.7, top_p=0.9)
    a = iav.generate(PROMPTS, seed=3, **kw)
    assert a == iav.generate(PROMPTS, seed=3, **kw)
    assert a != iav.generate(PROMPTS, seed=4, **kw)


def test_eos_cut(micro_tok, own_llama):
    iav = IAVModel(own_llama, tokenizer=micro_tok)
    with torch.no_grad():  # make EOS the argmax everywhere
        iav.align_head.weight[micro_tok.eos_token_id] = 1e3 * iav.base_head.weight.abs().max()
    iav.invalidate()
    assert iav.generate(PROMPTS, alpha=1.0, max_new_tokens=6) == ["", "", ""]


def test_top_p_filter():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    f = _top_p_filter(logits, 0.7)
    assert torch.isfinite(f[0, :2]).all() and torch.isinf(f[0, 2:]).all()
    assert torch.isfinite(_top_p_filter(logits, 0.1)[0, 0]) and torch.isinf(_top_p_filter(logits, 0.1)[0, 1:]).all()


def test_genarm_alpha0_is_base(micro_tok, own_llama):
    arm = micro_model("llama", micro_tok, seed=5)
    assert generate_genarm(own_llama, arm, micro_tok, PROMPTS, alpha=0.0, max_new_tokens=6) == generate_plain(
        own_llama, micro_tok, PROMPTS, max_new_tokens=6
    )


@pytest.mark.parametrize("bad", [-0.5, float("nan"), float("inf")])
def test_bad_alpha(micro_tok, own_llama, bad):
    iav = IAVModel(own_llama, tokenizer=micro_tok)
    with pytest.raises(ActlabError, match="alpha"):
        iav.generate("the cat", alpha=bad)


def test_save_load_round_trip(tmp_path, micro_tok, micro_dir, micro_dir_b):
    from actlab.core.models import load

    lm, tok = load(micro_dir)
    iav = IAVModel(lm, tokenizer=tok, backbone_id=micro_dir)
    with torch.no_grad():
        iav.align_head.weight.normal_()
        iav.base_head.weight.add_(0.1)
    iav.save_pretrained(tmp_path / "heads")
    files = sorted(p.name for p in (tmp_path / "heads").iterdir())
    assert files == ["iav_config.json", "iav_heads.safetensors"]
    back = IAVModel.from_pretrained(tmp_path / "heads")  # finds the backbone from the saved path
    for name in ("base_head", "align_head", "ref_head"):
        assert torch.equal(getattr(back, name).weight, getattr(iav, name).weight)
    enc = tok(PROMPTS, return_tensors="pt", padding=True)
    assert torch.equal(
        back(enc.input_ids, enc.attention_mask, alpha=1.3)["z_final"],
        iav(enc.input_ids, enc.attention_mask, alpha=1.3)["z_final"],
    )
    with pytest.raises(ActlabError, match="another backbone"):
        IAVModel.from_pretrained(tmp_path / "heads", backbone=micro_dir_b)
    with pytest.raises(ActlabError, match="no IAV heads"):
        IAVModel.from_pretrained(tmp_path / "nothing")


def test_fused_head_follows_in_place_updates(micro_tok, own_llama):
    iav = IAVModel(own_llama, tokenizer=micro_tok)
    h = torch.randn(3, own_llama.config.hidden_size)
    assert torch.equal(iav.final_logits(h, 1.0), iav.heads(h, 1.0, ref=False)["z_final"])
    with torch.no_grad():
        iav.align_head.weight.add_(0.5)  # no invalidate(): the version counter changes
    assert torch.allclose(iav.final_logits(h, 1.0), iav.heads(h, 1.0, ref=False)["z_final"], atol=1e-5)


def test_heads_from_a_bf16_run_load_on_the_fp32_backbone(tmp_path, micro_dir):
    from actlab.core.models import load

    lm16, tok = load(micro_dir, dtype="bf16")
    IAVModel(lm16, tokenizer=tok, backbone_id=micro_dir).save_pretrained(tmp_path / "h")
    back = IAVModel.from_pretrained(tmp_path / "h")  # fp32 on CPU by default
    assert back.base_head.weight.dtype == torch.float32 and back.ref_head.weight.dtype == torch.float32
