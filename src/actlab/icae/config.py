"""ICAE configuration: one dataclass, saved as the seed's YAML files under ``configs/icae/``.

Every ``actlab icae`` verb reads ``--config_path file.yaml``. A key that is not a field, or a value of the wrong
type or outside its choices, is an :class:`~actlab.core.errors.ActlabError` (one line, valid choices named).

>>> cfg = ICAEConfig(fixed_mem_size=32, mean_compression_rate=4)
>>> cfg.fixed_mem_size
32
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from actlab.core.config import check_device, check_dtype, check_positive, check_range
from actlab.core.errors import ActlabError, check_choice
from actlab.core.io import check_report_to, report_to_field

MODEL_TYPES = ("icae", "llm")
TASKS = ("ae", "qa", "repoqa", "trajectories")
DATA_SOURCES = ("synthetic", "hub")
ATTN = ("sdpa", "eager", "flash_attention_2")


@dataclass
class ICAEConfig:
    """All settings of the ICAE family (the seed's YAML keys plus ours; unknown keys are rejected).

    > Model
        model_name (`str`, defaults to ``"tiny"``): base causal LM (zoo name, local dir or hub id).
        model_type (`str`, defaults to ``"icae"``): ``icae`` (compressing) or ``llm`` (``SimpleLLM``, full context).
        do_compress (`bool`, defaults to `True`): ICAE compresses the context; `False` feeds it raw to the decoder.
        fixed_mem_size (`int`, defaults to 32): memory slots per segment ``m`` (a power of 2).
        mean_compression_rate (`int`, defaults to 4): target tokens per slot ``r``; segments are ``m·r`` tokens.
        adaptive_mem (`bool`, defaults to `True`): a short segment gets ``ceil(len/r)`` slots (the first of the m)
            instead of all m (which would *expand* texts shorter than m).
        use_position_identifiers (`bool`, defaults to `True`): EPL position ids in encoder *and* decoder.
        lora_r / lora_alpha / lora_dropout / lora_target_modules: the encoder's LoRA (targets: PEFT's default).
        checkpoint_path (`str`, *optional*): ICAE weights (``icae.safetensors`` or its run dir) to start from.
    > Data and objectives
        task (`str`): ``ae`` / ``qa`` / ``repoqa`` / ``trajectories`` (infer and finetune).
        data_source (`str`): ``synthetic`` (the zoo's passages and questions, offline) or ``hub``.
        lm_ratio (`float`): share of LM samples in pretraining (the rest AE).
    """

    # model
    model_name: str = field(default="tiny", metadata={"help": "base causal LM: zoo name, local dir or hub id"})
    model_type: str = field(default="icae", metadata={"help": "icae | llm"})
    do_compress: bool = field(default=True, metadata={"help": "compress the context (icae)"})
    fixed_mem_size: int = field(default=32, metadata={"help": "memory slots per segment (power of 2)"})
    mean_compression_rate: int = field(default=4, metadata={"help": "tokens per memory slot"})
    adaptive_mem: bool = field(default=True, metadata={"help": "ceil(len/r) slots for short segments"})
    use_position_identifiers: bool = field(default=True, metadata={"help": "EPL position ids (encoder + decoder)"})
    lora_r: int = field(default=32, metadata={"help": "encoder LoRA rank"})
    lora_alpha: int = field(default=32, metadata={"help": "encoder LoRA alpha"})
    lora_dropout: float = field(default=0.05, metadata={"help": "encoder LoRA dropout"})
    lora_target_modules: list[str] | None = field(
        default=None, metadata={"help": "LoRA targets: module names or all-linear (default: PEFT's)"}
    )
    checkpoint_path: str | None = field(default=None, metadata={"help": "ICAE weights to load"})
    dtype: str = field(default="auto", metadata={"help": "auto | float32 | bfloat16 (never fp16)"})
    device: str | None = field(default=None, metadata={"help": "cuda | cpu | mps (default: best available)"})
    attn_implementation: str | None = field(
        default=None, metadata={"help": "sdpa | eager | null = the model's default"}
    )
    # data
    task: str = field(default="ae", metadata={"help": "ae | qa | repoqa | trajectories"})
    data_source: str = field(default="synthetic", metadata={"help": "synthetic | hub"})
    pretrain_dataset: str = field(default="syn_passages", metadata={"help": "syn_passages or a hub id with 'text'"})
    data_dir: str | None = field(default=None, metadata={"help": "prepared data (default: <output_dir>/data)"})
    num_train_samples: int = field(default=4000, metadata={"help": "training rows"})
    num_eval_samples: int = field(default=64, metadata={"help": "evaluation rows"})
    max_seq_len: int = field(default=512, metadata={"help": "max context tokens (longer are truncated)"})
    lm_ratio: float = field(default=0.5, metadata={"help": "share of LM samples in pretraining"})
    min_tokens_for_lm: int = field(default=8, metadata={"help": "shortest LM continuation (else AE)"})
    leave_tokens_for_lm: int = field(default=2, metadata={"help": "first LM target tokens not scored"})
    add_special_token_for_lm: bool = field(default=True, metadata={"help": "put [LM] before the continuation"})
    # training
    output_dir: str = field(default="runs/icae", metadata={"help": "run directory"})
    learning_rate: float = field(default=1e-3, metadata={"help": "AdamW learning rate"})
    max_steps: int = field(default=300, metadata={"help": "optimizer steps"})
    per_device_train_batch_size: int = field(default=8, metadata={"help": "training batch size"})
    warmup_steps: int = field(default=20, metadata={"help": "linear warmup steps"})
    max_grad_norm: float = field(default=2.0, metadata={"help": "gradient clipping"})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay"})
    logging_steps: int = field(default=20, metadata={"help": "log every N steps"})
    save_steps: int = field(default=100, metadata={"help": "checkpoint every N steps (resumable)"})
    seed: int = field(default=0, metadata={"help": "random seed"})
    gradient_checkpointing: bool = field(
        default=False,
        metadata={
            "help": "recompute the base model's layer activations in the backward pass (less memory, same gradients)"
        },
    )
    demo_finetune_steps: int = field(default=300, metadata={"help": "demo: QA fine-tuning steps after pretraining"})
    # inference
    batch_size: int = field(default=8, metadata={"help": "inference batch size"})
    max_new_tokens: int = field(default=128, metadata={"help": "generation length cap"})
    predictions_dir: str | None = field(default=None, metadata={"help": "default: <output_dir>/predictions"})
    metrics_dir: str | None = field(
        default=None,
        metadata={
            "help": "metrics JSONL (default: predictions_dir); the seed's layout: predictions_dir data/predictions, "
            "metrics_dir data/metrics"
        },
    )
    threads: int = field(default=0, metadata={"help": "torch CPU threads (0: leave as is)"})
    wandb: bool = field(default=False, metadata={"help": "log to Weights & Biases (= --report_to wandb)"})
    report_to: tuple[str, ...] = report_to_field()
    overwrite: bool = field(default=False, metadata={"help": "redo a finished run whose recorded config differs"})

    def __post_init__(self) -> None:
        self.report_to = tuple(check_report_to(self.report_to)) or ("none",)
        check_choice("model_type", self.model_type, MODEL_TYPES)
        check_choice("task", self.task, TASKS)
        check_choice("data_source", self.data_source, DATA_SOURCES)
        if self.attn_implementation is not None:
            check_choice("attn_implementation", self.attn_implementation, ATTN)
        m = self.fixed_mem_size
        if isinstance(m, bool) or not isinstance(m, int) or m <= 0 or m & (m - 1):
            raise ActlabError(f"fixed_mem_size must be a power of 2 (1, 2, 4, ..., 128, ...), got {m!r}")
        for name in ("mean_compression_rate", "lora_r", "max_steps", "per_device_train_batch_size", "batch_size",
                     "max_new_tokens", "max_seq_len", "num_train_samples", "num_eval_samples"):  # fmt: skip
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise ActlabError(f"{name} must be a positive integer, got {v!r}")
        t = self.lora_target_modules
        if isinstance(t, list) and t == ["all-linear"]:
            self.lora_target_modules = t = "all-linear"
        if not (t is None or t == "all-linear" or (isinstance(t, list) and t and all(isinstance(x, str) for x in t))):
            raise ActlabError(f"lora_target_modules must be a list of module names, 'all-linear' or null, got {t!r}")
        if not 0.0 <= float(self.lm_ratio) <= 1.0:
            raise ActlabError(f"lm_ratio must lie in [0, 1], got {self.lm_ratio!r}")
        for name in ("logging_steps", "save_steps", "lora_alpha", "demo_finetune_steps"):
            check_positive(name, getattr(self, name), integer=True)
        for name in ("warmup_steps", "min_tokens_for_lm", "leave_tokens_for_lm", "threads", "seed"):
            check_positive(name, getattr(self, name), integer=True, allow_zero=True)
        check_positive("learning_rate", self.learning_rate)
        check_positive("max_grad_norm", self.max_grad_norm)
        check_positive("weight_decay", self.weight_decay, allow_zero=True)
        check_range("lora_dropout", self.lora_dropout, 0.0, 1.0)
        if m > self.max_seq_len:
            raise ActlabError(
                f"fixed_mem_size {m} memory slots exceed max_seq_len {self.max_seq_len} context tokens "
                f"(nothing to compress); valid: fixed_mem_size <= max_seq_len"
            )
        check_dtype("dtype", self.dtype, ("auto", "float32", "fp32", "bfloat16", "bf16", "float16", "fp16"))
        check_device("device", self.device)
        if self.dtype in ("float16", "fp16"):
            raise ActlabError(
                "dtype float16 is not supported for ICAE (the reference code insists on bf16); "
                "valid: auto, float32, bfloat16"
            )
        if self.use_position_identifiers and self.attn_implementation == "flash_attention_2":
            raise ActlabError(
                "use_position_identifiers needs attn_implementation sdpa or eager (flash_attention_2 "
                "reads non-monotonic position ids as packed sequences)"
            )

    def check_inputs(self) -> None:
        """The files and directories the verb reads or writes, checked before anything is written."""
        from actlab.core.config import check_model, check_out_dir, check_safetensors

        check_model("model_name", self.model_name)
        check_report_to(self.report_to, wandb=self.wandb, installed=True)
        check_out_dir("output_dir", self.output_dir)
        if self.data_dir is not None:
            check_out_dir("data_dir", self.data_dir)
        if self.predictions_dir is not None:
            check_out_dir("predictions_dir", self.predictions_dir)
        if self.metrics_dir is not None:
            check_out_dir("metrics_dir", self.metrics_dir)
        if self.checkpoint_path and self.model_type == "llm":
            p = Path(self.checkpoint_path)
            p = p / "llm.safetensors" if p.is_dir() else p
            if Path(self.checkpoint_path).is_dir() and not p.exists():  # an ICAE run directory
                p = p.parent / "icae.safetensors"
            keys = check_safetensors("checkpoint_path", p)
            if not any(k.startswith("lora.") for k in keys):
                raise ActlabError(
                    f"checkpoint_path {p} is neither a fine-tuned SimpleLLM (llm.safetensors written by "
                    f"`actlab icae finetune` with model_type: llm) nor an ICAE checkpoint"
                )
        elif self.checkpoint_path:
            p = Path(self.checkpoint_path)
            if p.is_dir():
                if not (p / "icae.safetensors").exists():
                    what = (
                        "a PEFT/IA2 adapter directory (adapter_config.json)"
                        if (p / "adapter_config.json").exists()
                        else "a directory without icae.safetensors"
                    )
                    raise ActlabError(
                        f"checkpoint_path {p} is {what}, not an ICAE checkpoint; give icae.safetensors "
                        f"or the run directory that holds it"
                    )
                p = p / "icae.safetensors"
            keys = check_safetensors("checkpoint_path", p)
            if "memory_token_embed.weight" not in keys:
                hint = " (it looks like a PEFT/IA2 adapter)" if any("lora_" in k for k in keys) else ""
                raise ActlabError(
                    f"checkpoint_path {p} is not an ICAE checkpoint: no memory_token_embed.weight"
                    f"{hint}; give the icae.safetensors written by `actlab icae pretrain`"
                )

    # ------------------------------------------------------------------------------------------------------ io
    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "config") -> ICAEConfig:
        """From a mapping, with the ``--config_path`` rules (:func:`actlab.core.config.config_from_dict`)."""
        from actlab.core.config import config_from_dict

        return config_from_dict(cls, d, source)

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides: Any) -> ICAEConfig:
        """From a YAML/JSON file, then ``overrides`` (``None`` = not given)."""
        from actlab.core.config import load_config

        return load_config(cls, path, **overrides)

    def to_yaml(self, path: str | Path) -> Path:
        import yaml

        from actlab.core.io import atomic_write_text

        return atomic_write_text(path, yaml.safe_dump(self.to_dict(), sort_keys=False))


def _demo_defaults() -> ICAEConfig:
    from actlab.icae.demo import DEMO_DEFAULTS

    return ICAEConfig.from_dict(DEMO_DEFAULTS)


@dataclass
class ICAEDemoConfig:
    """``actlab icae demo``: pretrain briefly, autoencode held-out passages (BLEU-1), QA EM/F1 vs SimpleLLM.
    ``icae`` starts from the demo's settings (``actlab.icae.demo.DEMO_DEFAULTS``)."""

    icae: ICAEConfig = field(default_factory=_demo_defaults)
    quick: bool = field(default=False, metadata={"help": "a very short run (smoke test)"})

    def check_inputs(self) -> None:
        self.icae.check_inputs()


def demo(cfg: ICAEDemoConfig) -> dict:
    """``actlab icae demo`` as a function of its config."""
    from actlab.icae.demo import run_demo

    return run_demo(cfg.icae, quick=cfg.quick)
