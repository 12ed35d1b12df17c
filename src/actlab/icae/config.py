"""ICAE configuration: one dataclass, saved as the seed's YAML files under ``configs/icae/``.

Every ``actlab icae`` verb reads ``--config_path file.yaml``. A key that is not a field, or a value of the wrong
type or outside its choices, is an :class:`~actlab.core.errors.ActlabError` (one line, valid choices named).

>>> cfg = ICAEConfig(fixed_mem_size=32, mean_compression_rate=4)
>>> cfg.fixed_mem_size
32
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from actlab.core.errors import ActlabError, check_choice

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
    lora_target_modules: list[str] | str | None = field(
        default=None, metadata={"help": "LoRA targets: a list of module names, 'all-linear', or None (PEFT default)"})
    checkpoint_path: str | None = field(default=None, metadata={"help": "ICAE weights to load"})
    dtype: str = field(default="auto", metadata={"help": "auto | float32 | bfloat16 (never fp16)"})
    device: str | None = field(default=None, metadata={"help": "cuda | cpu | mps (default: best available)"})
    attn_implementation: str = field(default="sdpa", metadata={"help": "sdpa | eager (never FA2 with EPL)"})
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
    demo_finetune_steps: int = field(default=300, metadata={"help": "demo: QA fine-tuning steps after pretraining"})
    # inference
    batch_size: int = field(default=8, metadata={"help": "inference batch size"})
    max_new_tokens: int = field(default=128, metadata={"help": "generation length cap"})
    predictions_dir: str | None = field(default=None, metadata={"help": "default: <output_dir>/predictions"})
    threads: int = field(default=0, metadata={"help": "torch CPU threads (0: leave as is)"})
    wandb: bool = field(default=False, metadata={"help": "log to Weights & Biases"})
    overwrite: bool = field(default=False, metadata={"help": "redo a finished run whose recorded config differs"})

    def __post_init__(self) -> None:
        check_choice("model_type", self.model_type, MODEL_TYPES)
        check_choice("task", self.task, TASKS)
        check_choice("data_source", self.data_source, DATA_SOURCES)
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
        if not (t is None or t == "all-linear" or (isinstance(t, list) and t and all(isinstance(x, str) for x in t))):
            raise ActlabError(f"lora_target_modules must be a list of module names, 'all-linear' or null, got {t!r}")
        if not 0.0 <= float(self.lm_ratio) <= 1.0:
            raise ActlabError(f"lm_ratio must lie in [0, 1], got {self.lm_ratio!r}")
        if self.dtype in ("float16", "fp16"):
            raise ActlabError("dtype float16 is not supported for ICAE (the reference code insists on bf16); "
                              "valid: auto, float32, bfloat16")
        if self.use_position_identifiers and self.attn_implementation == "flash_attention_2":
            raise ActlabError("use_position_identifiers needs attn_implementation sdpa or eager (flash_attention_2 "
                              "reads non-monotonic position ids as packed sequences)")

    # ------------------------------------------------------------------------------------------------------ io
    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "config") -> ICAEConfig:
        fields = {f.name: f for f in dataclasses.fields(cls)}
        for k in d:
            if k not in fields:
                close = difflib.get_close_matches(str(k), fields, n=1)
                did = f" (did you mean {close[0]!r}?)" if close else ""
                raise ActlabError(f"unknown key {k!r} in {source}{did}; valid keys: {', '.join(sorted(fields))}")
        out = {}
        for k, v in d.items():
            typ = str(fields[k].type)
            if v is not None:
                if typ.startswith("bool") and not isinstance(v, bool):
                    raise ActlabError(f"{k} must be true or false in {source}, got {v!r}")
                if typ.startswith("int") and (isinstance(v, bool) or not isinstance(v, int)):
                    raise ActlabError(f"{k} must be an integer in {source}, got {v!r}")
                if typ.startswith("float") and (isinstance(v, bool) or not isinstance(v, (int, float))):
                    raise ActlabError(f"{k} must be a number in {source}, got {v!r}")
                if typ.startswith("str") and not isinstance(v, str):
                    raise ActlabError(f"{k} must be a string in {source}, got {v!r}")
            out[k] = v
        return cls(**out)

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides: Any) -> ICAEConfig:
        import yaml

        path = Path(path)
        if not path.exists():
            raise ActlabError(f"config file not found: {path}")
        try:
            d = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as e:
            raise ActlabError(f"config {path} is not valid YAML ({str(e).splitlines()[0]})") from None
        if not isinstance(d, dict):
            raise ActlabError(f"config {path} must be a mapping of keys to values, got {type(d).__name__}")
        d.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_dict(d, source=str(path))

    def to_yaml(self, path: str | Path) -> Path:
        import yaml

        from actlab.core.io import atomic_write_text

        return atomic_write_text(path, yaml.safe_dump(self.to_dict(), sort_keys=False))
