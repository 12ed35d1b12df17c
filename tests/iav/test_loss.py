"""Loss terms on hand-computed tiny tensors (corrected and faithful modes)."""

import math

import pytest
import torch

from actlab.core.errors import ActlabError
from actlab.iav.config import LossConfig
from actlab.iav.loss import Side, dpo_loss, iav_loss, kl_full, kl_topk, l2_norm, l2_sq, token_logps


def test_dpo_term_by_hand():
    # β[(π_w − ref_w) − (π_l − ref_l)] = 0.5·[(−1 − −2) − (−3 − −2.5)] = 0.5·1.5 = 0.75
    loss, rw, rl = dpo_loss(
        torch.tensor([-1.0]), torch.tensor([-3.0]), torch.tensor([-2.0]), torch.tensor([-2.5]), 0.5
    )
    assert loss.item() == pytest.approx(-math.log(1 / (1 + math.exp(-0.75))), abs=1e-6)
    assert rw.item() == pytest.approx(0.5) and rl.item() == pytest.approx(-0.25)


def test_kl_by_hand():
    p, q = [0.5, 0.25, 0.25], [0.25, 0.5, 0.25]
    want = sum(a * math.log(a / b) for a, b in zip(p, q, strict=True))  # = 0.25·ln 2
    z, zr = torch.log(torch.tensor([[p]])), torch.log(torch.tensor([[q]]))
    assert kl_full(z, zr, torch.ones(1, 1)).item() == pytest.approx(want, abs=1e-6)
    # the mask averages over positions: a second, masked-out position does not count
    z2, zr2 = torch.cat([z, zr], 1), torch.cat([zr, zr], 1)
    assert kl_full(z2, zr2, torch.tensor([[1.0, 0.0]])).item() == pytest.approx(want, abs=1e-6)


def test_topk_kl_exact_at_full_vocab_and_lower_bound_otherwise():
    torch.manual_seed(0)
    z, zr = torch.randn(2, 5, 11), torch.randn(2, 5, 11)
    m = torch.ones(2, 5)
    full = kl_full(z, zr, m)
    lq = torch.log_softmax(zr, -1)
    top = lq.topk(11, -1)
    assert kl_topk(z, top.indices, top.values, m).item() == pytest.approx(full.item(), abs=1e-5)
    top4 = lq.topk(4, -1)
    coarse = kl_topk(z, top4.indices, top4.values, m).item()
    assert 0 <= coarse <= full.item() + 1e-6


def test_l2_by_hand():
    a = torch.tensor([[[3.0, 4.0], [1.0, 0.0]]])  # ‖a‖ = 5, 1 ; ‖a‖² = 25, 1
    assert l2_sq(a, torch.tensor([[1.0, 1.0]])).item() == pytest.approx(13.0)
    assert l2_sq(a, torch.tensor([[1.0, 0.0]])).item() == pytest.approx(25.0)
    assert l2_norm(a, torch.tensor([[1.0, 1.0]])).item() == pytest.approx(3.0)


def _side(ids, attn, resp, z_final, z_base, a, z_ref):
    return Side(
        ids=torch.tensor([ids]),
        attn=torch.tensor([attn]),
        resp=torch.tensor([resp]),
        z_final=z_final,
        z_base=z_base,
        a=a,
        z_ref=z_ref,
    )


def test_corrected_loss_assembles_terms_by_hand():
    """V=3, L=3: prompt token 0, response tokens 1,2; the position-2 logits predict nothing (excluded)."""
    torch.manual_seed(0)
    V = 3
    zf_c, zb_c, a_c, zr_c = (torch.randn(1, 3, V) for _ in range(4))
    zf_r, zb_r, a_r, zr_r = (torch.randn(1, 3, V) for _ in range(4))
    c = _side([0, 1, 2], [1, 1, 1], [0, 1, 1], zf_c, zb_c, a_c, zr_c)
    r = _side([0, 2, 0], [1, 1, 0], [0, 1, 0], zf_r, zb_r, a_r, zr_r)  # last token is padding
    cfg = LossConfig(beta=0.1, lambda_kl=0.3, lambda_l2=0.05)
    total, m = iav_loss(c, r, cfg)

    lsm = lambda z: torch.log_softmax(z, -1)  # noqa: E731
    pi_w = lsm(zf_c)[0, 0, 1] + lsm(zf_c)[0, 1, 2]
    ref_w = lsm(zr_c)[0, 0, 1] + lsm(zr_c)[0, 1, 2]
    pi_l, ref_l = lsm(zf_r)[0, 0, 2], lsm(zr_r)[0, 0, 2]
    pref = -torch.nn.functional.logsigmoid(0.1 * ((pi_w - ref_w) - (pi_l - ref_l)))

    def kl(zb, zr, t):
        p, q = lsm(zb)[0, t], lsm(zr)[0, t]
        return (p.exp() * (p - q)).sum()

    kl_c = (kl(zb_c, zr_c, 0) + kl(zb_c, zr_c, 1)) / 2
    kl_r = kl(zb_r, zr_r, 0)
    l2_c = ((a_c[0, 0] ** 2).sum() + (a_c[0, 1] ** 2).sum()) / 2
    l2_r = (a_r[0, 0] ** 2).sum()
    want = pref + 0.3 * 0.5 * (kl_c + kl_r) + 0.05 * 0.5 * (l2_c + l2_r)
    assert total.item() == pytest.approx(want.item(), rel=1e-5)
    assert m["loss/pref"].item() == pytest.approx(pref.item(), rel=1e-5)
    assert m["loss/kl"].item() == pytest.approx((0.5 * (kl_c + kl_r)).item(), rel=1e-5)
    assert m["rewards/margins"].item() == pytest.approx((0.1 * ((pi_w - ref_w) - (pi_l - ref_l))).item(), rel=1e-5)


def test_faithful_loss_by_hand():
    """Length-normalised over prompt + response, no reference; MSE of one logit gathered at token t; unsquared L2."""
    torch.manual_seed(1)
    V = 4
    zf_c, zb_c, a_c, zr_c = (torch.randn(1, 3, V) for _ in range(4))
    zf_r, zb_r, a_r, zr_r = (torch.randn(1, 3, V) for _ in range(4))
    c = _side([1, 2, 3], [1, 1, 1], [1, 1, 1], zf_c, zb_c, a_c, zr_c)
    r = _side([1, 3, 0], [1, 1, 0], [1, 1, 0], zf_r, zb_r, a_r, zr_r)
    cfg = LossConfig(loss="faithful", beta=0.5, lambda_kl=0.1, lambda_l2=0.01)
    total, m = iav_loss(c, r, cfg)
    lsm = lambda z: torch.log_softmax(z, -1)  # noqa: E731
    lw = (lsm(zf_c)[0, 0, 2] + lsm(zf_c)[0, 1, 3]) / 2
    ll = lsm(zf_r)[0, 0, 3] / 1
    pref = -torch.nn.functional.logsigmoid(0.5 * (lw - ll))
    mse_c = sum((zb_c[0, t, i] - zr_c[0, t, i]) ** 2 for t, i in enumerate([1, 2, 3])) / 3
    mse_r = sum((zb_r[0, t, i] - zr_r[0, t, i]) ** 2 for t, i in enumerate([1, 3])) / 2
    l2 = sum(a_c[0, t].norm() for t in range(3)) / 3
    want = pref + 0.1 * 0.5 * (mse_c + mse_r) + 0.01 * l2
    assert total.item() == pytest.approx(want.item(), rel=1e-5)
    assert m["loss/l2"].item() == pytest.approx(l2.item(), rel=1e-5)


def test_token_logps_shift():
    z = torch.log(torch.tensor([[[0.1, 0.9], [0.7, 0.3], [0.5, 0.5]]]))
    got = token_logps(z, torch.tensor([[0, 1, 0]]))
    assert torch.allclose(got, torch.log(torch.tensor([[0.9, 0.7]])))


@pytest.mark.parametrize(
    "kw,match",
    [
        ({"loss": "fathful"}, "did you mean 'faithful'"),
        ({"beta": float("nan")}, "beta"),
        ({"lambda_kl": -1.0}, "lambda_kl"),
        ({"train_alpha": -1.0}, "train_alpha"),
    ],
)
def test_bad_loss_config(kw, match):
    with pytest.raises(ActlabError, match=match):
        LossConfig(**kw)
