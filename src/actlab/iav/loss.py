"""The IAV objective ``L = L_pref + lambda_kl·L_kl + lambda_l2·L_l2`` in two modes.

``corrected`` (default):
    * masks cover **response tokens only** (the position predicting each response token), prompt not duplicated;
    * ``L_pref = −mean log σ(β[(ℓ_w − ℓ_w^ref) − (ℓ_l − ℓ_l^ref)])`` with ``ℓ = Σ_t log π(y_t|…)`` (unnormalised,
      the true DPO term against the reference);
    * ``L_kl = ½(KL_c + KL_r)``, ``KL = mean_t KL(softmax z_base,t ‖ π_ref,t)`` over the full vocabulary (or over the
      reference's top-k tokens + one tail bucket when the reference comes from a top-k cache);
    * ``L_l2 = ½(mean_t ‖a_t‖² over chosen + over rejected)`` (squared).

``faithful`` (what ``s4n9hyun/IAV@d89a017`` computes, for reproducing it):
    * ``m = attention_mask[:, 1:]`` (prompt included); ``ℓ̄ = Σ m log softmax(z_final) / Σ m``;
      ``L_pref = −mean log σ(β(ℓ̄_w − ℓ̄_l))`` (no reference);
    * ``L_kl = ½(MSE_c + MSE_r)``, ``MSE = Σ_t mask_t (z_base[t, y_t] − z_ref[t, y_t])² / Σ mask_t`` — one logit per
      position, gathered at token t (not t+1), as the public code and its cache do;
    * ``L_l2 = Σ_t mask_t ‖a_t‖₂ / Σ_t mask_t`` over the **chosen** sequence only (not squared).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from actlab.iav.config import LossConfig


@dataclass
class Side:
    """One side (chosen or rejected) of a batch, as the loss sees it.

    Shapes: ``ids``/``attn``/``resp`` ``[B, L]``; logits ``[B, L, V]``; ``a`` ``[B, L, V]``.
    Reference, one of: ``z_ref`` (full logits from the frozen head or a live model) or cached
    ``ref_token_logps`` ``[B, L-1]`` + ``ref_topk_idx``/``ref_topk_logp`` ``[B, L-1, k]`` (+ ``ref_gathered`` ``[B, L]``
    for the faithful MSE).
    """

    ids: torch.Tensor
    attn: torch.Tensor
    resp: torch.Tensor
    z_final: torch.Tensor
    z_base: torch.Tensor
    a: torch.Tensor
    z_ref: torch.Tensor | None = None
    ref_token_logps: torch.Tensor | None = None
    ref_topk_idx: torch.Tensor | None = None
    ref_topk_logp: torch.Tensor | None = None
    ref_gathered: torch.Tensor | None = None


# ------------------------------------------------------------------------------------------------ pure pieces
def token_logps(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """``log softmax(logits[:, t])[ids[:, t+1]]`` for t < L-1 → ``[B, L-1]``."""
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    return logp.gather(-1, ids[:, 1:].long().unsqueeze(-1)).squeeze(-1)


def dpo_loss(pi_w: torch.Tensor, pi_l: torch.Tensor, ref_w: torch.Tensor, ref_l: torch.Tensor, beta: float):
    """``−log σ(β[(π_w − ref_w) − (π_l − ref_l)])`` per pair, and the implicit rewards ``β(π − ref)``."""
    rw, rl = beta * (pi_w - ref_w), beta * (pi_l - ref_l)
    return -F.logsigmoid(rw - rl), rw, rl


def kl_rows(lp: torch.Tensor, lq: torch.Tensor) -> torch.Tensor:
    """Per position ``KL(p ‖ q) = Σ_v p_v (log p_v − log q_v)`` from log-probabilities (the last dim is reduced)."""
    return F.kl_div(lq, lp, reduction="none", log_target=True).sum(-1)


def _masked_mean(v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.float()
    return (v * m).sum() / m.sum().clamp(min=1)


def kl_full(z: torch.Tensor, z_ref: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Masked mean over positions of ``KL(softmax z ‖ softmax z_ref)`` (full vocabulary). ``mask`` ``[B, T]``."""
    return _masked_mean(kl_rows(torch.log_softmax(z.float(), -1), torch.log_softmax(z_ref.float(), -1)), mask)


def kl_topk_rows(lp: torch.Tensor, idx: torch.Tensor, ref_logp: torch.Tensor, vocab_size: int | None = None):
    """Per position ``KL(p ‖ q)`` between the base log-probs ``lp`` and a top-k reference, both coarse-grained onto
    the k reference tokens + one tail bucket. Exact when k = vocabulary size; otherwise a lower bound of the full KL.
    """
    lp_s = lp.gather(-1, idx.long())
    lq_s = ref_logp.float()
    kl = (lp_s.exp() * (lp_s - lq_s)).sum(-1)
    if idx.shape[-1] < (vocab_size or lp.shape[-1]):
        p_tail = (1 - lp_s.exp().sum(-1)).clamp(min=1e-12)
        q_tail = (1 - lq_s.exp().sum(-1)).clamp(min=1e-12)
        kl = kl + p_tail * (p_tail.log() - q_tail.log())
    return kl


def kl_topk(
    z: torch.Tensor, idx: torch.Tensor, ref_logp: torch.Tensor, mask: torch.Tensor, vocab_size: int | None = None
):
    """Masked mean of :func:`kl_topk_rows` with ``p = softmax z``."""
    return _masked_mean(kl_topk_rows(torch.log_softmax(z.float(), -1), idx, ref_logp, vocab_size), mask)


def l2_sq(a: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Masked mean of ``‖a_t‖²``."""
    m = mask.float()
    return ((a.float() ** 2).sum(-1) * m).sum() / m.sum().clamp(min=1)


def l2_norm(a: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Masked mean of ``‖a_t‖₂`` (the public code's unsquared L2)."""
    m = mask.float()
    return (a.float().norm(dim=-1) * m).sum() / m.sum().clamp(min=1)


# -------------------------------------------------------------------------------------------------- the loss
def _pred_mask(side: Side) -> torch.Tensor:
    """Positions t < L-1 whose next token t+1 is a response token → ``[B, L-1]``."""
    return side.resp[:, 1:].float() * side.attn[:, 1:].float()


def _ref_seq_logps(side: Side, mask: torch.Tensor) -> torch.Tensor:
    if side.ref_token_logps is not None:
        return (side.ref_token_logps.float() * mask).sum(-1)
    assert side.z_ref is not None, "corrected loss needs a reference (z_ref or a cache)"
    return (token_logps(side.z_ref, side.ids) * mask).sum(-1)


def _kl(side: Side, mask: torch.Tensor) -> torch.Tensor:
    zb = side.z_base[:, :-1]
    if side.ref_topk_idx is not None:
        return kl_topk(zb, side.ref_topk_idx, side.ref_topk_logp, mask)
    assert side.z_ref is not None
    return kl_full(zb, side.z_ref[:, :-1], mask)


def _dpo_terms(cfg: LossConfig, l_pref, l_kl, l_l2, rw, rl, pi_w, pi_l, ref_w, ref_l, align_norm):
    """``(total, metrics)`` of the corrected loss (one place for both of its forms: per side and packed); the
    metric names are TRL ``DPOTrainer``'s."""
    total = l_pref + cfg.lambda_kl * l_kl + cfg.lambda_l2 * l_l2
    metrics = {
        "loss/total": total,
        "loss/pref": l_pref,
        "loss/kl": l_kl,
        "loss/l2": l_l2,
        "rewards/chosen": rw.mean(),
        "rewards/rejected": rl.mean(),
        "rewards/margins": (rw - rl).mean(),
        "rewards/accuracies": (rw > rl).float().mean(),
        "logps/chosen": pi_w.mean(),
        "logps/rejected": pi_l.mean(),
        "logps/ref_chosen": ref_w.mean(),
        "logps/ref_rejected": ref_l.mean(),
        "align/norm": align_norm,
    }
    return total, metrics


def corrected_loss(c: Side, r: Side, cfg: LossConfig):
    mc, mr = _pred_mask(c), _pred_mask(r)
    pi_w = (token_logps(c.z_final, c.ids) * mc).sum(-1)
    pi_l = (token_logps(r.z_final, r.ids) * mr).sum(-1)
    ref_w, ref_l = _ref_seq_logps(c, mc), _ref_seq_logps(r, mr)
    pref, rw, rl = dpo_loss(pi_w, pi_l, ref_w, ref_l, cfg.beta)
    l_pref = pref.mean()
    l_kl = 0.5 * (_kl(c, mc) + _kl(r, mr)) if cfg.lambda_kl > 0 else pi_w.new_zeros(())
    l_l2 = 0.5 * (l2_sq(c.a[:, :-1], mc) + l2_sq(r.a[:, :-1], mr))
    return _dpo_terms(
        cfg,
        l_pref,
        l_kl,
        l_l2,
        rw,
        rl,
        pi_w,
        pi_l,
        ref_w,
        ref_l,
        0.5 * (l2_norm(c.a[:, :-1], mc) + l2_norm(r.a[:, :-1], mr)),
    )


def _gathered_mse(side: Side) -> torch.Tensor:
    """The public code's "KL": MSE between z_base and the reference at (t, y_t), masked by attention_mask."""
    zb = side.z_base.float().gather(-1, side.ids.long().unsqueeze(-1)).squeeze(-1)
    if side.ref_gathered is not None:
        zr = side.ref_gathered.float()
    else:
        assert side.z_ref is not None
        zr = side.z_ref.float().gather(-1, side.ids.long().unsqueeze(-1)).squeeze(-1)
    m = side.attn.float()
    return (((zb - zr) ** 2) * m).sum() / m.sum().clamp(min=1)


def faithful_loss(c: Side, r: Side, cfg: LossConfig):
    mc, mr = c.attn[:, 1:].float(), r.attn[:, 1:].float()
    lw = (token_logps(c.z_final, c.ids) * mc).sum(-1) / mc.sum(-1).clamp(min=1)
    ll = (token_logps(r.z_final, r.ids) * mr).sum(-1) / mr.sum(-1).clamp(min=1)
    margin = cfg.beta * (lw - ll)
    l_pref = -F.logsigmoid(margin).mean()
    have_ref = c.z_ref is not None or c.ref_gathered is not None
    l_kl = 0.5 * (_gathered_mse(c) + _gathered_mse(r)) if have_ref and cfg.lambda_kl > 0 else lw.new_zeros(())
    l_l2 = l2_norm(c.a, c.attn)
    total = l_pref + cfg.lambda_kl * l_kl + cfg.lambda_l2 * l_l2
    metrics = {
        "loss/total": total,
        "loss/pref": l_pref,
        "loss/kl": l_kl,
        "loss/l2": l_l2,
        "rewards/chosen": (cfg.beta * lw).mean(),
        "rewards/rejected": (cfg.beta * ll).mean(),
        "rewards/margins": margin.mean(),
        "rewards/accuracies": (margin > 0).float().mean(),
        "logps/chosen": lw.mean(),
        "logps/rejected": ll.mean(),
        "align/norm": l_l2,
    }
    return total, metrics


def iav_loss(c: Side, r: Side, cfg: LossConfig):
    """``(loss, metrics)``; metrics are 0-d tensors with slash names (``loss/pref``, ``rewards/margins``, …)."""
    return corrected_loss(c, r, cfg) if cfg.loss == "corrected" else faithful_loss(c, r, cfg)


# --------------------------------------------------------------------------------------- packed (fast) path
@dataclass
class Packed:
    """Both sides of a batch, packed: the ``N`` positions that predict a response token, in row order, where row
    ``2i`` is the chosen and row ``2i+1`` the rejected sequence of pair ``i``.

    ``h`` ``[N, d]`` the frozen backbone's hidden states there (no grad), ``y`` ``[N]`` targets, ``row`` ``[N]``,
    ``n_pairs``. Reference, one of: ``ref_head`` (hidden → fp32 logits: the frozen copy of ``lm_head``, or a live
    model's head) over ``h_ref`` ``[N, d]`` (``h`` itself for the frozen head, the live model's body otherwise), or
    cached ``ref_token_logps`` ``[N]`` + ``ref_topk_idx``/``ref_topk_logp`` ``[N, k]``.
    """

    h: torch.Tensor
    y: torch.Tensor
    row: torch.Tensor
    n_pairs: int
    ref_head: Callable[[torch.Tensor], torch.Tensor] | None = None
    h_ref: torch.Tensor | None = None
    ref_token_logps: torch.Tensor | None = None
    ref_topk_idx: torch.Tensor | None = None
    ref_topk_logp: torch.Tensor | None = None
    shared_ref: bool = False  # the reference is the model's own frozen head over ``h`` (not a live model or a cache)


def corrected_loss_packed(p: Packed, model, cfg: LossConfig):
    """:func:`corrected_loss` on packed response positions (same value and gradients; tested against it).

    ``model`` has ``heads(h, alpha, ref=False)`` (an :class:`IAVModel`). Every ``[N, V]`` tensor is made once for both
    sides: ``z_base``, ``a``, ``z_final`` and the reference's log-softmax (shared by the DPO term and the KL).
    With the base head frozen at the reference (``model.base_is_ref()``) and the frozen-head reference, ``z_base``
    *is* ``z_ref``: one matmul fewer, and the KL term (exactly 0) is not computed.
    """
    n_pairs, dev = p.n_pairs, p.h.device
    share = p.shared_ref and model.base_is_ref()
    z_ref = None
    with torch.no_grad():
        if p.ref_head is not None:
            z_ref = p.ref_head(p.h_ref).float()
            lq = torch.log_softmax(z_ref, -1)
            ref_y = lq.gather(-1, p.y[:, None]).squeeze(-1)
        else:
            ref_y = p.ref_token_logps.float()
        ref = torch.zeros(2 * n_pairs, device=dev).index_add(0, p.row, ref_y)
        per_row = torch.bincount(p.row, minlength=2 * n_pairs)
        n_c, n_r = per_row[0::2].sum().clamp(min=1), per_row[1::2].sum().clamp(min=1)
        w = torch.where(p.row % 2 == 0, 0.5 / n_c, 0.5 / n_r)  # Σ_t w_t v_t = ½(mean over chosen + over rejected)
    out = model.heads(p.h, alpha=cfg.train_alpha, ref=False, z_base=z_ref if share else None)
    if not share:
        del z_ref  # only lq is needed from here on
    logp_y = torch.log_softmax(out["z_final"], -1).gather(-1, p.y[:, None]).squeeze(-1)
    pi = torch.zeros(2 * n_pairs, device=dev).index_add(0, p.row, logp_y)
    pi_w, pi_l, ref_w, ref_l = pi[0::2], pi[1::2], ref[0::2], ref[1::2]
    pref, rw, rl = dpo_loss(pi_w, pi_l, ref_w, ref_l, cfg.beta)
    l_pref = pref.mean()
    if cfg.lambda_kl > 0 and not share:
        lp = torch.log_softmax(out["z_base"], -1)
        kl = kl_rows(lp, lq) if p.ref_head is not None else kl_topk_rows(lp, p.ref_topk_idx, p.ref_topk_logp)
        l_kl = (w * kl).sum()
    else:
        l_kl = pi.new_zeros(())
    sq = (out["a"] ** 2).sum(-1)
    l_l2 = (w * sq).sum()
    return _dpo_terms(cfg, l_pref, l_kl, l_l2, rw, rl, pi_w, pi_l, ref_w, ref_l, (w * sq.detach().sqrt()).sum())
