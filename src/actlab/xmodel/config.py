"""Configs of the cross-model family, one per verb (validated on construction: a bad value is one ActlabError
line). Importing this module is cheap: the choice lists are read from the modules that use them only when a config
is checked."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from actlab.core.config import (
    check_device,
    check_dtype,
    check_model,
    check_out_dir,
    check_positive,
    check_range,
    read_utf8,
)
from actlab.core.errors import ActlabError, check_choice

_POOLINGS = ("last", "mean", "tokens")  # the argparse choices; xmodel.extract.POOLINGS is checked too
_SPLITS = ("train", "test")


def check_pair(model_a: str, model_b: str) -> None:
    """Alignment needs two different models (aligning a model with itself is the identity)."""
    import os

    if os.path.normpath(os.path.expanduser(str(model_a))) == os.path.normpath(os.path.expanduser(str(model_b))):
        raise ActlabError(
            f"model A and model B are the same ({model_a!r}); a pair of different models is required "
            f"(e.g. --model_a tiny --model_b tiny-b)"
        )


def check_texts(texts: str) -> None:
    """``syn_passages``, ``c4`` (streamed from the hub) or an existing UTF-8 text file (one text per line)."""
    if texts in ("syn_passages", "c4"):
        return
    p = Path(texts).expanduser()
    if not p.exists():
        raise ActlabError(
            f"--texts {texts!r}: no such file; give 'syn_passages', 'c4' or a .txt file with one text per line"
        )
    read_utf8("--texts", p, "'syn_passages', 'c4' or a .txt file, one text per line")


def _map_checks(c) -> None:
    check_positive("lr", c.lr)
    check_positive("ridge_lambda", c.ridge_lambda, allow_zero=True)
    check_positive("temperature", c.temperature)
    check_positive("mse_weight", c.mse_weight, allow_zero=True)
    check_positive("epochs", c.epochs, integer=True)
    check_positive("rank", c.rank, integer=True)


@dataclass
class XModelConfig:
    """Everything ``actlab xmodel run-all`` does: extraction → CKA → (k, j) grid → maps → communication."""

    model_a: str = field(default="tiny", metadata={"help": "model A (sender): zoo name, local dir or hub id"})
    model_b: str = field(default="tiny-b", metadata={"help": "model B (receiver)"})
    # alignment data
    texts: str = field(
        default="syn_passages",
        metadata={"help": "syn_passages, c4 (streamed: allenai/c4 en validation) or a .txt file (one text per line)"},
    )
    n_texts: int = field(default=512, metadata={"help": "alignment texts"})
    pooling: str = field(default="last", metadata={"choices": _POOLINGS, "help": "activation pooling"})
    heldout: float = field(default=0.2, metadata={"help": "held-out share of the texts, in (0, 1)"})
    shard_size: int = field(default=256, metadata={"help": "texts per shard"})
    # maps (fitted at the communication layers k, j on last-token activations, like the paper's W)
    methods: list[str] = field(
        default_factory=lambda: ["identity", "procrustes", "ridge", "learned", "linear", "affine", "lora"],
        metadata={"sep": ",", "help": "alignment maps to fit (space- or comma-separated)"},
    )
    ridge_lambda: float = field(default=1e-2, metadata={"help": "ridge penalty (>= 0)"})
    epochs: int = field(default=10, metadata={"help": "learned maps: epochs (the paper's W: 10, bs 32, Adam 1e-3)"})
    lr: float = field(default=1e-3, metadata={"help": "learned maps: learning rate (> 0)"})
    train_batch_size: int = field(default=32, metadata={"help": "learned maps: batch size"})
    temperature: float = field(default=0.07, metadata={"help": "learned maps: contrastive temperature (> 0)"})
    mse_weight: float = field(default=1.0, metadata={"help": "learned maps: MSE weight (>= 0)"})
    rank: int = field(default=32, metadata={"help": "lora map rank (the seed's LoRAAdapter: 32)"})
    procrustes_layers: list[int] | None = field(
        default=None,
        metadata={
            "sep": ",",
            "help": "also fit Procrustes at each of these layers, same index on A and B (the seed's "
            "0,8,16,24); results in procrustes_layers.json",
        },
    )
    # communication
    task: str = field(default="syn_countries", metadata={"help": "communication task"})
    n_eval: int = field(default=100, metadata={"help": "evaluation rows"})
    n_dev: int = field(default=40, metadata={"help": "train-split rows used for the (k, j) grid"})
    k: int | None = field(default=None, metadata={"help": "A's 0-based block index (default: best of the dev grid)"})
    j: int | None = field(default=None, metadata={"help": "B's 0-based block index (default: best of the dev grid)"})
    f: str = field(default="replace", metadata={"help": "replace | sum | mean"})
    ac_maps: list[str] = field(
        default_factory=lambda: ["learned", "ridge"],
        metadata={"sep": ",", "help": "maps used for activation communication"},
    )
    max_new_tokens: int = field(default=4, metadata={"help": "answer tokens"})
    message_tokens: int = field(default=16, metadata={"help": "natural-language message tokens (nl baseline)"})
    batch_size: int = field(default=16, metadata={"help": "batch size"})
    seed: int = field(default=0, metadata={"help": "seed"})
    dtype: str | None = field(default=None, metadata={"help": "model dtype (default: fp32 on cpu, bf16 on cuda)"})
    device: str | None = field(default=None, metadata={"help": "cpu | cuda | cuda:N | mps"})

    def __post_init__(self):
        from actlab.xmodel.align import METHODS as ALIGN_METHODS
        from actlab.xmodel.communicate import FS, TASKS
        from actlab.xmodel.extract import POOLINGS

        check_pair(self.model_a, self.model_b)
        check_choice("pooling", self.pooling, POOLINGS)
        check_choice("task", self.task, TASKS)
        check_choice("f", self.f, FS)
        for m in self.methods:
            check_choice("alignment method", m, ALIGN_METHODS)
        for m in self.ac_maps:
            check_choice("alignment method", m, ALIGN_METHODS)
        for name in (
            "n_texts",
            "n_eval",
            "shard_size",
            "epochs",
            "train_batch_size",
            "max_new_tokens",
            "batch_size",
            "rank",
        ):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise ActlabError(f"{name} must be a positive integer, got {v}")
        if self.n_dev < 0 or self.message_tokens < 0:
            raise ActlabError("n_dev and message_tokens must be >= 0")
        if not (isinstance(self.heldout, (int, float)) and math.isfinite(self.heldout) and 0.0 < self.heldout < 1.0):
            raise ActlabError(f"heldout must be in (0, 1), got {self.heldout}")
        if self.n_texts * self.heldout < 4:
            raise ActlabError(
                f"n_texts × heldout = {self.n_texts * self.heldout:g} held-out samples; debiased CKA needs at least 4"
            )
        _map_checks(self)
        check_texts(self.texts)
        check_device("device", self.device)
        check_dtype("dtype", self.dtype)

    def check_inputs(self) -> None:
        check_model("model_a", self.model_a)
        check_model("model_b", self.model_b)


@dataclass
class ExtractConfig:
    """``actlab xmodel extract``: paired activations of A and B on the same texts (safetensors shards)."""

    model_a: str = field(metadata={"help": "model A: zoo name, local dir or hub id"})
    model_b: str = field(metadata={"help": "model B"})
    out: str = field(metadata={"help": "output directory"})
    texts: str = field(
        default=XModelConfig.texts, metadata={"help": "syn_passages, c4 or a .txt file, one text per line"}
    )
    n_texts: int = field(default=XModelConfig.n_texts, metadata={"help": "texts"})
    pooling: str = field(default=XModelConfig.pooling, metadata={"choices": _POOLINGS, "help": "activation pooling"})
    layers_a: list[int] | None = field(default=None, metadata={"sep": ",", "help": "A's layers (default all)"})
    layers_b: list[int] | None = field(default=None, metadata={"sep": ",", "help": "B's layers (default all)"})
    heldout: float = field(default=XModelConfig.heldout, metadata={"help": "held-out share, in [0, 1)"})
    shard_size: int = field(default=XModelConfig.shard_size, metadata={"help": "texts per shard"})
    batch_size: int = field(default=XModelConfig.batch_size, metadata={"help": "texts per forward"})
    seed: int = field(default=XModelConfig.seed, metadata={"help": "seed (text order, held-out split)"})
    overwrite: bool = field(default=False, metadata={"help": "replace shards of another extraction in --out"})

    def __post_init__(self) -> None:
        check_pair(self.model_a, self.model_b)
        check_range("heldout", self.heldout, 0.0, 1.0)
        for n in ("n_texts", "shard_size", "batch_size"):
            check_positive(n, getattr(self, n), integer=True)
        check_texts(self.texts)
        check_out_dir("--out", self.out)

    def check_inputs(self) -> None:
        check_model("model_a", self.model_a)
        check_model("model_b", self.model_b)


@dataclass
class AlignConfig:
    """``actlab xmodel align``: fit a map A→B on the train rows of a pairs directory; score it on the held-out rows."""

    pairs: str = field(metadata={"help": "a directory written by `actlab xmodel extract`"})
    out: str = field(metadata={"help": "directory for map.safetensors + map.json + scores.json"})
    layer_a: int | None = field(default=None, metadata={"help": "A's layer (negative: from the last extracted)"})
    layer_b: int | None = field(default=None, metadata={"help": "B's layer (negative: from the last extracted)"})
    layers: list[int] | None = field(
        default=None,
        metadata={
            "sep": ",",
            "help": "instead of --layer_a/--layer_b: one map per layer, same index on A and B (the seed's "
            "0,8,16,24); maps in OUT/layer<a>-<b>/, scores per layer in OUT/scores.json",
        },
    )
    method: str = field(
        default="procrustes",
        metadata={
            "choices": ["identity", "procrustes", "ridge", "learned", "linear", "affine", "lora"],
            "help": "the map",
        },
    )
    no_scale: bool = field(default=False, metadata={"help": "procrustes without isotropic scale"})
    no_translate: bool = field(default=False, metadata={"help": "procrustes without translation"})
    ridge_lambda: float = field(default=XModelConfig.ridge_lambda, metadata={"help": "ridge penalty (>= 0)"})
    epochs: int = field(default=XModelConfig.epochs, metadata={"help": "learned maps: epochs"})
    lr: float = field(default=XModelConfig.lr, metadata={"help": "learned maps: learning rate (> 0)"})
    batch_size: int = field(default=XModelConfig.train_batch_size, metadata={"help": "learned maps: batch size"})
    temperature: float = field(
        default=XModelConfig.temperature, metadata={"help": "learned maps: contrastive temperature (> 0)"}
    )
    mse_weight: float = field(default=XModelConfig.mse_weight, metadata={"help": "learned maps: MSE weight (>= 0)"})
    rank: int = field(default=XModelConfig.rank, metadata={"help": "lora map rank"})

    def __post_init__(self) -> None:
        from actlab.xmodel.align import METHODS

        check_choice("method", self.method, METHODS)
        if self.layers is not None:
            if self.layer_a is not None or self.layer_b is not None:
                raise ActlabError("--layers replaces --layer_a/--layer_b; give one or the other")
            if not self.layers:
                raise ActlabError("--layers: give one or more layers, e.g. --layers 0 8 16 24")
        elif self.layer_a is None or self.layer_b is None:
            raise ActlabError("give --layer_a and --layer_b (one map), or --layers L1 L2 ... (one map per layer)")
        _map_checks(self)
        check_positive("batch_size", self.batch_size, integer=True)
        p = Path(self.pairs)
        if not p.is_dir():
            raise ActlabError(
                f"--pairs {p} {'is a file' if p.exists() else 'does not exist'}; give a directory "
                f"written by `actlab xmodel extract`"
            )
        if not (p / "pairs.json").is_file():
            raise ActlabError(
                f"--pairs {p} has no pairs.json: not a directory written by `actlab xmodel extract` "
                f"(or the extraction did not finish)"
            )
        check_out_dir("--out", self.out)


@dataclass
class CommunicateConfig:
    """``actlab xmodel communicate``: A's layer-k last-token activation is written into B's layer-j last prompt
    token on the prefill pass only (f: replace/sum/mean), optionally through a map."""

    model_a: str = field(metadata={"help": "model A (sender)"})
    model_b: str = field(metadata={"help": "model B (receiver)"})
    task: str = field(
        default=XModelConfig.task,
        metadata={
            "choices": ["syn_countries", "syn_tipsheets", "syn_gsm8k", "syn_squad", "gsm8k", "squad"],
            "help": "task",
        },
    )
    n: int = field(default=100, metadata={"help": "rows"})
    split: str = field(default="test", metadata={"choices": _SPLITS, "help": "task split"})
    k: int = field(default=-2, metadata={"help": "A's layer (0-based block output)"})
    j: int = field(default=-2, metadata={"help": "B's layer (0-based block output)"})
    f: str = field(
        default=XModelConfig.f, metadata={"choices": ["replace", "sum", "mean"], "help": "how A's activation enters B"}
    )
    map: str | None = field(
        default=None, metadata={"help": "a map directory (from align / run-all) applied to A's activation"}
    )
    methods: list[str] | None = field(
        default=None, metadata={"sep": ",", "help": "subset of b_alone,a_alone,skyline,nl,ac (default all)"}
    )
    grid: bool = field(default=False, metadata={"help": "also search all (k, j) and write grid.png"})
    similarity_layers: list[int] | None = field(
        default=None,
        metadata={
            "sep": ",",
            "help": "also run the text-similarity experiment at these layers (same index on A and B; "
            "docs/xmodel.md); --map is used at the layer pair (k, j) only",
        },
    )
    n_similarity: int = field(default=32, metadata={"help": "text-similarity texts (syn_passages, test split)"})
    similarity_tokens: int = field(default=8, metadata={"help": "text-similarity continuation tokens"})
    max_new_tokens: int = field(default=XModelConfig.max_new_tokens, metadata={"help": "answer tokens"})
    message_tokens: int = field(
        default=XModelConfig.message_tokens, metadata={"help": "natural-language message tokens"}
    )
    batch_size: int = field(default=XModelConfig.batch_size, metadata={"help": "batch size"})
    out: str | None = field(default=None, metadata={"help": "directory for communicate.json (and grid.json/png)"})

    def __post_init__(self) -> None:
        from actlab.xmodel.communicate import FS, METHODS, TASKS

        check_choice("task", self.task, TASKS)
        check_choice("f", self.f, FS)
        check_choice("split", self.split, _SPLITS)
        for m in self.methods or []:
            check_choice("method", m, METHODS)
        for n in ("n", "max_new_tokens", "batch_size", "similarity_tokens"):
            check_positive(n, getattr(self, n), integer=True)
        if self.n_similarity < 2 or isinstance(self.n_similarity, bool):
            raise ActlabError(
                f"--n_similarity must be an integer >= 2 (the shuffled control), got {self.n_similarity}"
            )
        check_positive("message_tokens", self.message_tokens, integer=True, allow_zero=True)
        if self.map is not None:
            p = Path(self.map)
            if not p.is_dir() or not (p / "map.json").is_file():
                raise ActlabError(
                    f"--map {p}: not a map directory (no map.json); give a directory written by "
                    f"`actlab xmodel align` or run-all (maps/<method>)"
                )
        check_out_dir("--out", self.out)

    def check_inputs(self) -> None:
        check_model("model_a", self.model_a)
        check_model("model_b", self.model_b)


@dataclass
class RunAllConfig:
    """``actlab xmodel run-all``: everything into ``out``; rerun to resume after a kill."""

    out: str = field(metadata={"help": "run directory"})
    xmodel: XModelConfig = field(default_factory=XModelConfig)

    def __post_init__(self) -> None:
        check_out_dir("--out", self.out)

    def check_inputs(self) -> None:
        self.xmodel.check_inputs()


def _demo_defaults() -> XModelConfig:
    from actlab.xmodel.demo import DEMO

    return XModelConfig(**{"model_a": "tiny", "model_b": "tiny-b", **DEMO})


@dataclass
class XModelDemoConfig:
    """``actlab xmodel demo``: run-all on the zoo pair tiny (A) → tiny-b (B) with demo sizes."""

    out: str | None = field(default=None, metadata={"help": "run directory (default $ACTLAB_HOME/runs/xmodel-demo)"})
    seeds: list[int] = field(
        default_factory=lambda: [0, 1, 2],
        metadata={
            "help": "one run per seed (texts, split, eval rows, adapter init), then mean "
            "± 95 % CI over seeds; --seed alone is ignored here"
        },
    )
    xmodel: XModelConfig = field(default_factory=_demo_defaults)

    def __post_init__(self) -> None:
        check_out_dir("--out", self.out)
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ActlabError(f"--seeds {self.seeds!r}: give one or more distinct seeds, e.g. --seeds 0 1 2")

    def check_inputs(self) -> None:
        self.xmodel.check_inputs()
