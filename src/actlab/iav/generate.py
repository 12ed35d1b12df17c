"""Decoding: IAV (one backbone + one fused head per token), GenARM-style (two models), plain LMs — core's one loop.

Each decoder is a prompt-level *stepper*: ``start(ids, mask) -> scores [B, V]`` then ``next(next_ids, mask) ->
scores`` (KV caches inside). :func:`actlab.core.decode.decode` batches left-padded prompts, applies temperature and
top-p, stops rows at EOS (re-exported here as :func:`decode`, with :class:`PlainStepper`).

* IAV: ``scores = (W_b + α W_a) h_t`` (the fused head; identical to ``z_base + α a_t``).
* GenARM: ``scores = log π_base + α log π_ARM`` (Xu et al. 2025; pass ``temperature = 1/(1+α)`` to match their
  ``ModelArithmetic`` normalisation, see docs/iav.md).
* plain: the LM's own logits (the base / SFT model, a DPO model).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from actlab.core.decode import LMCache, PlainStepper, decode
from actlab.core.decode import top_p_filter as _top_p_filter  # noqa: F401 - the name IAV's tests and users know
from actlab.iav.config import check_alpha

__all__ = [
    "GenARMStepper",
    "IAVStepper",
    "PlainStepper",
    "decode",
    "generate_genarm",
    "generate_iav",
    "generate_plain",
]


class IAVStepper:
    def __init__(self, iav, alpha: float, fused: bool = True):
        self.iav, self.alpha, self.fused = iav, check_alpha(alpha), fused

    def _scores(self, out):
        return self.iav.final_logits(out.last_hidden_state[:, -1], self.alpha, fused=self.fused)

    def start(self, ids, mask):
        self.s = LMCache(self.iav.backbone)
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
        self.sb, self.sa = LMCache(self.base), LMCache(self.arm)
        ob = self.sb.run(ids, mask)
        oa = self.sa.run(ids, mask) if self.alpha else None
        return self._scores(ob, oa)

    def next(self, ids, mask):
        ob = self.sb.run(ids, mask)
        oa = self.sa.run(ids, mask) if self.alpha else None
        return self._scores(ob, oa)


def generate_iav(iav, tok, prompts: Sequence[str], alpha: float = 1.0, fused: bool = True, **kw) -> list:
    """IAV generation: ``z_final = z_base + α·a_t`` (see :func:`decode` for the keyword arguments)."""
    return decode(IAVStepper(iav, alpha, fused=fused), tok, prompts, device=iav.device, **kw)


def generate_genarm(base_lm, arm_lm, tok, prompts: Sequence[str], alpha: float = 1.0, **kw) -> list:
    """GenARM-style generation: ``log π_base + α·log π_ARM``."""
    return decode(GenARMStepper(base_lm, arm_lm, alpha), tok, prompts, device=next(base_lm.parameters()).device, **kw)


def generate_plain(lm, tok, prompts: Sequence[str], **kw) -> list:
    return decode(PlainStepper(lm), tok, prompts, device=next(lm.parameters()).device, **kw)
