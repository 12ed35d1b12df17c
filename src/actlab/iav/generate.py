"""Decoding: IAV (one backbone + one fused head per token), GenARM-style (two models), plain LMs — one loop.

Each decoder is a *stepper*: ``start(ids, mask) -> scores [B, V]`` then ``step(next_ids, mask) -> scores`` (KV caches
inside). :func:`decode` batches left-padded prompts, applies temperature and top-p, stops rows at EOS.

* IAV: ``scores = (W_b + α W_a) h_t`` (the fused head; identical to ``z_base + α a_t``).
* GenARM: ``scores = log π_base + α log π_ARM`` (Xu et al. 2025; pass ``temperature = 1/(1+α)`` to match their
  ``ModelArithmetic`` normalisation, see docs/iav.md).
* plain: the LM's own logits (the base / SFT model, a DPO model).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from actlab.core.errors import ActlabError
from actlab.core.models import position_ids_from_mask
from actlab.iav.config import check_alpha


class _LMState:
    """A causal LM with its KV cache: feeds the prompt, then one token per step."""

    def __init__(self, forward):
        self.forward, self.past = forward, None

    def run(self, ids, mask):
        pos = position_ids_from_mask(mask)[:, -ids.shape[1]:]
        out = self.forward(input_ids=ids, attention_mask=mask, position_ids=pos, past_key_values=self.past,
                           use_cache=True)
        self.past = out.past_key_values
        return out


class PlainStepper:
    def __init__(self, lm):
        self.lm = lm

    def start(self, ids, mask):
        self.s = _LMState(self.lm)
        return self.s.run(ids, mask).logits[:, -1].float()

    def next(self, ids, mask):
        return self.s.run(ids, mask).logits[:, -1].float()


class IAVStepper:
    def __init__(self, iav, alpha: float, fused: bool = True):
        self.iav, self.alpha, self.fused = iav, check_alpha(alpha), fused

    def _scores(self, out):
        return self.iav.final_logits(out.last_hidden_state[:, -1], self.alpha, fused=self.fused)

    def start(self, ids, mask):
        self.s = _LMState(self.iav.backbone)
        return self._scores(self.s.run(ids, mask))

    def next(self, ids, mask):
        return self._scores(self.s.run(ids, mask))


class GenARMStepper:
    """``log π_base + α·log π_ARM`` with two models and two KV caches (the models must share a tokenizer)."""

    def __init__(self, base_lm, arm_lm, alpha: float):
        self.base, self.arm, self.alpha = base_lm, arm_lm, check_alpha(alpha)

    def _scores(self, ob, oa):
        lb = torch.log_softmax(ob.logits[:, -1].float(), -1)
        if self.alpha == 0:
            return lb
        return lb + self.alpha * torch.log_softmax(oa.logits[:, -1].float(), -1)

    def start(self, ids, mask):
        self.sb, self.sa = _LMState(self.base), _LMState(self.arm)
        ob = self.sb.run(ids, mask)
        oa = self.sa.run(ids, mask) if self.alpha else None
        return self._scores(ob, oa)

    def next(self, ids, mask):
        ob = self.sb.run(ids, mask)
        oa = self.sa.run(ids, mask) if self.alpha else None
        return self._scores(ob, oa)


def _top_p_filter(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    if top_p >= 1:
        return logits
    sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
    probs = torch.softmax(sorted_logits, -1)
    cum = probs.cumsum(-1)
    remove = cum - probs > top_p  # keep the smallest set whose mass reaches top_p (the top token is always kept)
    sorted_logits = sorted_logits.masked_fill(remove, float("-inf"))
    return torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)


@torch.no_grad()
def decode(stepper, tok, prompts: Sequence[str], *, max_new_tokens: int = 64, do_sample: bool = False,
           temperature: float = 1.0, top_p: float = 1.0, batch_size: int = 16, seed: int = 0,
           device: torch.device | None = None, return_ids: bool = False, stop_at_eos: bool = True) -> list:
    """Generate for ``prompts`` with ``stepper``; returns texts (or new-token id lists), cut at EOS.

    ``stop_at_eos=False`` always generates ``max_new_tokens`` (throughput benchmarks).
    """
    from actlab.core.models import encode

    if max_new_tokens <= 0:
        raise ActlabError(f"max_new_tokens must be a positive integer, got {max_new_tokens!r}")
    if not (temperature > 0):
        raise ActlabError(f"temperature must be > 0, got {temperature!r}")
    gen = torch.Generator(device="cpu").manual_seed(seed)
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    eos = tok.eos_token_id if stop_at_eos else None
    outs: list = []
    for s in range(0, len(prompts), batch_size):
        enc = encode(tok, list(prompts[s: s + batch_size]), side="left")
        ids, mask = enc["input_ids"].to(device), enc["attention_mask"].to(device)
        B = ids.shape[0]
        done = torch.zeros(B, dtype=torch.bool, device=ids.device)
        new = []
        scores = stepper.start(ids, mask)
        for t in range(max_new_tokens):
            if do_sample:
                logits = _top_p_filter(scores / temperature, top_p)
                probs = torch.softmax(logits.float(), -1).cpu()
                nxt = torch.multinomial(probs, 1, generator=gen).squeeze(-1).to(ids.device)
            else:
                nxt = scores.argmax(-1)
            nxt = torch.where(done, torch.full_like(nxt, pad), nxt)
            new.append(nxt)
            if eos is not None:
                done = done | (nxt == eos)
            if bool(done.all()) or t == max_new_tokens - 1:
                break
            mask = torch.cat([mask, torch.ones(B, 1, dtype=mask.dtype, device=mask.device)], 1)
            scores = stepper.next(nxt.unsqueeze(-1), mask)
        new_ids = torch.stack(new, 1).cpu()
        for row in new_ids.tolist():
            if eos is not None and eos in row:
                row = row[: row.index(eos)]
            outs.append(row if return_ids else tok.decode(row, skip_special_tokens=True))
    return outs


def generate_iav(iav, tok, prompts: Sequence[str], alpha: float = 1.0, fused: bool = True, **kw) -> list:
    """IAV generation: ``z_final = z_base + α·a_t`` (see :func:`decode` for the keyword arguments)."""
    return decode(IAVStepper(iav, alpha, fused=fused), tok, prompts, device=iav.device, **kw)


def generate_genarm(base_lm, arm_lm, tok, prompts: Sequence[str], alpha: float = 1.0, **kw) -> list:
    """GenARM-style generation: ``log π_base + α·log π_ARM``."""
    return decode(GenARMStepper(base_lm, arm_lm, alpha), tok, prompts, device=next(base_lm.parameters()).device, **kw)


def generate_plain(lm, tok, prompts: Sequence[str], **kw) -> list:
    return decode(PlainStepper(lm), tok, prompts, device=next(lm.parameters()).device, **kw)
