"""Configs of the IAV family (dataclasses; ``__post_init__`` rejects bad values with one line).

Flag names follow the public IAV code (``s4n9hyun/IAV`` ``train_main.py``, ``cache.sh``); see docs/iav.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from actlab.core.config import check_device, check_positive
from actlab.core.errors import ActlabError, unknown_choice
from actlab.core.io import check_report_to, report_to_field

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

    loss: str = field(default="corrected", metadata={"help": "corrected or faithful (the public code's loss)"})
    beta: float = field(default=0.1, metadata={"help": "preference temperature β (> 0)"})
    lambda_kl: float = field(default=0.1, metadata={"help": "KL weight λ_kl (>= 0)"})
    lambda_l2: float = field(default=0.01, metadata={"help": "L2 weight λ_l2 on a_t (>= 0)"})
    train_alpha: float = field(default=1.0, metadata={"help": "α used during training"})

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

    ref_model: str = field(default="tiny", metadata={"aliases": ["--model_name"], "help": "reference model"})
    dataset: str = field(
        default="syn_hh",
        metadata={"aliases": ["--dataset_name"], "help": "syn_hh, hh_rlhf or a local JSON/JSONL file"},
    )
    split: str = field(default="train", metadata={"help": "dataset split"})
    num_samples: int = field(default=512, metadata={"help": "pairs (must equal train's num_train_samples)"})
    seq_length: int = field(default=128, metadata={"aliases": ["--max_seq_length"], "help": "max tokens per sequence"})
    max_prompt_length: int = field(default=64, metadata={"help": "max prompt tokens"})
    loss: str = field(
        default="corrected", metadata={"help": "sequence layout: corrected or faithful (duplicates the prompt)"}
    )
    topk: int = field(default=64, metadata={"help": "reference tokens kept per position (0 = full vocabulary)"})
    batch_size: int = field(default=16, metadata={"help": "sequences per forward"})
    cache_file: str = field(
        default="iav_cache.safetensors",
        metadata={
            "aliases": ["--output_path"],
            "help": "output file (safetensors whatever its suffix; the seed's .pt is fine)",
        },
    )
    seed: int = field(default=0, metadata={"help": "seed"})
    dtype: str | None = field(default=None, metadata={"cli": False})
    device: str | None = field(default=None, metadata={"help": "cpu | cuda | cuda:N | mps"})

    def __post_init__(self):
        check_loss_mode(self.loss)
        for n in ("num_samples", "seq_length", "max_prompt_length", "batch_size"):
            _pos_int(n, getattr(self, n))
        if not isinstance(self.topk, int) or self.topk < 0:
            raise ActlabError(f"topk must be an integer >= 0 (0 = full vocabulary), got {self.topk!r}")
        if self.max_prompt_length >= self.seq_length:
            raise ActlabError(f"max_prompt_length ({self.max_prompt_length}) must be < seq_length ({self.seq_length})")
        check_device("device", self.device)

    def check_inputs(self) -> None:
        from actlab.core.config import check_model, check_out_dir

        check_model("ref_model", self.ref_model)
        check_dataset("dataset", self.dataset)
        if Path(self.cache_file).is_dir():
            raise ActlabError(
                f"--cache_file {self.cache_file} is a directory, expected a file path (written as "
                f"safetensors whatever its suffix, e.g. .safetensors or the seed's .pt)"
            )
        check_out_dir("cache_file", str(Path(self.cache_file).parent))


@dataclass
class TrainConfig:
    """``actlab iav train`` (flags of the public ``train_main.py``, defaults scaled for a CPU and the zoo)."""

    model_name_or_path: str = field(default="tiny", metadata={"help": "backbone: zoo name, local dir or hub id"})
    output_dir: str = field(default="runs/iav", metadata={"help": "run directory"})
    dataset: str = field(
        default="syn_hh",
        metadata={"help": "syn_hh (offline), hh_rlhf (Dahoas/full-hh-rlhf) or a local JSON/JSONL file"},
    )
    num_train_samples: int = field(default=512, metadata={"help": "training pairs"})
    num_val_samples: int = field(default=64, metadata={"help": "validation pairs, 0 = none"})
    cache_file: str | None = field(
        default=None,
        metadata={"help": "reference cache from `actlab iav cache` (any suffix; default: the frozen reference head)"},
    )
    num_epochs: int = field(default=1, metadata={"help": "epochs"})
    batch_size: int = field(default=8, metadata={"help": "pairs per device per micro-step"})
    grad_accum: int = field(default=1, metadata={"help": "gradient accumulation steps"})
    learning_rate: float = field(default=5e-3, metadata={"help": "AdamW learning rate (finite, > 0)"})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay"})
    warmup_ratio: float = field(default=0.1, metadata={"help": "linear warmup fraction, in [0, 1)"})
    max_grad_norm: float = field(default=1.0, metadata={"help": "gradient clipping"})
    seq_length: int = field(default=128, metadata={"help": "max tokens per sequence"})
    max_prompt_length: int = field(default=64, metadata={"help": "max prompt tokens, kept from the end"})
    save_steps: int = field(default=50, metadata={"help": "write checkpoint-<step>/ every N steps"})
    save_total_limit: int | None = field(
        default=None, metadata={"help": "keep only the newest N checkpoint-<step>/ directories (default: all)"}
    )
    eval_steps: int = field(default=25, metadata={"help": "validate every N steps"})
    max_steps: int = field(default=0, metadata={"help": "stop after this many optimizer steps; 0 = epochs"})
    bf16: bool = field(default=False, metadata={"help": "backbone in bf16 (heads stay fp32)"})
    gradient_checkpointing: bool = field(
        default=False,
        metadata={
            "help": "turn on the backbone's gradient checkpointing (the frozen backbone runs without autograd, so "
            "it saves no memory here; the heads train the same)"
        },
    )
    freeze_base_head: bool = field(default=False, metadata={"help": "train only the alignment head"})
    seed: int = field(default=0, metadata={"help": "seed"})
    wandb: bool = field(default=False, metadata={"help": "log to Weights & Biases (= --report_to wandb)"})
    report_to: tuple[str, ...] = report_to_field()
    device: str | None = field(default=None, metadata={"help": "cpu | cuda | cuda:N (default: accelerate's choice)"})
    ref_model: str | None = field(
        default=None,
        metadata={"help": "a live reference model instead of the frozen head (slow; train(cfg, ref_model=...))"},
    )
    loss: LossConfig = field(default_factory=LossConfig, metadata={"file_key": "loss_config"})
    overwrite: bool = field(default=False, metadata={"help": "redo a finished run whose recorded config differs"})

    def __post_init__(self):
        self.report_to = tuple(check_report_to(self.report_to)) or ("none",)
        if isinstance(self.loss, dict):
            self.loss = LossConfig(**self.loss)
        for n in (
            "num_train_samples",
            "num_epochs",
            "batch_size",
            "grad_accum",
            "seq_length",
            "max_prompt_length",
            "save_steps",
            "eval_steps",
        ):
            _pos_int(n, getattr(self, n))
        if self.save_total_limit is not None:
            _pos_int("save_total_limit", self.save_total_limit)
        if not isinstance(self.num_val_samples, int) or self.num_val_samples < 0:
            raise ActlabError(f"num_val_samples must be an integer >= 0, got {self.num_val_samples!r}")
        if not isinstance(self.max_steps, int) or self.max_steps < 0:
            raise ActlabError(f"max_steps must be an integer >= 0 (0 = epochs), got {self.max_steps!r}")
        check_positive("learning_rate", self.learning_rate)
        _nonneg("weight_decay", self.weight_decay)
        _nonneg("max_grad_norm", self.max_grad_norm)
        if not 0 <= self.warmup_ratio < 1:
            raise ActlabError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio!r}")
        if self.max_prompt_length >= self.seq_length:
            raise ActlabError(f"max_prompt_length ({self.max_prompt_length}) must be < seq_length ({self.seq_length})")
        check_device("device", self.device)

    def check_inputs(self) -> None:
        from actlab.core.config import check_model, check_out_dir, check_safetensors

        check_model("model_name_or_path", self.model_name_or_path)
        check_model("ref_model", self.ref_model)
        check_report_to(self.report_to, wandb=self.wandb, installed=True)
        check_dataset("dataset", self.dataset)
        check_out_dir("output_dir", self.output_dir)
        if self.cache_file is not None:
            from actlab.iav.cache import is_pickle_file, old_cache_message, regenerate_hint

            if is_pickle_file(self.cache_file):
                raise ActlabError(
                    old_cache_message(
                        self.cache_file,
                        regenerate_hint(
                            self.ref_model or self.model_name_or_path,
                            self.dataset,
                            "train",
                            self.num_train_samples,
                            self.seq_length,
                            self.max_prompt_length,
                            self.loss.loss,
                            self.cache_file,
                        ),
                    )
                )
            check_safetensors("cache_file", self.cache_file)


def check_dataset(option: str, dataset: str) -> None:
    """A local preference file (JSON/JSONL) is read strictly here: UTF-8, whole lines, chosen/rejected columns."""
    from actlab.core.config import check_records

    p = Path(dataset).expanduser()
    if p.suffix.lower() in (".json", ".jsonl", ".parquet", ".csv") or p.exists():
        from actlab.iav.data import REQUIRED

        check_records(option, p, REQUIRED)


@dataclass
class GenerateConfig:
    max_new_tokens: int = field(default=64, metadata={"help": "generation length cap"})
    do_sample: bool = field(default=False, metadata={"help": "sample (default: greedy)"})
    temperature: float = field(default=0.7, metadata={"help": "sampling temperature (> 0)"})
    top_p: float = field(default=0.9, metadata={"help": "nucleus sampling mass, in (0, 1]"})
    batch_size: int = field(default=16, metadata={"help": "prompts per batch"})
    seed: int = field(default=0, metadata={"help": "seed"})

    def __post_init__(self):
        _pos_int("max_new_tokens", self.max_new_tokens)
        _pos_int("batch_size", self.batch_size)
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise ActlabError(f"temperature must be > 0, got {self.temperature!r}")
        if not (0 < self.top_p <= 1):
            raise ActlabError(f"top_p must be in (0, 1], got {self.top_p!r}")


@dataclass
class IAVGenerateConfig:
    """``actlab iav generate``: generate with ``z_final = z_base + α·a_t`` for each α."""

    heads: str = field(metadata={"help": "heads dir (save_pretrained) or train run dir"})
    model_name_or_path: str | None = field(
        default=None, metadata={"help": "backbone (default: the one the heads name)"}
    )
    prompt: list[str] | None = field(default=None, metadata={"help": "prompt text(s)"})
    prompts_file: str | None = field(
        default=None, metadata={"help": "JSON/JSONL prompts (instruction/turns/prompt/question)"}
    )
    alpha: list[float] = field(default_factory=lambda: [1.0], metadata={"help": "α value(s)"})
    output_file: str | None = field(default=None, metadata={"help": "write JSON here instead of printing"})
    generation: GenerateConfig = field(default_factory=GenerateConfig)

    def __post_init__(self) -> None:
        self.alpha = [check_alpha(a, "--alpha") for a in self.alpha]
        if not self.alpha:
            raise ActlabError("--alpha needs at least one value")
        if not self.prompt and not self.prompts_file:
            raise ActlabError("give --prompt TEXT... or --prompts_file FILE")

    def check_inputs(self) -> None:
        from actlab.core.config import check_out_dir, check_records

        check_existing("--heads", self.heads)
        if self.prompts_file:
            check_records("prompts_file", self.prompts_file)
        if self.output_file:
            if Path(self.output_file).is_dir():
                raise ActlabError(f"--output_file {self.output_file} is a directory, expected a file path")
            check_out_dir("output_file", str(Path(self.output_file).parent))


@dataclass
class IAVDemoConfig:
    """``actlab iav demo``: on a zoo model, train IAV heads, a TRL DPO model and a GenARM ARM on syn_hh, sweep α and
    print the side-by-side table; writes the plot."""

    model_id: str = field(
        default="tiny",
        metadata={"help": "zoo model, a model dir, or 'dialogs' (a dialogs-only stand-in built on first use)"},
    )
    output_dir: str = field(default="runs/iav_demo", metadata={"help": "run directory"})
    num_prompts: int = field(default=100, metadata={"help": "evaluation prompts"})
    max_new_tokens: int = field(default=48, metadata={"help": "generation length cap"})
    quick: bool = field(default=False, metadata={"help": "fewer steps and prompts (smoke test)"})
    seed: int = field(
        default=0, metadata={"help": "first seed: the demo runs seeds seed, seed+1, seed+2 (two with --quick)"}
    )

    def __post_init__(self) -> None:
        check_positive("num_prompts", self.num_prompts, integer=True)
        check_positive("max_new_tokens", self.max_new_tokens, integer=True)


def demo(cfg: IAVDemoConfig) -> dict:
    """``actlab iav demo`` as a function of its config."""
    from actlab.iav.demo import SEEDS
    from actlab.iav.demo import demo as _demo

    return _demo(
        cfg.model_id,
        cfg.output_dir,
        num_prompts=cfg.num_prompts,
        max_new_tokens=cfg.max_new_tokens,
        quick=cfg.quick,
        seeds=tuple(cfg.seed + s for s in SEEDS),
    )


def check_existing(option: str, path: str, kind: str = "any") -> None:
    """A path option that must exist (``kind``: ``file``, ``dir`` or ``any``); one line if not."""
    p = Path(path)
    if not p.exists():
        raise ActlabError(f"{option} {p} does not exist")
    if kind == "file" and not p.is_file():
        raise ActlabError(f"{option} {p} is a directory, expected a file")
    if kind == "dir" and not p.is_dir():
        raise ActlabError(f"{option} {p} is a file, expected a directory")
