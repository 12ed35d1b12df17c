"""CKA oracles and invariances, align/uniform/InfoNCE, Procrustes/ridge/adapters, map save/load."""

import numpy as np
import pytest
import torch

from actlab.core.errors import ActlabError
from actlab.xmodel import align as A
from actlab.xmodel import metrics as M


def _oracle_xy():
    np.random.seed(1337)  # Kornblith's Demo.ipynb
    X = np.random.randn(100, 10)
    Y = np.random.randn(100, 10) + X
    return X, Y


def test_cka_oracles_both_forms():
    X, Y = _oracle_xy()
    assert M.linear_cka(X, Y) == pytest.approx(0.55761, abs=5e-6)
    assert M.linear_cka(X, Y, debiased=True) == pytest.approx(0.51346, abs=5e-6)
    for deb in (False, True):
        assert M.cka_gram(X, Y, deb) == pytest.approx(M.cka_features(X, Y, deb), abs=1e-12)


def _rand_orth(d, seed):
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
    return q


@pytest.mark.parametrize("debiased", [False, True])
def test_cka_invariant_to_orthogonal_scale_translation(debiased):
    g = torch.Generator().manual_seed(0)
    X = torch.randn(60, 12, generator=g, dtype=torch.float64)
    Y = X[:, :8] @ torch.randn(8, 20, generator=g, dtype=torch.float64) + torch.randn(
        60, 20, generator=g, dtype=torch.float64
    )
    base = M.linear_cka(X, Y, debiased)
    X2 = 3.7 * X @ _rand_orth(12, 1) + 5.0  # a large shared offset (residual streams have one)
    Y2 = 0.01 * Y @ _rand_orth(20, 2) - 40.0
    assert M.linear_cka(X2, Y2, debiased) == pytest.approx(base, abs=1e-9)
    # and it is not a constant: an unrelated Y gives a different (lower) value
    assert M.linear_cka(X, torch.randn(60, 20, generator=g, dtype=torch.float64), debiased) < base - 0.1


def test_debiased_cka_removes_small_n_bias():
    g = torch.Generator().manual_seed(3)
    X, Y = torch.randn(40, 400, generator=g), torch.randn(40, 400, generator=g)  # independent, n << d
    assert M.linear_cka(X, Y) > 0.8
    assert abs(M.linear_cka(X, Y, debiased=True)) < 0.1


def test_debiased_cka_needs_four_samples():
    with pytest.raises(ActlabError, match="at least 4 samples, got 3"):
        M.linear_cka(np.ones((3, 2)), np.ones((3, 2)), debiased=True)
    with pytest.raises(ActlabError, match="same number of rows"):
        M.linear_cka(np.ones((5, 2)), np.ones((4, 2)))


def test_align_uniform_infonce():
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    assert M.align_loss(x, x) == pytest.approx(0.0)
    assert M.align_loss(x, -x) == pytest.approx(4.0)  # ‖x − (−x)‖² = 4 for unit rows
    # pdist excludes self-pairs: pairs have squared distances 2, 2, 4
    ref = np.log(np.mean(np.exp(-2 * np.array([2.0, 4.0, 2.0]))))
    assert M.uniform_loss(x) == pytest.approx(ref)
    g = torch.Generator().manual_seed(0)
    a = torch.randn(32, 8, generator=g)
    assert M.info_nce(a, a * 5.0, 0.05) < 0.01  # scale-invariant and matched
    assert M.info_nce(a, a[torch.randperm(32, generator=g)], 0.05) > 1.0


def test_procrustes_recovers_planted_rotation_square_and_rectangular():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(200, 16, generator=g, dtype=torch.float64)
    Q = _rand_orth(16, 5)
    m = A.procrustes(X, 2.5 * X @ Q + 3.0, scale=True, translate=True)
    assert torch.allclose(m.W.double(), Q, atol=1e-5)
    assert float(m.s) == pytest.approx(2.5, rel=1e-5)
    assert torch.allclose(m(X.float()).double(), 2.5 * X @ Q + 3.0, atol=1e-4)
    # rectangular both ways: a semi-orthogonal planted map (orthonormal rows 16 → 24; columns 24 → 16)
    S = _rand_orth(24, 6)[:16]  # [16, 24], S Sᵀ = I
    up = A.procrustes(X, X @ S)
    assert up.W.shape == (16, 24) and torch.allclose(up.W.double(), S, atol=1e-5)
    Z = X @ S
    down = A.procrustes(Z, X)  # 24 → 16: Sᵀ has orthonormal columns
    assert torch.allclose(down(Z.float()).double(), X, atol=1e-4)
    assert torch.allclose(down.W.double().T @ down.W.double(), torch.eye(16, dtype=torch.float64), atol=1e-5)


def test_ridge_and_save_load_roundtrip(tmp_path):
    g = torch.Generator().manual_seed(1)
    X = torch.randn(300, 10, generator=g)
    B = torch.randn(10, 6, generator=g)
    Y = X @ B + 1.5
    r = A.fit_map("ridge", X, Y, lam=1e-8)
    assert M.regression_scores(r(X), Y)["r2"] > 0.9999
    for m in (r, A.procrustes(X[:, :6], Y, scale=True, translate=True)):
        m.save(tmp_path / m.cfg.kind)
        m2 = A.load_map(tmp_path / m.cfg.kind)
        assert m2.cfg == m.cfg
        xin = X if m.cfg.d_in == 10 else X[:, :6]
        assert torch.equal(m2(xin), m(xin))
    assert (tmp_path / "ridge" / "map.safetensors").exists() and (tmp_path / "ridge" / "map.json").exists()


def test_identity_needs_equal_widths():
    with pytest.raises(ActlabError, match="equal widths"):
        A.fit_map("identity", torch.zeros(4, 3), torch.zeros(4, 5))
    with pytest.raises(ActlabError, match="unknown alignment method 'procrustez'"):
        A.fit_map("procrustez", torch.zeros(4, 3), torch.zeros(4, 3))


@pytest.mark.parametrize("kind", ["affine", "lora", "learned"])
def test_trained_maps_fit_a_planted_affine_map(kind, tmp_path):
    g = torch.Generator().manual_seed(2)
    X = torch.randn(256, 12, generator=g)
    Wt = torch.randn(12, 8, generator=g) / 3
    Y = X @ Wt + (0.5 if kind != "learned" else 0.0)  # the paper's W has no bias
    tc = A.TrainConfig(epochs=60, lr=1e-2, batch_size=64)
    m = A.fit_map(kind, X[:200], Y[:200], train=tc, rank=4)
    s = M.regression_scores(m(X[200:]), Y[200:])
    assert s["r2"] > 0.95, s
    m.save(tmp_path / kind)
    assert torch.allclose(A.load_map(tmp_path / kind)(X), m(X))
    if kind == "lora":
        assert m.n_trainable == 12 * 4 + 4 * 8 + 8  # low-rank factors + bias; the Procrustes base is frozen


def _clip_infonce_reference(a, b, tau):
    """Symmetric InfoNCE from its definition: l_ij = cos(a_i, b_j)/tau; ½[CE over rows + CE over columns]."""
    a = a / a.norm(dim=1, keepdim=True)
    b = b / b.norm(dim=1, keepdim=True)
    lg = (a @ b.T / tau).double()
    row = -(lg.diagonal() - lg.logsumexp(1)).mean()
    col = -(lg.diagonal() - lg.logsumexp(0)).mean()
    return 0.5 * (row + col)


def test_infonce_training_term_matches_the_definition_and_has_a_gradient():
    g = torch.Generator().manual_seed(5)
    a = torch.randn(16, 6, generator=g, requires_grad=True)
    b = torch.randn(16, 6, generator=g)
    loss = A.info_nce_loss(a, b, temperature=0.1)
    assert float(loss.detach()) == pytest.approx(float(_clip_infonce_reference(a.detach(), b, 0.1)), rel=1e-5)
    assert float(loss.detach()) > 0.1
    loss.backward()
    assert a.grad is not None and float(a.grad.abs().sum()) > 1e-3
    assert float(loss.detach()) == pytest.approx(M.info_nce(a.detach(), b, temperature=0.1), rel=1e-5)


@pytest.mark.parametrize("kind", ["linear", "affine", "lora"])
def test_infonce_alone_moves_the_adapter_weights(kind):
    g = torch.Generator().manual_seed(3)
    X = torch.randn(64, 8, generator=g)
    Y = X @ torch.randn(8, 8, generator=g) + 0.1 * torch.randn(64, 8, generator=g)
    tc = A.TrainConfig(epochs=3, lr=1e-2, batch_size=16, mse_weight=0.0)
    m0 = A.fit_map(kind, X, Y, train=A.TrainConfig(epochs=0, mse_weight=0.0), rank=2)
    m = A.fit_map(kind, X, Y, train=tc, rank=2)
    assert (m.weight() - m0.weight()).abs().max() > 1e-3
    assert m.cfg.info["infonce"] > 0
    # InfoNCE on held-in pairs went down from the initial map's
    assert M.info_nce(m(X), Y) < M.info_nce(m0(X), Y)


def _song_unbiased_hsic(K, L):
    """Song et al. (2012) Eq. 5 from its definition (zeroed diagonals)."""
    n = K.shape[0]
    K, L = K.copy(), L.copy()
    np.fill_diagonal(K, 0)
    np.fill_diagonal(L, 0)
    one = np.ones(n)
    return (np.trace(K @ L) + K.sum() * L.sum() / ((n - 1) * (n - 2)) - 2 / (n - 2) * one @ K @ L @ one) / (
        n * (n - 3)
    )


def _debiased_cka_reference(X, Y):
    K, L = X @ X.T, Y @ Y.T
    return _song_unbiased_hsic(K, L) / np.sqrt(_song_unbiased_hsic(K, K) * _song_unbiased_hsic(L, L))


def test_debiased_cka_stable_with_a_large_feature_mean_when_n_is_much_smaller_than_d():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(12, 300))
    Y = X @ rng.normal(size=(300, 200)) + 5 * rng.normal(size=(12, 200))
    exp = _debiased_cka_reference(X, Y)  # zero-mean features: the formula is well conditioned
    for off in (0.0, 1000.0):
        for f in (M.linear_cka, M.cka_gram, M.cka_features):
            assert f(X + off, Y - off, debiased=True) == pytest.approx(exp, abs=1e-7)
    # the formula on the raw offset Gram matrices is what loses precision (the reason for centring first)
    assert abs(_debiased_cka_reference(X + 1000, Y - 1000) - exp) > 1e-5


def test_cka_of_a_constant_input_is_nan():
    Y = np.random.default_rng(1).normal(size=(10, 4))
    for debiased in (False, True):
        for f in (M.linear_cka, M.cka_gram, M.cka_features):
            assert np.isnan(f(np.full((10, 3), 7.0), Y, debiased=debiased))
            assert np.isnan(f(Y, np.zeros((10, 2)), debiased=debiased))
