"""actlab's one token loop: greedy or sampled decoding with a KV cache, for every decoder HF ``generate`` cannot run.

Plain generation of a Hugging Face model uses transformers' own ``generate`` (:func:`actlab.core.models.generate`).
The decoders that need their own scores or inputs run through :func:`decode_loop` here:

* IAV: one backbone forward and one fused head per token (``actlab.iav.generate.IAVStepper``), GenARM-style two-model
  scores, and the plain LM with the same sampler (:class:`PlainStepper`), all through :func:`decode` (prompts);
* ICAE: a prefill of memory-slot embeddings with explicit position ids, optionally after a reused prefix cache
  (``actlab.icae.model``), straight through :func:`decode_loop`.

A *stepper* owns its model, its KV cache and its mask: ``start() -> scores [B, V]`` runs the prefill and gives the
scores of the first new token, ``next(tokens [B]) -> scores`` feeds one token per row. The loop picks tokens
(argmax, or temperature + top-p sampling with a seeded CPU generator), feeds ``pad_id`` to finished rows, stops when
every row has emitted a stop id or after ``max_new_tokens``, and returns each row's new ids cut before its first
stop id. Prompt-level steppers (``start(ids, mask)`` / ``next(ids, mask)``, as :class:`PlainStepper`) are bound to one
left-padded batch by :func:`decode`, which grows the mask by one column per step.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Protocol

import torch

from actlab.core.errors import ActlabError
from actlab.core.models import position_ids_from_mask


class Stepper(Protocol):
    def start(self) -> torch.Tensor: ...

    def next(self, tokens: torch.Tensor) -> torch.Tensor: ...


def top_p_filter(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """``-inf`` outside the smallest set of top tokens whose probability mass reaches ``top_p`` (the top token is
    always kept); ``top_p >= 1`` returns ``logits`` unchanged."""
    if top_p >= 1:
        return logits
    sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
    probs = torch.softmax(sorted_logits, -1)
    cum = probs.cumsum(-1)
    remove = cum - probs > top_p
    sorted_logits = sorted_logits.masked_fill(remove, float("-inf"))
    return torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)


def device_sync(device: torch.device):
    """A function that waits for ``device``'s queued work (CUDA), for honest timings; a no-op elsewhere."""
    return torch.cuda.synchronize if device.type == "cuda" else (lambda: None)


def check_sampling(max_new_tokens: int, temperature: float) -> None:
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens <= 0:
        raise ActlabError(f"max_new_tokens must be a positive integer, got {max_new_tokens!r}")
    if not (temperature > 0):
        raise ActlabError(f"temperature must be > 0, got {temperature!r}")


@torch.no_grad()
def decode_loop(
    stepper: Stepper,
    max_new_tokens: int,
    *,
    stop_ids: Iterable[int] = (),
    pad_id: int = 0,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
    timings: dict | None = None,
) -> list[list[int]]:
    """Run ``stepper`` for at most ``max_new_tokens`` tokens; the new ids of each row, cut before its first stop id.

    ``timings`` (a dict) accumulates ``ttft_s`` (the prefill and first scores), ``decode_s`` (the rest),
    ``decode_steps`` (forwards after the prefill) and ``decode_tokens`` (steps × rows), synchronising CUDA first.
    """
    check_sampling(max_new_tokens, temperature)
    stops = sorted({int(s) for s in stop_ids})
    t0 = time.perf_counter()
    scores = stepper.start()
    b, dev = scores.shape[0], scores.device
    sync = device_sync(dev)
    sync()
    t_first = time.perf_counter()
    stop_t = torch.tensor(stops, dtype=torch.long, device=dev) if len(stops) > 1 else None
    if do_sample and generator is None:
        generator = torch.Generator(device="cpu").manual_seed(0)
    done = torch.zeros(b, dtype=torch.bool, device=dev)
    new: list[torch.Tensor] = []
    steps = 0
    for t in range(max_new_tokens):
        if do_sample:
            probs = torch.softmax(top_p_filter(scores / temperature, top_p).float(), -1).cpu()
            nxt = torch.multinomial(probs, 1, generator=generator).squeeze(-1).to(dev)
        else:
            nxt = scores.argmax(-1)
        nxt = torch.where(done, torch.full_like(nxt, pad_id), nxt)
        new.append(nxt)
        if stops:
            done = done | (torch.isin(nxt, stop_t) if stop_t is not None else nxt == stops[0])
            if bool(done.all()):
                break
        if t == max_new_tokens - 1:
            break
        scores = stepper.next(nxt)
        steps += 1
    rows = torch.stack(new, 1).cpu().tolist()
    sync()
    if timings is not None:
        t_end = time.perf_counter()
        timings["ttft_s"] = timings.get("ttft_s", 0.0) + (t_first - t0)
        timings["decode_s"] = timings.get("decode_s", 0.0) + (t_end - t_first)
        timings["decode_steps"] = timings.get("decode_steps", 0) + steps
        timings["decode_tokens"] = timings.get("decode_tokens", 0) + steps * b
    stop_set = set(stops)
    out = []
    for row in rows:
        cut = next((i for i, x in enumerate(row) if x in stop_set), len(row))
        out.append(row[:cut])
    return out


# ------------------------------------------------------------------------------------------------- prompts
class LMCache:
    """A causal LM (or its body) with its KV cache: feeds the prompt, then one token per step; position ids come
    from the mask (left padding)."""

    def __init__(self, forward):
        self.forward, self.past = forward, None

    def run(self, ids: torch.Tensor, mask: torch.Tensor):
        pos = position_ids_from_mask(mask)[:, -ids.shape[1] :]
        out = self.forward(
            input_ids=ids, attention_mask=mask, position_ids=pos, past_key_values=self.past, use_cache=True
        )
        self.past = out.past_key_values
        return out


class PlainStepper:
    """A prompt-level stepper for a plain causal LM: its own next-token logits."""

    def __init__(self, lm):
        self.lm = lm

    def start(self, ids, mask):
        self.s = LMCache(self.lm)
        return self.s.run(ids, mask).logits[:, -1].float()

    def next(self, ids, mask):
        return self.s.run(ids, mask).logits[:, -1].float()


class _Bound:
    """A prompt-level stepper bound to one left-padded batch: the mask grows by one column per fed token."""

    def __init__(self, stepper, ids: torch.Tensor, mask: torch.Tensor):
        self.stepper, self.ids, self.mask = stepper, ids, mask

    def start(self) -> torch.Tensor:
        return self.stepper.start(self.ids, self.mask)

    def next(self, tokens: torch.Tensor) -> torch.Tensor:
        self.mask = torch.cat([self.mask, self.mask.new_ones((self.mask.shape[0], 1))], 1)
        return self.stepper.next(tokens.unsqueeze(-1), self.mask)


@torch.no_grad()
def decode(
    stepper,
    tok,
    prompts: Sequence[str],
    *,
    max_new_tokens: int = 64,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_p: float = 1.0,
    batch_size: int = 16,
    seed: int = 0,
    device: torch.device | None = None,
    return_ids: bool = False,
    stop_at_eos: bool = True,
) -> list:
    """Generate for ``prompts`` with a prompt-level ``stepper``; texts (or new-token id lists) cut at EOS.

    Prompts are left-padded in batches of ``batch_size``; sampling draws from one CPU generator seeded with ``seed``
    for the whole call. ``stop_at_eos=False`` always generates ``max_new_tokens`` (throughput benchmarks).
    """
    from actlab.core.models import encode

    check_sampling(max_new_tokens, temperature)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    stops = (tok.eos_token_id,) if stop_at_eos and tok.eos_token_id is not None else ()
    outs: list = []
    for s in range(0, len(prompts), batch_size):
        enc = encode(tok, list(prompts[s : s + batch_size]), side="left")
        bound = _Bound(stepper, enc["input_ids"].to(device), enc["attention_mask"].to(device))
        rows = decode_loop(
            bound,
            max_new_tokens,
            stop_ids=stops,
            pad_id=pad,
            do_sample=do_sample,
            temperature=temperature,
            top_p=top_p,
            generator=gen,
        )
        outs += rows if return_ids else [tok.decode(r, skip_special_tokens=True) for r in rows]
    return outs
