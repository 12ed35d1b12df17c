"""Configs of the cross-model family (validated on construction: a bad value is one ActlabError line)."""

from __future__ import annotations

from dataclasses import dataclass, field

from actlab.core.errors import ActlabError, check_choice
from actlab.xmodel.align import METHODS as ALIGN_METHODS
from actlab.xmodel.communicate import FS, TASKS
from actlab.xmodel.extract import POOLINGS


def check_pair(model_a: str, model_b: str) -> None:
    """Alignment needs two different models (aligning a model with itself is the identity)."""
    import os

    if os.path.normpath(os.path.expanduser(str(model_a))) == os.path.normpath(os.path.expanduser(str(model_b))):
        raise ActlabError(f"model A and model B are the same ({model_a!r}); a pair of different models is required "
                          f"(e.g. --model_a tiny --model_b tiny-b)")


@dataclass
class XModelConfig:
    """Everything ``actlab xmodel run-all`` does: extraction → CKA → (k, j) grid → maps → communication."""

    model_a: str = "tiny"
    model_b: str = "tiny-b"
    # alignment data
    texts: str = "syn_passages"  # "syn_passages" or a .txt file (one text per line)
    n_texts: int = 512
    pooling: str = "last"
    heldout: float = 0.2
    shard_size: int = 256
    # maps (fitted at the communication layers k, j on last-token activations, like the paper's W)
    methods: list[str] = field(default_factory=lambda: ["identity", "procrustes", "ridge", "learned", "linear",
                                                        "affine", "lora"])
    ridge_lambda: float = 1e-2
    epochs: int = 10  # the paper's W recipe: 10 epochs, bs 32, Adam 1e-3
    lr: float = 1e-3
    train_batch_size: int = 32
    temperature: float = 0.07
    mse_weight: float = 1.0
    rank: int = 8
    # communication
    task: str = "syn_countries"
    n_eval: int = 100
    n_dev: int = 40  # rows of the train split used for the (k, j) grid
    k: int | None = None  # None: best of the grid on the dev rows
    j: int | None = None
    f: str = "replace"
    ac_maps: list[str] = field(default_factory=lambda: ["learned", "ridge"])
    max_new_tokens: int = 4
    message_tokens: int = 16
    batch_size: int = 16
    seed: int = 0
    dtype: str | None = None
    device: str | None = None

    def __post_init__(self):
        check_pair(self.model_a, self.model_b)
        check_choice("pooling", self.pooling, POOLINGS)
        check_choice("task", self.task, TASKS)
        check_choice("f", self.f, FS)
        for m in self.methods:
            check_choice("alignment method", m, ALIGN_METHODS)
        for m in self.ac_maps:
            check_choice("alignment method", m, ALIGN_METHODS)
        for name in ("n_texts", "n_eval", "shard_size", "epochs", "train_batch_size", "max_new_tokens", "batch_size",
                     "rank"):
            if int(getattr(self, name)) <= 0:
                raise ActlabError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if self.n_dev < 0 or self.message_tokens < 0:
            raise ActlabError("n_dev and message_tokens must be >= 0")
        if not 0.0 < self.heldout < 1.0:
            raise ActlabError(f"heldout must be in (0, 1), got {self.heldout}")
        if self.n_texts * self.heldout < 4:
            raise ActlabError(f"n_texts × heldout = {self.n_texts * self.heldout:g} held-out samples; debiased CKA "
                              f"needs at least 4")
