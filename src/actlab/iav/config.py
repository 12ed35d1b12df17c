"""Configs of the IAV family (dataclasses; ``__post_init__`` rejects bad values with one line).

Flag names follow the public IAV code (``s4n9hyun/IAV`` ``train_main.py``, ``cache.sh``); see docs/iav.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from actlab.core.errors import ActlabError, unknown_choice

LOSS_MODES = ("corrected", "faithful")
ALPHAS = (0.0, 0.5, 1.0, 1.5, 2.0)


def check_alpha(alpha: float, name: str = "alpha") -> float:
    """α must be a finite number ≥ 0 (α = 0 is the base head alone)."""
    try:
        a = float(alpha)
    except (TypeError, ValueError):
        raise ActlabError(f"{name} must be a number >= 0, got {alpha!r}") from None
    if not math.isfinite(a) or a < 0:
        raise ActlabError(f"{name} must be a finite number >= 0 (0 = base head only), got {alpha!r}")
    return a


def check_loss_mode(mode: str) -> str:
    if mode not in LOSS_MODES:
        raise unknown_choice("loss mode", mode, LOSS_MODES)
    return mode


def _nonneg(name: str, v: float) -> None:
    if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
        raise ActlabError(f"{name} must be a finite number >= 0, got {v!r}")


def _pos_int(name: str, v: int) -> None:
    if not isinstance(v, int) or v <= 0:
        raise ActlabError(f"{name} must be a positive integer, got {v!r}")


@dataclass
class LossConfig:
    """The IAV objective ``L = L_pref + lambda_kl * L_kl + lambda_l2 * L_l2``.

    Args:
        loss (`str`, defaults to ``"corrected"``): ``corrected`` (response-only masks, true DPO term against the
            reference head, full-vocabulary KL of the base head to the reference on chosen and rejected, squared L2)
            or ``faithful`` (what ``s4n9hyun/IAV@d89a017`` computes; see docs/iav.md).
        beta (`float`, defaults to 0.1), lambda_kl (`float`, defaults to 0.1), lambda_l2 (`float`, defaults to 0.01):
            the weights of ``train.sh``.
        train_alpha (`float`, defaults to 1.0): α used in ``z_final`` during training.
    """

    loss: str = "corrected"
    beta: float = 0.1
    lambda_kl: float = 0.1
    lambda_l2: float = 0.01
    train_alpha: float = 1.0

    def __post_init__(self):
        check_loss_mode(self.loss)
        for n in ("beta", "lambda_kl", "lambda_l2"):
            _nonneg(n, getattr(self, n))
        if self.beta == 0:
            raise ActlabError("beta must be > 0, got 0")
        check_alpha(self.train_alpha, "train_alpha")


@dataclass
class CacheConfig:
    """``actlab iav cache``: reference log-probs of a (possibly different) reference model over a preference set."""

    ref_model: str = "tiny"
    dataset: str = "syn_hh"
    split: str = "train"
    num_samples: int = 512
    seq_length: int = 128
    max_prompt_length: int = 64
    loss: str = "corrected"  # the layout of the sequences (faithful duplicates the prompt, as the public code)
    topk: int = 64  # reference distribution kept per position: top-k log-probs + the tail mass (0 = full vocabulary)
    batch_size: int = 16
    cache_file: str = "iav_cache.safetensors"
    seed: int = 0
    dtype: str | None = None
    device: str | None = None

    def __post_init__(self):
        check_loss_mode(self.loss)
        for n in ("num_samples", "seq_length", "max_prompt_length", "batch_size"):
            _pos_int(n, getattr(self, n))
        if not isinstance(self.topk, int) or self.topk < 0:
            raise ActlabError(f"topk must be an integer >= 0 (0 = full vocabulary), got {self.topk!r}")
        if self.max_prompt_length >= self.seq_length:
            raise ActlabError(f"max_prompt_length ({self.max_prompt_length}) must be < seq_length ({self.seq_length})")


@dataclass
class TrainConfig:
    """``actlab iav train`` (flags of the public ``train_main.py``, defaults scaled for a CPU and the zoo)."""

    model_name_or_path: str = "tiny"
    output_dir: str = "runs/iav"
    dataset: str = "syn_hh"
    num_train_samples: int = 512
    num_val_samples: int = 64
    cache_file: str | None = None
    num_epochs: int = 1
    batch_size: int = 8
    grad_accum: int = 1
    learning_rate: float = 5e-3
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    max_grad_norm: float = 1.0
    seq_length: int = 128
    max_prompt_length: int = 64
    save_steps: int = 50
    eval_steps: int = 25
    max_steps: int = 0  # 0: num_epochs over the data
    bf16: bool = False
    gradient_checkpointing: bool = False
    freeze_base_head: bool = False
    seed: int = 0
    wandb: bool = False
    device: str | None = None
    loss: LossConfig = field(default_factory=LossConfig)
    overwrite: bool = field(default=False, metadata={"help": "redo a finished run whose recorded config differs"})

    def __post_init__(self):
        if isinstance(self.loss, dict):
            self.loss = LossConfig(**self.loss)
        for n in ("num_train_samples", "num_epochs", "batch_size", "grad_accum", "seq_length", "max_prompt_length",
                  "save_steps", "eval_steps"):
            _pos_int(n, getattr(self, n))
        if not isinstance(self.num_val_samples, int) or self.num_val_samples < 0:
            raise ActlabError(f"num_val_samples must be an integer >= 0, got {self.num_val_samples!r}")
        if not isinstance(self.max_steps, int) or self.max_steps < 0:
            raise ActlabError(f"max_steps must be an integer >= 0 (0 = epochs), got {self.max_steps!r}")
        _nonneg("learning_rate", self.learning_rate)
        _nonneg("weight_decay", self.weight_decay)
        _nonneg("max_grad_norm", self.max_grad_norm)
        if not 0 <= self.warmup_ratio < 1:
            raise ActlabError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio!r}")
        if self.max_prompt_length >= self.seq_length:
            raise ActlabError(f"max_prompt_length ({self.max_prompt_length}) must be < seq_length ({self.seq_length})")


@dataclass
class GenerateConfig:
    max_new_tokens: int = 64
    do_sample: bool = False
    temperature: float = 0.7
    top_p: float = 0.9
    batch_size: int = 16
    seed: int = 0

    def __post_init__(self):
        _pos_int("max_new_tokens", self.max_new_tokens)
        _pos_int("batch_size", self.batch_size)
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise ActlabError(f"temperature must be > 0, got {self.temperature!r}")
        if not (0 < self.top_p <= 1):
            raise ActlabError(f"top_p must be in (0, 1], got {self.top_p!r}")
