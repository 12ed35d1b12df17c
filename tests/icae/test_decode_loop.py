"""ICAE's greedy decoding (core's one token loop over a slot prefill) equals a decoder that recomputes the whole
embedded sequence every step, with no KV cache."""

import torch

from .conftest import CONTEXTS, PROMPTS


def _recompute(icae, pre, n):
    dec, eos = icae._decoder(), icae.tok.eos_token_id
    emb, mask, pids = pre.embeds, pre.mask, pre.pids
    out = [[] for _ in range(emb.shape[0])]
    done = [False] * emb.shape[0]
    with torch.no_grad(), icae._decoder_ctx():
        for _ in range(n):
            nxt = dec(inputs_embeds=emb, attention_mask=mask, position_ids=pids).logits[:, -1, : icae.vocab].argmax(-1)
            for i, t in enumerate(nxt.tolist()):
                done[i] = done[i] or t == eos
                if not done[i]:
                    out[i].append(t)
            emb = torch.cat([emb, icae.token_embeds(nxt[:, None])], 1)
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], 1)
            pids = torch.cat([pids, pids[:, -1:] + 1], 1)
    return out


def test_greedy_equals_a_cacheless_decoder(make_icae):
    icae = make_icae()
    mem = icae.compress(icae.tokenize_contexts(CONTEXTS))
    p_ids = [icae.tok(p, add_special_tokens=False)["input_ids"] for p in PROMPTS]
    pre = icae.decoder_rows(mem, "FT", p_ids)
    timings = {}
    ours = icae.greedy(pre, 8, timings=timings)
    assert ours == _recompute(icae, pre, 8)
    assert len({tuple(o) for o in ours}) > 1 and timings["decode_steps"] >= 1
