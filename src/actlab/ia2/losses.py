"""IA2 losses on a batch of examples, student side (no demos), right-padded so every row equals its unpadded run.

For an example with query ids ``q`` (``dp = len(q) - 1`` is the last prompt token) and a response ``y`` of k tokens,
the student reads ``q + y[:-1]`` and the positions ``dp .. dp+k-1`` predict ``y``:

* ``act``  = Σ_layers mean_{t,d} (A - A_icl)²  (fp32; = ``F.mse_loss(A, A_icl) * L``, upstream's form);
* ``ce``   = mean_t CE(logits_t, y_t) with y = ground truth or ICL outputs;
* ``kl``   = mean_t KL(p_teacher,t ‖ p_student,t), p_teacher = the teacher's top-K renormalised (``tokl``);
* ``tna``  = (1-w)·act + w·ce.

Each is averaged over the examples of the batch (upstream: loss/4 per example, accumulated over 4 examples).
PEFT prompt tuning prepends virtual tokens: logits are sliced at ``offset + position``; :func:`capture` skips them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from actlab.core.capture import capture
from actlab.core.models import pad_right, prompt_offset


def response_positions(query_lens: Sequence[int], resp_lens: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """``[B, P]`` positions ``dp .. dp+k-1`` per row (padded with dp) and the ``[B, P]`` validity mask."""
    P = max(resp_lens)
    ar = torch.arange(P)
    valid = ar[None, :] < torch.as_tensor(list(resp_lens))[:, None]
    dp = torch.as_tensor(list(query_lens)) - 1
    pos = dp[:, None] + torch.where(valid, ar[None, :], torch.zeros_like(ar)[None, :])
    return pos, valid


class _StopForward(Exception):
    """Raised by a hook once the deepest aligned site has run (act-only losses need nothing after it)."""


def _stop_hook(_mod, _inp, _out):
    raise _StopForward


def student_forward(
    model,
    query_ids: Sequence[Sequence[int]],
    responses: Sequence[Sequence[int]],
    pad_id: int,
    *,
    site: str | None = None,
    layers: Sequence[int] | None = None,
    need_logits: bool = True,
    keep_hooks: contextlib.ExitStack | None = None,
):
    """One right-padded forward of ``q + y[:-1]`` per row.

    Returns ``(logits [B, P, V] or None, acts [L, B, P, d] or None, valid [B, P])`` at the response-predicting
    positions. With ``need_logits=False`` the forward stops right after the deepest captured site (the rest of the
    network and the LM head are skipped: the act loss does not depend on them). ``keep_hooks``: the capture hooks
    stay registered until it closes (under gradient checkpointing a layer's recomputation must run them again).
    """
    seqs = [list(q) + list(y[:-1]) for q, y in zip(query_ids, responses, strict=True)]
    pos, valid = response_positions([len(q) for q in query_ids], [len(y) for y in responses])
    ids, mask = pad_right(seqs, pad_id)
    dev = next(model.parameters()).device
    pos_d = pos.to(dev)
    acts = None
    if site is not None:
        from actlab.core import arch
        from actlab.core.capture import SITE_KINDS, site_module

        with contextlib.ExitStack() as own:
            cap = (own if keep_hooks is None else keep_hooks).enter_context(
                capture(model, site, layers, positions=pos_d, detach=False)
            )
            stop = None
            if not need_logits and (site in SITE_KINDS or "{layer}" in site):
                deepest = max(arch.check_layer(model, x) for x in (layers or [-1]))
                stop = site_module(model, site, deepest).register_forward_hook(_stop_hook)
            try:
                out = model(input_ids=ids.to(dev), attention_mask=mask.to(dev))
            except _StopForward:
                out = None
            finally:
                if stop is not None:
                    stop.remove()
        acts = cap.stack()
        if out is None:
            return None, acts, valid.to(dev)
    else:
        out = model(input_ids=ids.to(dev), attention_mask=mask.to(dev))
    off = prompt_offset(model)
    rows = torch.arange(len(seqs), device=dev)[:, None]
    logits = out.logits[rows, pos_d + off]
    return logits, acts, valid.to(dev)


def _pad_stack(tensors: Sequence[torch.Tensor], P: int, dim: int) -> torch.Tensor:
    """Stack ``tensors`` along a new axis ``dim`` after zero-padding their axis ``dim`` to ``P``."""
    if all(t.shape[dim] == P for t in tensors):
        return torch.stack(list(tensors), dim)
    out = []
    for t in tensors:
        pad_shape = list(t.shape)
        pad_shape[dim] = P - t.shape[dim]
        out.append(torch.cat([t, t.new_zeros(pad_shape)], dim))
    return torch.stack(out, dim)


def act_loss(acts: torch.Tensor, targets: Sequence[torch.Tensor], valid: torch.Tensor) -> torch.Tensor:
    """Per-example Σ_layers mean_{t,d} squared error in fp32, averaged over the batch. ``targets[i]``: [L, k_i, d].

    (= upstream's ``F.mse_loss(A_i, A_icl_i) * L`` per example.)
    """
    tgt = _pad_stack(targets, acts.shape[2], 1).to(acts.device, torch.float32)  # [L, B, P, d]
    sq = (acts.float() - tgt).pow(2) * valid[None, :, :, None]
    k = valid.sum(1).clamp(min=1)
    per_example = sq.sum((0, 2, 3)) / (k * acts.shape[-1])
    return per_example.mean()


def ce_loss(logits: torch.Tensor, labels: Sequence[Sequence[int]], valid: torch.Tensor) -> torch.Tensor:
    """Per-example mean token CE (fp32), averaged over the batch."""
    B, P = logits.shape[:2]
    y = torch.full((B, P), -100, dtype=torch.long)
    for i, lab in enumerate(labels):
        y[i, : len(lab)] = torch.as_tensor(list(lab), dtype=torch.long)
    y = y.to(logits.device)
    tok_loss = F.cross_entropy(logits.float().reshape(B * P, -1), y.reshape(-1), reduction="none").reshape(B, P)
    n = (y != -100).sum(1).clamp(min=1)
    return (tok_loss.sum(1) / n).mean()


def kl_loss(logits: torch.Tensor, topk_idx: Sequence[torch.Tensor], topk_logp: Sequence[torch.Tensor]) -> torch.Tensor:
    """Per-example mean_t KL(teacher top-K renormalised ‖ student), averaged over the batch."""
    losses = []
    for i, (ti, tv) in enumerate(zip(topk_idx, topk_logp, strict=True)):
        k = ti.shape[0]
        s_logp = torch.log_softmax(logits[i, :k].float(), -1)
        t_logp = torch.log_softmax(tv.to(logits.device).float(), -1)  # renormalise over the kept top-K
        s_sel = s_logp.gather(-1, ti.to(logits.device).long())
        losses.append((t_logp.exp() * (t_logp - s_sel)).sum(-1).mean())
    return torch.stack(losses).mean()


def compute_losses(
    model,
    batch: list[dict],
    objective: str,
    *,
    pad_id: int,
    site: str,
    layers: Sequence[int] | None,
    ce_loss_weight: float | None = None,
    keep_hooks: contextlib.ExitStack | None = None,
) -> dict[str, torch.Tensor]:
    """Losses of ``objective`` (tok, act, tna, tokl) on ``batch``.

    Each item: ``{"query_ids", "labels" (CE labels or None), "icl_ids", "acts", "topk_idx", "topk_logp"}``.
    Returns ``{"loss", "act"?, "ce"?, "kl"?}`` (fp32 scalars; ``loss`` carries the graph).
    """
    q = [b["query_ids"] for b in batch]
    out: dict[str, torch.Tensor] = {}
    if objective in ("act", "tna"):
        icl = [b["icl_ids"].tolist() for b in batch]
        logits, acts, valid = student_forward(
            model, q, icl, pad_id, site=site, layers=layers, need_logits=objective == "tna", keep_hooks=keep_hooks
        )
        out["act"] = act_loss(acts, [b["acts"] for b in batch], valid)
        if objective == "tna":
            labels = [b["labels"] for b in batch]
            if labels != icl:  # ground-truth labels: their own teacher-forced forward
                logits, _, valid = student_forward(model, q, labels, pad_id)
            out["ce"] = ce_loss(logits, labels, valid)
            w = float(ce_loss_weight)
            out["loss"] = (1 - w) * out["act"] + w * out["ce"]
        else:
            out["loss"] = out["act"]
    elif objective == "tok":
        labels = [b["labels"] for b in batch]
        logits, _, valid = student_forward(model, q, labels, pad_id)
        out["ce"] = out["loss"] = ce_loss(logits, labels, valid)
    elif objective == "tokl":
        icl = [b["icl_ids"].tolist() for b in batch]
        logits, _, valid = student_forward(model, q, icl, pad_id)
        out["kl"] = out["loss"] = kl_loss(logits, [b["topk_idx"] for b in batch], [b["topk_logp"] for b in batch])
    else:
        raise ValueError(f"no loss for objective {objective!r}")
    return out
