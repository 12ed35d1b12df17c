"""Extraction (pooling, token alignment across tokenizers), prefill-only injection at the intended layer, tasks,
FLOPs, run-all with resume, and the CLI's bad-input lines."""

import pytest
import torch

from actlab.core.capture import capture
from actlab.core.errors import ActlabError
from actlab.core.testing import micro_model, micro_tokenizer
from actlab.xmodel import communicate as C
from actlab.xmodel.extract import (
    extract_pairs,
    load_pairs,
    pooled_activations,
    shared_boundaries,
    token_aligned_activations,
)

TEXTS = [
    "the cat is red .",
    "alice has a dog and a cat",
    "bob is in paris",
    "one two three four five",
    "where is the book ? it is on the house",
    "eve has more apples than frank",
]


@pytest.fixture(scope="module")
def pair():
    tok = micro_tokenizer()
    return (micro_model("llama", tok, hidden=32, layers=2), tok), (
        micro_model("qwen3", tok, seed=1, hidden=48, layers=3),
        tok,
    )


@pytest.fixture(scope="module")
def bpe_tok():
    """A second, different tokenizer: a tiny byte-level BPE trained here (subword pieces, no BOS)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    raw = Tokenizer(models.BPE(unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<pad>", "<unk>", "<eos>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    raw.train_from_iterator(TEXTS * 5, trainer)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=raw, pad_token="<pad>", unk_token="<unk>", eos_token="<eos>", padding_side="left"
    )
    return tok


def _alone(model, tok, text, layer):
    enc = tok([text], return_tensors="pt")
    with torch.no_grad():
        return model(**enc, output_hidden_states=True).hidden_states[layer + 1][0]


def test_last_and_mean_pooling_match_single_runs(pair):
    (ma, tok), _ = pair
    last = pooled_activations(ma, tok, TEXTS, pooling="last", batch_size=4)  # left padding, batched
    mean = pooled_activations(ma, tok, TEXTS, layers=[0], pooling="mean", batch_size=4)
    assert last.shape == (2, len(TEXTS), 32)
    for i, t in enumerate(TEXTS):
        h = _alone(ma, tok, t, 0)
        assert torch.allclose(last[0, i], h[-1], atol=1e-5)
        assert torch.allclose(mean[0, i], h[1:].mean(0), atol=1e-5)  # BOS (position 0) dropped
        assert not torch.allclose(mean[0, i], h.mean(0), atol=1e-4)


def test_token_alignment_across_two_tokenizers(pair, bpe_tok):
    (ma, tok), (mb, _) = pair
    mb_bpe = micro_model("llama", bpe_tok, seed=3, hidden=24, layers=2)
    text = "alice has a dog and a cat"
    pairs = shared_boundaries(tok, bpe_tok, text)
    ea = tok(text, return_offsets_mapping=True)["offset_mapping"]
    eb = bpe_tok(text, return_offsets_mapping=True)["offset_mapping"]
    assert len(bpe_tok(text)["input_ids"]) != len(tok(text)["input_ids"])  # really different tokenizations
    assert [ea[i][1] for i, _ in pairs] == [eb[j][1] for _, j in pairs]  # same end character
    ends = [ea[i][1] for i, _ in pairs]
    assert len(text) in ends and len(pairs) >= 2
    # a paired state is the state of the shared prefix text[:end] run alone (causal models)
    xa, xb, src = token_aligned_activations(ma, tok, mb_bpe, bpe_tok, [text, "bob is in paris"], [0], [0])
    assert xa.shape[1] == xb.shape[1] == len(src)
    for r, end in enumerate(ends):
        pre = text[:end]
        if [o[1] for o in bpe_tok(pre, return_offsets_mapping=True)["offset_mapping"]] != [
            o[1] for o in eb if o[1] <= end
        ]:
            continue  # the prefix tokenizes differently (BPE at a cut): skip this boundary
        assert torch.allclose(xa[0, r], _alone(ma, tok, pre, 0)[-1], atol=1e-5)
        assert torch.allclose(xb[0, r], _alone(mb_bpe, bpe_tok, pre, 0)[-1], atol=1e-5)


def test_extract_pairs_shards_heldout_and_resume(pair, tmp_path):
    (ma, tok), (mb, _) = pair
    out = extract_pairs(ma, tok, mb, tok, TEXTS, tmp_path / "p", shard_size=4, heldout=0.34)
    p = load_pairs(out)
    assert p.a.shape == (2, 6, 32) and p.b.shape == (3, 6, 48) and int(p.test.sum()) == 2
    assert p.split("train", "b", 2).shape == (4, 48)
    with pytest.raises(ActlabError, match="not extracted"):
        p.split("test", "a", 5)
    shard = out / "shard-00001.safetensors"
    stamp = shard.stat().st_mtime_ns
    extract_pairs(ma, tok, mb, tok, TEXTS, out, shard_size=4, heldout=0.34)  # resume: nothing recomputed
    assert shard.stat().st_mtime_ns == stamp


def test_combine_paper_slicing():
    a, b = torch.arange(1.0, 5.0)[None], torch.full((1, 6), 10.0)  # d_a = 4 < d_b = 6
    assert C.combine(a, b, "replace").tolist() == [[10, 10, 1, 2, 3, 4]]
    assert C.combine(a, b, "sum").tolist() == [[10, 10, 11, 12, 13, 14]]
    assert C.combine(a, b, "mean").tolist() == [[10, 10, 5.5, 6, 6.5, 7]]
    big = torch.arange(1.0, 9.0)[None]  # d_a = 8 > d_b = 6: A's last 6 dims
    assert C.combine(big, b, "replace").tolist() == [[3, 4, 5, 6, 7, 8]]
    with pytest.raises(ActlabError, match="unknown f 'add'; valid: mean, replace, sum"):
        C.combine(a, b, "add")


@pytest.mark.parametrize("f", ["replace", "sum", "mean"])
def test_injection_prefill_only_and_at_intended_layer(pair, f):
    (ma, tok), (mb, _) = pair
    prompts_a, prompts_b = ["alice is at the house ."], ["where is alice ? answer :"]
    a = C.sender_states(ma, tok, prompts_a, 1)
    texts, cnt = C.ac_generate(mb, tok, prompts_b, a, j=1, f=f, max_new_tokens=6, min_new_tokens=6)
    assert cnt == {"calls": 6, "applied": 1}  # 1 prefill + 5 decode steps; only the prefill edited
    # the edit sits at block_output 1, last prompt token, and only there
    enc = tok(prompts_b, return_tensors="pt")
    with torch.no_grad():
        clean = mb(**enc, output_hidden_states=True).hidden_states
    from actlab.core.capture import intervene

    value = lambda sel: C.combine(a, sel, f)  # noqa: E731 - the slicing path (32 → 48)
    with (
        intervene(mb, "block_output", 1, value, positions=-1, mode="replace") as h,
        capture(mb, "block_output", layers=[1, 2]) as cap,
        torch.no_grad(),
    ):
        edited = mb(**enc, output_hidden_states=True).hidden_states
    assert h.applied == 1
    b_last = clean[2][0, -1]
    assert torch.allclose(cap[1][0, -1], C.combine(a, b_last[None], f)[0], atol=1e-5)
    assert torch.allclose(cap[1][0, :-1], clean[2][0, :-1])  # other positions untouched
    for i in (0, 1):  # earlier layers unchanged
        assert torch.equal(edited[i], clean[i])
    assert not torch.allclose(edited[3][0, -1], clean[3][0, -1])  # visible downstream
    assert torch.allclose(edited[3][0, :-1], clean[3][0, :-1], atol=1e-6)  # causal: earlier tokens unchanged


def test_equal_width_uses_intervene_modes(pair):
    (ma, tok), _ = pair
    a = torch.randn(1, 32)
    enc = tok(["bob is in paris"], return_tensors="pt")
    with torch.no_grad():
        clean = ma(**enc, output_hidden_states=True).hidden_states[1][0, -1]
    for f, want in (("replace", a[0]), ("sum", clean + a[0]), ("mean", (clean + a[0]) / 2)):
        from actlab.core.capture import intervene

        with intervene(ma, "block_output", 0, a, mode=C.F_TO_MODE[f]), capture(ma, "block_output", [0], -1) as cap:
            with torch.no_grad():
                ma(**enc)
        assert torch.allclose(cap[0][0], want, atol=1e-5), f


def test_tasks_scoring_and_hub_loaders():
    rows = C.task_rows("syn_tipsheets", 5)
    assert all(r["answer"] in r["prompt_a"] and r["skyline"] == r["prompt_a"] + " " + r["prompt_b"] for r in rows)
    assert C.is_correct("syn_countries", " France. yes", "France")
    assert not C.is_correct("syn_countries", " Italy France", "France")
    assert C.is_correct("syn_countries", " Which country is Bob in? Answer: France", "France")
    assert not C.is_correct("syn_countries", " Which country is Bob in? Answer:", "France")
    gsm = [
        {"question": f"Tom has {i} apples and buys 2. How many?", "answer": f"{i}+2={i + 2}\n#### {i + 2}"}
        for i in range(6)
    ]
    g = C.task_rows("gsm8k", 4, rows=gsm)
    assert len(g) == 4 and g[0]["prompt_a"] == g[0]["prompt_b"] and g[0]["gold"].isdigit()
    assert C.is_correct("gsm8k", f"so #### {g[0]['gold']}", g[0]["gold"])
    sq = [
        {
            "id": str(i),
            "title": "t",
            "context": f"Bob lives in Rome{i}.",
            "question": "Where does Bob live?",
            "answers": {"text": [f"Rome{i}"], "answer_start": [13]},
        }
        for i in range(5)
    ]
    s = C.task_rows("squad", 3, rows=sq)
    assert s[0]["prompt_b"].startswith("Context:") and C.is_correct("squad", f" {s[0]['gold']}\nmore", s[0]["gold"])
    with pytest.raises(ActlabError, match="unknown task"):
        C.task_rows("mmlu", 3)


def test_flops_accounting(pair):
    (ma, tok), (mb, _) = pair
    dA, dB = C.Dims.of(ma), C.Dims.of(mb)
    assert (dA.D, dA.L, dA.H, dA.K, dA.F) == (32, 2, 4, 8, 64)
    P = 10
    layer = 8 * P * 32 * 8 * 4 + 4 * P * P * 8 * 4 + 3 * 4 * P * P + 4 * P * 32 * 64
    assert dA.layer(P) == layer and dA.forward(P) == 4 * P * dA.V * 32 + 2 * layer
    nl = C.flops("nl", dA, dB, P, 12, T=4, M=16)
    assert nl == 16 * dA.forward(P) + 4 * dB.forward(28)
    ac = C.flops("ac", dA, dB, P, 12, T=4, k=0)
    assert ac == 2 * P * dA.V * 32 + layer + 4 * dB.forward(12) + 48
    assert ac < nl / 3  # M = 16 message tokens cost A 16 passes; AC costs A one partial pass
