"""Maps from model A's activation space (width ``d_a``) to model B's (``d_b``); every fitted map saves and loads.

Closed form:

* ``identity`` — no map (needs ``d_a == d_b``; the no-alignment baseline);
* ``procrustes`` — orthogonal Procrustes (Schönemann 1966) via :func:`scipy.linalg.orthogonal_procrustes`; when the
  widths differ the narrower side is zero-padded, which gives the semi-orthogonal optimum (orthonormal rows or
  columns); optional isotropic ``scale`` (s = tr Σ / ‖X‖²) and ``translate`` (centre, then b = μ_Y − s μ_X Ω);
* ``ridge`` — W = (XᵀX + λI)⁻¹XᵀY on centred data, with a bias.

Trained (Adam):

* ``learned`` — the paper's W ∈ R^{d_b×d_a}: Xavier init, MSE (1/N)Σ‖z − Wy‖², lr 1e-3, batch 32, 10 epochs, no bias;
* ``linear`` / ``affine`` / ``lora`` — adapters trained with symmetric InfoNCE
  (:class:`pytorch_metric_learning.losses.NTXentLoss`) plus ``mse_weight`` × MSE (InfoNCE is scale-invariant, so
  without the MSE term an adapter never matches B's norms). ``lora`` is a frozen Procrustes base plus a trainable
  rank-``r`` update ``B·A`` (B = 0 at init, so it starts at Procrustes) and a bias.

>>> m = fit_map("procrustes", Xa, Yb, scale=True, translate=True)      # doctest: +SKIP
>>> m.save("maps/procrustes"); m2 = load_map("maps/procrustes"); m2(Xa_test)

Several processes (``dist``, a :class:`actlab.core.distributed.Dist` of a launch; every rank holds all the pairs):

* closed-form maps are fitted on rank 0 alone and handed to the others (the cost is one ``d × d`` SVD or solve,
  which does not split over ranks; summing ``XᵀY`` over row shards would save little and change the numerics);
* trained maps follow the data-parallel rule: every rank draws the same batches, takes its contiguous slice and
  the gradients are summed before each Adam step. The MSE of ``learned`` is weighted by the slice's share of the
  batch; the contrastive loss couples a batch's rows (every row is a negative of the others), so each rank computes
  the batch's whole loss with gradients through its own rows only (the others' mapped rows as constants) and the
  summed gradients are exactly the one-process gradient. Every rank ends with the same map, equal to the
  one-process map up to float noise.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from actlab.core.distributed import Dist
from actlab.core.errors import ActlabError, check_choice
from actlab.core.io import atomic_write_json, load_tensors, read_json, save_tensors

METHODS = ("identity", "procrustes", "ridge", "learned", "linear", "affine", "lora")
MAP_FILE, CONFIG_FILE = "map.safetensors", "map.json"


@dataclass
class MapConfig:
    kind: str
    d_in: int
    d_out: int
    scale: bool = False
    translate: bool = False
    lam: float = 1e-2
    rank: int = 32
    info: dict | None = None  # training facts (final loss, epochs, ...)


class LinearMap(nn.Module):
    """y = s · (x − μ_x) @ W + b  (W ``[d_in, d_out]``; every fitted method ends up in this form)."""

    def __init__(
        self,
        cfg: MapConfig,
        W: torch.Tensor,
        b: torch.Tensor | None = None,
        scale: float = 1.0,
        mu_x: torch.Tensor | None = None,
        low_rank: tuple[torch.Tensor, torch.Tensor] | None = None,
        trainable: bool = False,
    ):
        super().__init__()
        self.cfg = cfg
        self.W = nn.Parameter(W.float().clone(), requires_grad=trainable and low_rank is None)
        self.b = nn.Parameter(
            (b if b is not None else torch.zeros(cfg.d_out)).float().clone(),
            requires_grad=trainable and cfg.kind in ("affine", "lora"),
        )
        self.register_buffer("s", torch.tensor(float(scale)))
        self.register_buffer("mu_x", (mu_x if mu_x is not None else torch.zeros(cfg.d_in)).float().clone())
        if low_rank is not None:
            self.lora_A = nn.Parameter(low_rank[0].float().clone(), requires_grad=trainable)  # [d_in, r]
            self.lora_B = nn.Parameter(low_rank[1].float().clone(), requires_grad=trainable)  # [r, d_out]
        else:
            self.lora_A = self.lora_B = None

    def weight(self) -> torch.Tensor:
        W = self.W
        if self.lora_A is not None:
            W = W + self.lora_A @ self.lora_B
        return W

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.as_tensor(x)
        dt = x.dtype
        if x.shape[-1] != self.cfg.d_in:
            raise ActlabError(f"{self.cfg.kind} map expects width {self.cfg.d_in}, got {x.shape[-1]}")
        y = self.s * ((x.float() - self.mu_x) @ self.weight()) + self.b
        return y.to(dt)

    @classmethod
    def _from_parts(cls, cfg: MapConfig, *args, **kw) -> LinearMap:
        """An instance of ``cls`` built from fitted parts (whatever ``cls.__init__`` takes)."""
        obj = cls.__new__(cls)
        LinearMap.__init__(obj, cfg, *args, **kw)
        return obj

    def transform(self, x) -> torch.Tensor:
        """The map applied to ``x`` ``[..., d_in]`` (the seed's name for the call)."""
        return self(x)

    # ---------------------------------------------------------------------------------------------- save / load
    def save(self, directory: str | Path) -> Path:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        t = {"W": self.W, "b": self.b, "s": self.s, "mu_x": self.mu_x}
        if self.lora_A is not None:
            t.update(lora_A=self.lora_A, lora_B=self.lora_B)
        save_tensors(d / MAP_FILE, t, {"kind": self.cfg.kind})
        atomic_write_json(d / CONFIG_FILE, asdict(self.cfg))
        return d

    @property
    def n_trainable(self) -> int:
        """Parameters a trained map learns (the frozen Procrustes base of ``lora`` excluded)."""
        if self.cfg.kind == "lora":
            return int(self.lora_A.numel() + self.lora_B.numel() + self.b.numel())
        if self.cfg.kind in ("learned", "linear"):
            return int(self.W.numel())
        return int(self.W.numel() + (self.b.numel() if self.cfg.kind == "affine" else 0))


def load_map(directory: str | Path) -> LinearMap:
    """Load a map saved by :meth:`LinearMap.save` (safetensors + ``map.json``)."""
    d = Path(directory)
    cfg = MapConfig(**read_json(d / CONFIG_FILE))
    t, _ = load_tensors(d / MAP_FILE)
    lr = (t["lora_A"], t["lora_B"]) if "lora_A" in t else None
    cls = {"procrustes": ProcrustesAlignment, **CLASSES}.get(cfg.kind)
    args = (cfg, t["W"], t["b"], float(t["s"]), t["mu_x"], lr)
    m = cls._from_parts(*args) if cls is not None else LinearMap(*args)
    return m.eval()


# ---------------------------------------------------------------------------------------------- closed form
def _np64(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)


def procrustes(X, Y, scale: bool = False, translate: bool = False) -> LinearMap:
    """Orthogonal (or semi-orthogonal, when widths differ) Procrustes from X ``[n, d_a]`` to Y ``[n, d_b]``."""
    from scipy.linalg import orthogonal_procrustes

    X, Y = _np64(X), _np64(Y)
    da, db = X.shape[1], Y.shape[1]
    mx = X.mean(0) if translate else np.zeros(da)
    my = Y.mean(0) if translate else np.zeros(db)
    Xc, Yc = X - mx, Y - my
    d = max(da, db)
    Xp = np.pad(Xc, ((0, 0), (0, d - da)))  # zero-padding the narrower side: scipy needs equal shapes
    Yp = np.pad(Yc, ((0, 0), (0, d - db)))
    R, sv_sum = orthogonal_procrustes(Xp, Yp)
    omega = R[:da, :db]
    s = float(sv_sum / (Xc**2).sum()) if scale else 1.0
    b = my  # y = s (x − μx) Ω + μy
    cfg = MapConfig("procrustes", da, db, scale=scale, translate=translate)
    return ProcrustesAlignment._from_parts(cfg, torch.from_numpy(omega), torch.from_numpy(b), s, torch.from_numpy(mx))


class ProcrustesAlignment(LinearMap):
    """Procrustes A → B as the seed's object: ``ProcrustesAlignment(use_affine=True).fit(source, target)``, then
    ``.transform(x)`` (or call it). ``use_affine`` = translation (centre, then the real bias b = μ_Y − s μ_X Ω;
    the seed's bias was always 0), ``scale`` = the optimal isotropic scale s = tr Σ / ‖X‖². Widths may differ
    (semi-orthogonal Ω). Same map as :func:`procrustes` / ``fit_map("procrustes")``, which return this class."""

    def __init__(self, use_affine: bool = True, scale: bool = True):
        super().__init__(MapConfig("procrustes", 0, 0, scale=scale, translate=use_affine), torch.zeros(0, 0))

    @property
    def use_affine(self) -> bool:
        return self.cfg.translate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.cfg.d_in == 0:
            raise ActlabError("ProcrustesAlignment is not fitted: call .fit(source, target) first")
        return super().forward(x)

    def fit(self, source, target) -> ProcrustesAlignment:
        m = procrustes(source, target, scale=self.cfg.scale, translate=self.cfg.translate)
        self.cfg, self.W, self.b, self.s, self.mu_x = m.cfg, m.W, m.b, m.s, m.mu_x
        return self.eval()


def ridge(X, Y, lam: float = 1e-2) -> LinearMap:
    """Closed-form ridge with bias: W = (XcᵀXc + λ·n·I)⁻¹ XcᵀYc (λ relative to the mean feature variance)."""
    from scipy.linalg import solve

    X, Y = _np64(X), _np64(Y)
    mx, my = X.mean(0), Y.mean(0)
    Xc, Yc = X - mx, Y - my
    G = Xc.T @ Xc
    reg = lam * np.trace(G) / G.shape[0]
    W = solve(G + reg * np.eye(G.shape[0]), Xc.T @ Yc, assume_a="pos")
    cfg = MapConfig("ridge", X.shape[1], Y.shape[1], translate=True, lam=lam)
    return LinearMap(cfg, torch.from_numpy(W), torch.from_numpy(my), 1.0, torch.from_numpy(mx))


def identity(X, Y) -> LinearMap:
    da, db = X.shape[1], Y.shape[1]
    if da != db:
        raise ActlabError(f"the identity map needs equal widths; A has {da}, B has {db} (use procrustes or ridge)")
    return LinearMap(MapConfig("identity", da, db), torch.eye(da))


# ---------------------------------------------------------------------------------------------- trained maps
@dataclass
class TrainConfig:
    epochs: int = 10
    lr: float = 1e-3
    batch_size: int = 32
    temperature: float = 0.07
    mse_weight: float = 1.0
    seed: int = 0


def _batches(n: int, bs: int, g: torch.Generator):
    perm = torch.randperm(n, generator=g)
    for i in range(0, n, bs):
        yield perm[i : i + bs]


def _xavier(d_in: int, d_out: int, g: torch.Generator | None, gain: float = 1.0) -> torch.Tensor:
    """Xavier-uniform ``[d_in, d_out]`` (``nn.Linear(d_in, d_out).weight`` transposed)."""
    return nn.init.xavier_uniform_(torch.empty(d_out, d_in), generator=g).T.contiguous() * gain


class _Trainable(LinearMap):
    """A map built untrained from its widths (the seed's ``Adapter(input_dim, output_dim)`` call shape)."""

    kind = ""

    def _freeze(self, info: dict) -> _Trainable:
        self.cfg.info = info
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)
        return self


class LearnedProjection(_Trainable):
    """The paper's W ∈ R^{d_b×d_a} (no bias, Xavier init); :meth:`fit` = Adam on (1/N)Σ‖z − W y‖² (lr 1e-3, batch
    32, 10 epochs by default, :class:`TrainConfig`)."""

    kind = "learned"

    def __init__(self, source_dim: int, target_dim: int, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        super().__init__(
            MapConfig("learned", source_dim, target_dim), _xavier(source_dim, target_dim, g), trainable=True
        )
        self._g = g

    def fit(self, X, Y, tc: TrainConfig | None = None, dist: Dist | None = None) -> LearnedProjection:
        """Adam on the batch-mean squared error; under several processes (``dist``) each rank takes its slice of
        every batch, weighted by its share of the batch, and the gradients are summed."""
        tc, dist = tc or TrainConfig(), dist or Dist()
        X, Y = torch.as_tensor(_np64(X)).float(), torch.as_tensor(_np64(Y)).float()
        self.W.requires_grad_(True)
        self.train()
        g = getattr(self, "_g", None) or torch.Generator().manual_seed(tc.seed)
        opt = torch.optim.Adam([self.W], lr=tc.lr)
        loss = float("nan")
        for _ in range(tc.epochs):
            for idx in _batches(len(X), tc.batch_size, g):
                mine = dist.shard(idx)
                part = ((Y[mine] - self(X[mine])) ** 2).sum(1).sum() / len(idx)  # this slice's share of the mean
                opt.zero_grad()
                part.backward()
                dist.sum_grads([self.W])
                opt.step()
                loss = dist.sum_floats({"loss": float(part.detach())})["loss"]
        return self._freeze({"final_loss": loss, **asdict(tc)})


def learned_projection(X, Y, tc: TrainConfig | None = None, dist: Dist | None = None) -> LearnedProjection:
    """The paper's W fitted on paired final-token activations (:class:`LearnedProjection`)."""
    tc = tc or TrainConfig()
    X, Y = _np64(X), _np64(Y)
    return LearnedProjection(X.shape[1], Y.shape[1], seed=tc.seed).fit(X, Y, tc, dist=dist)


def info_nce_loss(za: torch.Tensor, zb: torch.Tensor, nce=None, temperature: float = 0.07) -> torch.Tensor:
    """Symmetric InfoNCE between paired rows, ½[NTXent(a → b) + NTXent(b → a)], row ``i`` of each the positive.

    ``NTXentLoss`` treats ``ref_labels`` that *are* the ``labels`` tensor as a self-comparison and drops the diagonal
    pairs (here: every positive pair), which makes the loss identically 0; the reference side therefore gets its own
    label tensor.
    """
    from pytorch_metric_learning.losses import NTXentLoss

    nce = nce if nce is not None else NTXentLoss(temperature=temperature)
    lab = torch.arange(len(za))
    ref = lab.clone()
    return 0.5 * (nce(za, lab, ref_emb=zb, ref_labels=ref) + nce(zb, lab, ref_emb=za, ref_labels=ref))


class _ContrastiveAdapter(_Trainable):
    """An adapter whose :meth:`fit` trains with symmetric InfoNCE (+ ``mse_weight`` × MSE).

    Inputs and targets are standardised by B's and A's overall scale during training (Adam then behaves the same at
    any activation norm); the fitted map works on raw activations.
    """

    def _init_from_data(self, X: torch.Tensor, Y: torch.Tensor, g: torch.Generator, sx, sy) -> None:
        """(Re-)initialise from the fit's seeded stream: Xavier scaled to B/A's scale; affine b = B's mean."""
        with torch.no_grad():
            self.W.copy_(nn.init.xavier_uniform_(torch.empty(self.cfg.d_in, self.cfg.d_out), generator=g) * (sy / sx))
            if self.cfg.kind == "affine":
                self.b.copy_(Y.mean(0))

    def fit(self, X, Y, tc: TrainConfig | None = None, dist: Dist | None = None) -> _ContrastiveAdapter:
        """Adam on symmetric InfoNCE + ``mse_weight`` × MSE. Under several processes (``dist``) each rank maps its
        slice of every batch with gradients, the rest of the batch as constants, computes the batch's whole loss and
        the gradients are summed (the one-process gradient: a row's loss depends on every row of the batch)."""
        from pytorch_metric_learning.losses import NTXentLoss

        tc, dist = tc or TrainConfig(), dist or Dist()
        X, Y = torch.as_tensor(_np64(X)).float(), torch.as_tensor(_np64(Y)).float()
        n, da = X.shape
        db = Y.shape[1]
        if (da, db) != (self.cfg.d_in, self.cfg.d_out):
            raise ActlabError(f"{self.cfg.kind} adapter is {self.cfg.d_in} → {self.cfg.d_out}; data is {da} → {db}")
        g = torch.Generator().manual_seed(tc.seed)
        sx = X.pow(2).sum(1).mean().sqrt() / math.sqrt(da)
        sy = Y.pow(2).sum(1).mean().sqrt() / math.sqrt(db)
        self._init_from_data(X, Y, g, sx, sy)
        if dist.active:  # every rank starts from rank 0's initial map (a fitted base is not bitwise the same)
            self.load_state_dict(dist.broadcast({k: v.detach().clone() for k, v in self.state_dict().items()}))
        for name, p in self.named_parameters():
            p.requires_grad_(name in self._trained)
        self.train()
        params = [p for p in self.parameters() if p.requires_grad]
        opt = torch.optim.Adam(params, lr=tc.lr)
        nce = NTXentLoss(temperature=tc.temperature)
        last = {}
        for _ in range(tc.epochs):
            for idx in _batches(n, tc.batch_size, g):
                if len(idx) < 2:
                    continue
                za, zb = self._batch_rows(X, idx, dist), Y[idx]
                l_nce = info_nce_loss(za, zb, nce)
                l_mse = (((za - zb) / sy) ** 2).mean()
                loss = l_nce + tc.mse_weight * l_mse
                opt.zero_grad()
                loss.backward()
                dist.sum_grads(params)
                opt.step()
                last = {"infonce": float(l_nce.detach()), "mse_std": float(l_mse.detach())}
        return self._freeze({**last, **asdict(tc)})

    def _batch_rows(self, X: torch.Tensor, idx: torch.Tensor, dist: Dist) -> torch.Tensor:
        """The mapped rows of batch ``idx``; under several processes only this rank's slice carries gradients."""
        if not dist.active:
            return self(X[idx])
        lo = dist.rank * len(idx) // dist.world
        hi = (dist.rank + 1) * len(idx) // dist.world
        with torch.no_grad():
            rest = self(X[idx])
        return torch.cat([rest[:lo], self(X[idx[lo:hi]]), rest[hi:]])


class LinearAdapter(_ContrastiveAdapter):
    """Full-rank y = x W (no bias; d_in·d_out parameters), Xavier init rescaled to B's scale at fit."""

    kind = "linear"
    _trained = ("W",)

    def __init__(self, input_dim: int, output_dim: int, seed: int = 0):
        super().__init__(
            MapConfig(self.kind, input_dim, output_dim),
            _xavier(input_dim, output_dim, torch.Generator().manual_seed(seed)),
            trainable=True,
        )


class AffineAdapter(LinearAdapter):
    """y = x W + b (d_in·d_out + d_out parameters); b starts at B's mean."""

    kind = "affine"
    _trained = ("W", "b")


class LoRAAdapter(_ContrastiveAdapter):
    """A frozen base map plus a trainable rank-``rank`` update B·A (B = 0 at init, so it starts at the base) and a
    bias. With no ``base``, :meth:`fit` first fits the scaled, translated Procrustes map as the base (what
    ``fit_map("lora")`` and the CLI do); a pure low-rank B·A (the seed's) would output 0 at init."""

    kind = "lora"
    _trained = ("lora_A", "lora_B", "b")

    def __init__(self, input_dim: int, output_dim: int, rank: int = 32, base: LinearMap | None = None, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        cfg = MapConfig("lora", input_dim, output_dim, rank=rank)
        A0 = torch.randn(input_dim, rank, generator=g) / math.sqrt(input_dim)
        super().__init__(
            cfg,
            torch.zeros(input_dim, output_dim),
            None,
            1.0,
            None,
            (A0, torch.zeros(rank, output_dim)),
            trainable=True,
        )
        self._base = base

    def _init_from_data(self, X, Y, g, sx, sy) -> None:
        base = self._base if self._base is not None else procrustes(X, Y, scale=True, translate=True)
        with torch.no_grad():
            self.W.copy_(base.weight() * base.s)
            self.b.copy_(base.b)
            self.mu_x.copy_(base.mu_x)
            self.lora_A.copy_(torch.randn(self.cfg.d_in, self.cfg.rank, generator=g) / math.sqrt(self.cfg.d_in))
            self.lora_B.zero_()


ADAPTERS = {"linear": LinearAdapter, "affine": AffineAdapter, "lora": LoRAAdapter}
CLASSES = {"learned": LearnedProjection, **ADAPTERS}


def train_adapter(
    kind: str, X, Y, tc: TrainConfig | None = None, rank: int = 32, dist: Dist | None = None
) -> LinearMap:
    """A ``linear`` / ``affine`` / ``lora`` adapter (:class:`LinearAdapter`, :class:`AffineAdapter`,
    :class:`LoRAAdapter`) trained with symmetric InfoNCE (+ ``mse_weight`` × MSE)."""
    check_choice("adapter", kind, tuple(ADAPTERS))
    tc = tc or TrainConfig()
    da, db = _np64(X).shape[1], _np64(Y).shape[1]
    m = LoRAAdapter(da, db, rank=rank, seed=tc.seed) if kind == "lora" else ADAPTERS[kind](da, db, seed=tc.seed)
    return m.fit(X, Y, tc, dist=dist)


def _on_main(dist: Dist, fit: Callable[[], LinearMap]) -> LinearMap:
    """``fit()`` on rank 0 alone, its map handed to every rank (a failure there ends the launch)."""
    if not dist.active:
        return fit()
    return dist.broadcast(fit() if dist.is_main else None)


def fit_map(
    method: str,
    X,
    Y,
    *,
    scale: bool = True,
    translate: bool = True,
    lam: float = 1e-2,
    train: TrainConfig | None = None,
    rank: int = 32,
    dist: Dist | None = None,
) -> LinearMap:
    """Fit ``method`` (one of :data:`METHODS`) from A's activations ``X`` to B's ``Y`` (rows paired).

    ``dist``: the processes of a launch, every one holding the same ``X`` and ``Y`` (see the module doc)."""
    check_choice("alignment method", method, METHODS)
    dist = dist or Dist()
    if len(X) != len(Y):
        raise ActlabError(f"X and Y must be paired (same number of rows); got {len(X)} and {len(Y)}")
    if len(X) < 2:
        raise ActlabError(f"fitting a map needs at least 2 paired samples, got {len(X)}")
    if method == "identity":
        return identity(X, Y)
    if method == "procrustes":
        return _on_main(dist, lambda: procrustes(X, Y, scale=scale, translate=translate))
    if method == "ridge":
        return _on_main(dist, lambda: ridge(X, Y, lam=lam))
    if method == "learned":
        return learned_projection(X, Y, train, dist=dist)
    return train_adapter(method, X, Y, train, rank=rank, dist=dist)
