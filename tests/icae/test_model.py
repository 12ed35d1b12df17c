import pytest
import torch

from actlab.core.errors import ActlabError
from actlab.icae.model import SimpleLLM

from .conftest import CONTEXTS, PROMPTS


@pytest.mark.parametrize("epl", [True, False])
def test_batch_of_4_equals_4_single_runs(make_icae, epl):
    icae = make_icae(use_position_identifiers=epl)
    ids = icae.tokenize_contexts(CONTEXTS)
    mem = icae.compress(ids)  # 1 + 1 + 3 + 1 segments in ONE forward
    for i, c in enumerate(ids):
        one = icae.compress([c])
        assert torch.allclose(mem.slots[i], one.slots[0], atol=1e-5)
        assert mem.pids[i].tolist() == one.pids[0].tolist()
    batch = icae.generate(CONTEXTS, PROMPTS, max_new_tokens=8)
    single = [icae.generate([c], [p], max_new_tokens=8)[0] for c, p in zip(CONTEXTS, PROMPTS)]
    assert batch == single
    assert len(set(batch)) > 1  # not a degenerate constant output
    ae_b = icae.generate(CONTEXTS, None, special="AE", max_new_tokens=6)
    assert ae_b == [icae.generate([c], None, special="AE", max_new_tokens=6)[0] for c in CONTEXTS]


def test_kv_reuse_of_prefix_matches_separate_runs(make_icae):
    icae = make_icae()
    shared = icae.generate_shared(CONTEXTS[0], PROMPTS, max_new_tokens=8)
    separate = [icae.generate([CONTEXTS[0]], [p], max_new_tokens=8)[0] for p in PROMPTS]
    assert shared == separate


def test_simple_llm_batch_equals_single(make_icae):
    llm = SimpleLLM.from_icae(make_icae())
    batch = llm.generate(CONTEXTS, PROMPTS, max_new_tokens=6)
    assert batch == [llm.generate([c], [p], max_new_tokens=6)[0] for c, p in zip(CONTEXTS, PROMPTS)]


def test_frozen_decoder_stays_frozen(make_icae, micro_tok):
    from actlab.core.testing import micro_model

    icae = make_icae(perturb=False)
    ref = micro_model("llama", micro_tok, seed=0)  # the same base, untouched
    base_before = {k: v.clone() for k, v in ref.state_dict().items()}
    trainable = {n for n, p in icae.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n or n.startswith("memory_token_embed") for n in trainable)
    before = {n: p.detach().clone() for n, p in icae.named_parameters()}
    opt = torch.optim.AdamW(icae.trainable_parameters(), lr=1e-2)
    icae.train()
    ids = icae.tokenize_contexts(CONTEXTS)
    for _ in range(3):
        pre = icae.decoder_rows(icae.compress(ids), "AE", [[] for _ in ids], ids)
        loss = icae.loss(pre)
        loss.backward()
        opt.step()
        opt.zero_grad()
    icae.eval()
    changed = {n for n, p in icae.named_parameters() if not torch.equal(p, before[n])}
    assert changed and changed <= trainable
    assert any("lora_B" in n for n in changed) and "memory_token_embed.weight" in changed
    # the decoder (adapter disabled) computes exactly the untouched base model
    x = micro_tok(CONTEXTS, return_tensors="pt", padding=True)
    with torch.no_grad(), icae.model.disable_adapter():
        got = icae.base()(**x).logits
    want = ref(**x).logits
    assert torch.allclose(got, want, atol=1e-6)
    # ... while the encoder (adapter on) differs
    with torch.no_grad():
        assert not torch.allclose(icae.base()(**x).logits, want, atol=1e-3)
    assert all(torch.equal(v, ref.state_dict()[k]) for k, v in base_before.items())


def test_save_load_round_trip_and_other_base_rejected(make_icae, tmp_path):
    a = make_icae(seed=0)
    path = a.save(tmp_path)
    b = make_icae(seed=3, perturb=False)
    b.load(tmp_path)
    out_a = a.generate(CONTEXTS[:2], PROMPTS[:2], max_new_tokens=5)
    assert torch.equal(a.memory_token_embed.weight, b.memory_token_embed.weight)
    same_base = make_icae(seed=0, perturb=False).load(path)
    assert same_base.generate(CONTEXTS[:2], PROMPTS[:2], max_new_tokens=5) == out_a
    other = make_icae(arch="qwen3", perturb=False)
    with pytest.raises(ActlabError, match="another base model"):
        other.load(path)
    with pytest.raises(ActlabError, match="another base model"):
        make_icae(fixed_mem_size=8, perturb=False).load(path)


def test_empty_context_and_empty_prompt(make_icae):
    icae = make_icae()
    with pytest.raises(ActlabError, match="empty context"):
        icae.generate(["   "], ["what ?"])
    with pytest.raises(ActlabError, match="empty context"):
        icae.compress([[]])
    with pytest.raises(ActlabError, match="empty context"):
        SimpleLLM.from_icae(icae).generate([""], ["what ?"])
