"""Representation-similarity and alignment metrics for paired activations.

All functions take ``X`` ``[n, p]`` and ``Y`` ``[n, q]`` (row ``i`` of both = the same input) as tensors or arrays
and compute in float64.

* :func:`linear_cka` — linear CKA (Kornblith et al. 2019); ``debiased=True`` uses the unbiased HSIC estimator
  (Song et al. 2012; Nguyen et al. 2021), in the feature-space form of Kornblith's ``Demo.ipynb`` when ``n`` is large
  and the Gram form otherwise (identical values). Both are invariant to orthogonal maps, isotropic scaling and
  translation — so "CKA before vs after Procrustes" can never change.
* :func:`hsic_unbiased` — Song et al. Eq. 5 on Gram matrices (the O(n²) reference).
* :func:`align_loss` / :func:`uniform_loss` — Wang & Isola 2020 on L2-normalised rows (uniformity over ``x ≠ y``
  pairs, ``pdist``, as the reference code).
* :func:`info_nce` — symmetric CLIP-style InfoNCE on cosine similarities.
* :func:`regression_scores` — held-out R², MSE and mean cosine of a prediction.
* :func:`cka_matrix` / :func:`plot_heatmap` — layer-by-layer CKA between two models.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from actlab.core.errors import ActlabError


def _t64(x) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    return t.detach().to(device="cpu", dtype=torch.float64)


def _pair(X, Y) -> tuple[torch.Tensor, torch.Tensor]:
    X, Y = _t64(X), _t64(Y)
    if X.dim() != 2 or Y.dim() != 2:
        raise ActlabError(f"CKA needs 2-D [n, d] activations; got shapes {tuple(X.shape)} and {tuple(Y.shape)}")
    if X.shape[0] != Y.shape[0]:
        raise ActlabError(
            f"X and Y must have the same number of rows (paired samples); got {X.shape[0]} and {Y.shape[0]}"
        )
    return X, Y


def hsic_unbiased(K: torch.Tensor, L: torch.Tensor) -> torch.Tensor:
    """Song et al. (2012) Eq. 5 on Gram matrices ``K``, ``L`` ``[n, n]`` (n ≥ 4; can be negative)."""
    n = K.shape[0]
    if n < 4:
        raise ActlabError(f"debiased CKA needs at least 4 samples, got {n}")
    Kt = K.clone()
    Lt = L.clone()
    Kt.fill_diagonal_(0)
    Lt.fill_diagonal_(0)
    one = torch.ones(n, 1, dtype=K.dtype)
    term1 = (Kt * Lt.T).sum()  # tr(K̃ L̃)
    term2 = Kt.sum() * Lt.sum() / ((n - 1) * (n - 2))
    term3 = 2.0 / (n - 2) * (one.T @ Kt @ Lt @ one).squeeze()  # 1ᵀK̃L̃1 — not Σ(K̃∘L̃) (notes §2.4)
    return (term1 + term2 - term3) / (n * (n - 3))


def hsic_biased(K: torch.Tensor, L: torch.Tensor) -> torch.Tensor:
    """tr(KHLH) / (n − 1)²."""
    n = K.shape[0]
    H = torch.eye(n, dtype=K.dtype) - 1.0 / n
    return torch.trace(K @ H @ L @ H) / (n - 1) ** 2


def _centre(X: torch.Tensor) -> torch.Tensor | None:
    """Column-centred ``X``, or None when ``X`` is constant over the samples (no variance: CKA undefined).

    Both HSIC estimators are invariant to a shift of the features, so centring first changes no value; it avoids
    the cancellation of ``n·μ²``-sized Gram entries when activations carry a large shared mean.
    """
    Xc = X - X.mean(0, keepdim=True)
    scale = float(X.abs().max()) if X.numel() else 0.0
    if X.numel() == 0 or float(Xc.abs().max()) <= 1e-12 * max(scale, 1e-300):
        return None
    return Xc


def _ratio(xy: torch.Tensor, xx: torch.Tensor, yy: torch.Tensor) -> float:
    """``xy / sqrt(xx · yy)``; NaN when a self-similarity is not positive (tiny n for the debiased estimator)."""
    if not (float(xx) > 0 and float(yy) > 0):
        return float("nan")
    return float(xy / torch.sqrt(xx * yy))


def cka_gram(X, Y, debiased: bool = False) -> float:
    """CKA from linear Gram matrices of the centred features (O(n²(p + q))): the straightforward reference.

    NaN when ``X`` or ``Y`` is constant over the samples.
    """
    X, Y = _pair(X, Y)
    if debiased and X.shape[0] < 4:
        raise ActlabError(f"debiased CKA needs at least 4 samples, got {X.shape[0]}")
    X, Y = _centre(X), _centre(Y)
    if X is None or Y is None:
        return float("nan")
    K, L = X @ X.T, Y @ Y.T
    h = hsic_unbiased if debiased else hsic_biased
    return _ratio(h(K, L), h(K, K), h(L, L))


def _debiased_dot(xty, rx, ry, nx, ny, n):
    return xty - n / (n - 2.0) * (rx @ ry) + nx * ny / ((n - 1) * (n - 2))


def cka_features(X, Y, debiased: bool = False) -> float:
    """CKA in feature space (O(n·p·q)), Kornblith's ``feature_space_linear_cka``."""
    X, Y = _pair(X, Y)
    n = X.shape[0]
    if debiased and n < 4:
        raise ActlabError(f"debiased CKA needs at least 4 samples, got {n}")
    X, Y = _centre(X), _centre(Y)
    if X is None or Y is None:
        return float("nan")
    xy = torch.linalg.matrix_norm(X.T @ Y) ** 2
    xx = torch.linalg.matrix_norm(X.T @ X) ** 2
    yy = torch.linalg.matrix_norm(Y.T @ Y) ** 2
    if debiased:
        rx, ry = (X * X).sum(1), (Y * Y).sum(1)
        nx, ny = rx.sum(), ry.sum()
        xy = _debiased_dot(xy, rx, ry, nx, ny, n)
        xx = _debiased_dot(xx, rx, rx, nx, nx, n)
        yy = _debiased_dot(yy, ry, ry, ny, ny, n)
    return _ratio(xy, xx, yy)


def linear_cka(X, Y, debiased: bool = False) -> float:
    """Linear CKA of ``X`` ``[n, p]`` and ``Y`` ``[n, q]`` (float64). Picks the cheaper of the two exact forms.

    Oracle (Kornblith's Demo: ``np.random.seed(1337); X = randn(100, 10); Y = randn(100, 10) + X``):
    0.55761 (linear), 0.51346 (debiased). Debiased CKA needs n ≥ 4 and can be slightly negative; NaN if a
    debiased self-similarity is not positive (tiny n) or if ``X`` or ``Y`` is constant over the samples. The
    features are centred before either form is computed (exact, and stable with large feature means).
    """
    X, Y = _pair(X, Y)
    n, p, q = X.shape[0], X.shape[1], Y.shape[1]
    if debiased and n < 4:
        raise ActlabError(f"debiased CKA needs at least 4 samples, got {n}")
    if n * n * (p + q) < n * (p * q + p * p + q * q):
        return cka_gram(X, Y, debiased)
    return cka_features(X, Y, debiased)


def cka_matrix(acts_a: Sequence, acts_b: Sequence, debiased: bool = False) -> np.ndarray:
    """CKA between every layer of A (``[La, n, da]``) and every layer of B (``[Lb, n, db]``) → ``[La, Lb]``."""
    out = np.zeros((len(acts_a), len(acts_b)))
    for i, xa in enumerate(acts_a):
        for j, yb in enumerate(acts_b):
            out[i, j] = linear_cka(xa, yb, debiased)
    return out


# ------------------------------------------------------------------------------------------ contrastive metrics
def align_loss(x, y, alpha: float = 2.0) -> float:
    """E‖f(x) − f(y)‖^α over paired rows, rows L2-normalised (Wang & Isola 2020)."""
    x, y = F.normalize(_t64(x), dim=-1), F.normalize(_t64(y), dim=-1)
    return float((x - y).norm(dim=1).pow(alpha).mean())


def uniform_loss(x, t: float = 2.0) -> float:
    """log E_{i≠j} exp(−t‖f(x_i) − f(x_j)‖²), rows L2-normalised; self-pairs excluded (``pdist``)."""
    x = F.normalize(_t64(x), dim=-1)
    return float(torch.pdist(x, p=2).pow(2).mul(-t).exp().mean().log())


def info_nce(a, b, temperature: float = 0.07) -> float:
    """Symmetric InfoNCE: ½[CE(ℓ, I) + CE(ℓᵀ, I)], ℓ_ij = cos(a_i, b_j)/τ (a and b of equal width)."""
    a, b = _t64(a), _t64(b)
    logits = F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T / temperature
    target = torch.arange(a.shape[0])
    return float(0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)))


def regression_scores(pred, target) -> dict[str, float]:
    """Held-out fit of a map: R² (1 − SS_res/SS_tot over all dims), MSE (per element), mean row cosine."""
    p, t = _t64(pred), _t64(target)
    ss_res = ((p - t) ** 2).sum()
    ss_tot = ((t - t.mean(0, keepdim=True)) ** 2).sum()
    return {
        "r2": float(1 - ss_res / ss_tot),
        "mse": float(((p - t) ** 2).mean()),
        "cosine": float(F.cosine_similarity(p, t, dim=1).mean()),
    }


# ----------------------------------------------------------------------------------- the seed's metric objects
def mean_pooling(token_embeddings: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Masked mean over the sequence: ``[B, T, d]`` and ``[B, T]`` (1 = token kept) → ``[B, d]`` (a row with no
    kept token is 0). To drop BOS/EOS as well as padding, pass a mask without them
    (:func:`actlab.xmodel.extract.pooled_activations` with ``pooling="mean"`` does)."""
    m = attention_mask.to(token_embeddings.dtype).unsqueeze(-1)
    return (token_embeddings * m).sum(1) / m.sum(1).clamp(min=1.0)


class InfoNCE(torch.nn.Module):
    """Contrastive loss (differentiable), ``InfoNCE(temperature=0.07)(anchor, positive, negatives=None)``.

    Without ``negatives``: the symmetric in-batch loss the adapters train with (row i of ``positive`` is the positive
    of row i of ``anchor``, the other rows its negatives; :func:`actlab.xmodel.align.info_nce_loss`). With
    ``negatives`` ``[B, K, d]``: CE over [cos(a, p), cos(a, n_1..K)] / τ with the positive at index 0 (one
    direction, as the seed's)."""

    def __init__(self, temperature: float = 0.07):
        super().__init__()
        if not temperature > 0:
            raise ActlabError(f"temperature must be > 0, got {temperature}")
        self.temperature = temperature

    def forward(self, anchor: torch.Tensor, positive: torch.Tensor, negatives: torch.Tensor | None = None):
        if negatives is None:
            from actlab.xmodel.align import info_nce_loss

            return info_nce_loss(anchor, positive, temperature=self.temperature)
        a, p, n = (F.normalize(t, dim=-1) for t in (anchor, positive, negatives))
        logits = torch.cat([(a * p).sum(-1, keepdim=True), (n @ a.unsqueeze(-1)).squeeze(-1)], 1) / self.temperature
        return F.cross_entropy(logits, torch.zeros(len(a), dtype=torch.long, device=a.device))


class CKA:
    """The seed's CKA object over :func:`linear_cka` (float64, debiased by default as the seed's):
    ``CKA.cka_similarity(X, Y, debiased=True)`` or ``CKA(debiased=True)(X, Y)``. The unbiased HSIC here uses
    1ᵀK̃L̃1 (the seed used Σ K̃∘L̃, which reads 0.99999 on residual-stream-like data)."""

    def __init__(self, debiased: bool = True):
        self.debiased = debiased

    def __call__(self, X, Y) -> float:
        return linear_cka(X, Y, self.debiased)

    @staticmethod
    def linear_kernel(X) -> torch.Tensor:
        X = _t64(X)
        return X @ X.T

    @staticmethod
    def center_gram(K) -> torch.Tensor:
        K = _t64(K)
        H = torch.eye(K.shape[0], dtype=K.dtype) - 1.0 / K.shape[0]
        return H @ K @ H

    @staticmethod
    def unbiased_hsic_estimator(K, L) -> torch.Tensor:
        return hsic_unbiased(_t64(K), _t64(L))

    @staticmethod
    def cka_similarity(X, Y, debiased: bool = True) -> float:
        return linear_cka(X, Y, debiased)


class AlignmentUniformity:
    """Wang & Isola (2020) on L2-normalised rows: :func:`align_loss` and :func:`uniform_loss` (self-pairs
    excluded) under the seed's names (the seed's alignment was unnormalised and its uniformity counted self-pairs)."""

    @staticmethod
    def alignment_loss(x, y, alpha: float = 2.0) -> float:
        return align_loss(x, y, alpha)

    @staticmethod
    def uniformity_loss(x, t: float = 2.0) -> float:
        return uniform_loss(x, t)

    @staticmethod
    def compute_metrics(anchor, positive) -> tuple[float, float]:
        """(alignment of the pairs, uniformity of ``anchor``); both lower = better."""
        return align_loss(anchor, positive), uniform_loss(anchor)


# --------------------------------------------------------------------------------------------------- heatmap
def plot_heatmap(matrix, path, title: str = "", xlabel: str = "", ylabel: str = "", fmt: str = ".2f") -> str:
    """Write an annotated heatmap PNG (matplotlib, Agg backend) atomically; returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from actlab.core.io import save_figure

    m = np.asarray(matrix, dtype=float)
    fig, ax = plt.subplots(figsize=(1.0 + 0.7 * m.shape[1], 1.0 + 0.6 * m.shape[0]))
    im = ax.imshow(m, cmap="viridis", origin="lower", aspect="auto")
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            ax.text(j, i, format(m[i, j], fmt), ha="center", va="center", color="w", fontsize=8)
    ax.set_xticks(range(m.shape[1]))
    ax.set_yticks(range(m.shape[0]))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    return str(save_figure(fig, path, dpi=100))
