"""IA2 training config: one dataclass, validated in ``__post_init__`` (bad values → :class:`ActlabError`).

Method names are ``[family-]objective``:

* family: none (LoRA), ``ia3-``, ``prompt-`` (prompt tuning), ``prefix-`` (prefix tuning);
* objective: ``tok`` (SFT, CE on labels), ``act`` (IA2, MSE to the ICL activations), ``tna`` (IA2 + SFT,
  ``(1-w)·act + w·CE``), ``a2t`` (the ``act`` adapter, then ``tok``), ``t2a`` (the ``tok`` adapter, then ``act``),
  and the extra ``tokl`` (SFT on the teacher's soft labels, paper Table 4).

That gives the seed's 20 names (``tok act tna a2t t2a`` × 4 families) plus ``tokl`` (and ``ia3-tokl`` ...).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from actlab.core.errors import ActlabError, unknown_choice

OBJECTIVES = ("tok", "act", "tna", "a2t", "t2a")
EXTRA_OBJECTIVES = ("tokl",)
FAMILY_PREFIX = {"lora": "", "ia3": "ia3-", "prompt": "prompt-", "prefix": "prefix-"}
FAMILIES = tuple(FAMILY_PREFIX)
#: the seed's 20 method names
SEED_METHODS = tuple(f"{p}{o}" for p in FAMILY_PREFIX.values() for o in OBJECTIVES)
#: every accepted method name (seed's 20 + tokl per family)
METHODS = SEED_METHODS + tuple(f"{p}{o}" for p in FAMILY_PREFIX.values() for o in EXTRA_OBJECTIVES)
LABEL_TYPES = ("ground_truth", "icl_outputs")
#: objectives whose loss needs the ICL activations / a CE label / a parent adapter
NEEDS_ACTS = ("act", "tna", "t2a")
NEEDS_LABELS = ("tok", "a2t", "t2a")  # t2a: its parent is a tok adapter, whose name carries the label type
SEQUENTIAL = {"a2t": ("act", "tok"), "t2a": ("tok", "act")}  # objective -> (parent objective, own stage loss)


def split_method(method: str) -> tuple[str, str]:
    """``"ia3-a2t"`` → ``("ia3", "a2t")``; ``"tok"`` → ``("lora", "tok")``. Unknown names are an error."""
    if method not in METHODS:
        raise unknown_choice("training method", method, METHODS)
    for fam, pre in FAMILY_PREFIX.items():
        if pre and method.startswith(pre):
            return fam, method[len(pre):]
    return "lora", method


def join_method(family: str, objective: str) -> str:
    return FAMILY_PREFIX[family] + objective


def check_module_type(kind: str, value: str) -> str:
    """A LoRA/IA3 type like ``qkv``, ``qko``, ``qkvo`` (letters of q k v o g u d; ``all`` = qkvogud)."""
    from actlab.core.adapters import LETTERS

    if value == "all":
        return value
    bad = [c for c in value if c not in LETTERS]
    if not value or bad or len(set(value)) != len(value):
        raise ActlabError(f"bad {kind} {value!r}; use letters of {''.join(LETTERS)} "
                          f"({', '.join(f'{k}={v}' for k, v in LETTERS.items())}), e.g. qkv, qko, qkvo, or all")
    return value


@dataclass
class IA2TrainConfig:
    """Everything one IA2 training run depends on; saved whole in the run's ``config.json``.

    > Parameters that control the method and data

    training_method (`str`): one of :data:`METHODS`.
    dataset (`str`, defaults to ``"gsm8k"``): a prepared dataset (``actlab data prepare`` + ``make-train``).
    model_id (`str`, defaults to ``"tiny"``): zoo name, local directory or hub id.
    label_type (`str`, *optional*): ``ground_truth`` or ``icl_outputs``; required by tok/a2t/t2a,
        tna defaults to ``icl_outputs`` (the paper's IA2+SFT setting).
    ce_loss_weight (`float`, *optional*): w in ``(1-w)·act + w·CE``; required by tna, in [0, 1].
    num_generated_tokens (`int`, defaults to 1): T, the response tokens the teacher generates / the losses cover.
    num_train_examples (`int`, defaults to 100): N, selects ``data/{dataset}/train/{N}_{run_idx}.json``.
    run_idx (`int`, defaults to 0): run index (data split and seed).
    max_icl_demos (`int`, *optional*): use at most this many of each example's demos for the teacher prompt.

    > Parameters that control the adapter

    lora_type / lora_r / lora_alpha / lora_dropout: LoRA targets (letters of qkvogud), rank, alpha, dropout.
    ia3_type (`str`, defaults to ``"qko"``): (IA)³ targets = feedforward modules, as the official code.
    num_virtual_tokens (`int`, defaults to 20): prompt/prefix tuning length.

    > Parameters that control the activations

    act_site (`str`, defaults to ``"attn_output"``): ``attn_output`` (the paper's self-attention output),
        ``block_output``, ``mlp_output`` or a raw module path with ``{layer}``.
    act_layers (`list[int]`, *optional*): layers to align (None = all).

    > Parameters that control training

    lr (`float`, defaults to 1e-4), batch_size (effective batch, 4), micro_batch_size (examples per forward,
    default = batch_size), num_epochs (50), patience (5 dev evaluations), dev_eval_steps (2), max_steps
    (*optional* cap, for smoke runs), seed (*optional*, default run_idx), kl_topk (teacher top-k kept for tokl).

    > Parameters that control I/O

    output_dir ("outputs"), data_dir ("data"), cache_dir (target cache; default ``$ACTLAB_HOME/ia2_targets``),
    dtype/device (default: bf16 on cuda, fp32 on cpu), checkpoint_every (steps), wandb_log, wandb_project, force.
    """

    training_method: str
    dataset: str = "gsm8k"
    model_id: str = "tiny"
    label_type: str | None = None
    ce_loss_weight: float | None = None
    num_generated_tokens: int = 1
    num_train_examples: int = 100
    run_idx: int = 0
    max_icl_demos: int | None = None
    # adapter
    lora_type: str = "qko"
    lora_r: int = 8
    lora_alpha: int = 8
    lora_dropout: float = 0.0
    ia3_type: str = "qko"
    num_virtual_tokens: int = 20
    # activations
    act_site: str = "attn_output"
    act_layers: list[int] | None = None
    # training
    lr: float = 1e-4
    batch_size: int = 4
    micro_batch_size: int | None = None
    num_epochs: int = 50
    patience: int = 5
    dev_eval_steps: int = 2
    max_steps: int | None = None
    seed: int | None = None
    kl_topk: int = 64
    target_batch_size: int = 8
    # io
    output_dir: str = "outputs"
    data_dir: str = "data"
    cache_dir: str | None = None
    dtype: str | None = None
    device: str | None = None
    checkpoint_every: int = 10
    wandb_log: bool = False
    wandb_project: str = "ia2"
    force: bool = False
    # derived (filled in __post_init__, kept in config.json so evaluation can filter on them)
    family: str = field(default="", init=True)
    objective: str = field(default="", init=True)
    overwrite: bool = field(default=False, metadata={"help": "redo a finished run whose recorded config differs"})

    def __post_init__(self) -> None:
        self.family, self.objective = split_method(self.training_method)
        if self.label_type is not None and self.label_type not in LABEL_TYPES:
            raise unknown_choice("label_type", self.label_type, LABEL_TYPES)
        if self.objective in NEEDS_LABELS and self.label_type is None:
            raise ActlabError(f"--training_method {self.training_method} needs --label_type "
                              f"({' or '.join(LABEL_TYPES)})")
        if self.objective == "tna":
            if self.ce_loss_weight is None:
                raise ActlabError(f"--training_method {self.training_method} needs --ce_loss_weight "
                                  "(a weight in [0, 1], e.g. 0.002)")
            if self.label_type is None:
                self.label_type = "icl_outputs"
        if self.objective in ("act", "tokl") and self.label_type is not None:
            self.label_type = None  # the name carries no label type; the loss ignores labels
        if self.objective != "tna":
            self.ce_loss_weight = None
        if self.ce_loss_weight is not None and not 0.0 <= float(self.ce_loss_weight) <= 1.0:
            raise ActlabError(f"--ce_loss_weight must be in [0, 1], got {self.ce_loss_weight}")
        if self.family == "lora":
            check_module_type("--lora_type", self.lora_type)
            if self.lora_r <= 0 or self.lora_alpha <= 0:
                raise ActlabError(f"--lora_r and --lora_alpha must be positive, got {self.lora_r}, {self.lora_alpha}")
            if not 0.0 <= self.lora_dropout < 1.0:
                raise ActlabError(f"--lora_dropout must be in [0, 1), got {self.lora_dropout}")
        if self.family == "ia3":
            check_module_type("--ia3_type", self.ia3_type)
        if self.family in ("prompt", "prefix") and self.num_virtual_tokens <= 0:
            raise ActlabError(f"--num_virtual_tokens must be a positive integer, got {self.num_virtual_tokens}")
        for name in ("num_generated_tokens", "num_train_examples", "batch_size", "num_epochs", "patience",
                     "dev_eval_steps", "kl_topk", "target_batch_size", "checkpoint_every"):
            v = getattr(self, name)
            if not isinstance(v, int) or v <= 0:
                raise ActlabError(f"--{name} must be a positive integer, got {v!r}")
        if self.run_idx < 0:
            raise ActlabError(f"--run_idx must be >= 0, got {self.run_idx}")
        if self.micro_batch_size is not None and self.micro_batch_size <= 0:
            raise ActlabError(f"--micro_batch_size must be a positive integer, got {self.micro_batch_size}")
        if self.max_steps is not None and self.max_steps <= 0:
            raise ActlabError(f"--max_steps must be a positive integer, got {self.max_steps}")
        if self.max_icl_demos is not None and self.max_icl_demos < 0:
            raise ActlabError(f"--max_icl_demos must be >= 0, got {self.max_icl_demos}")
        if not self.lr > 0:
            raise ActlabError(f"--lr must be positive, got {self.lr}")
        if self.act_layers is not None:
            self.act_layers = [int(x) for x in self.act_layers]
        if self.act_site not in ("attn_output", "block_output", "mlp_output") and "." not in self.act_site:
            raise unknown_choice("act_site", self.act_site, ("attn_output", "block_output", "mlp_output"),
                                 hint="or a module path such as model.layers.{layer}.mlp.down_proj")

    # -- derived ---------------------------------------------------------------------------------------------------
    @property
    def uses_acts(self) -> bool:
        return self.objective in NEEDS_ACTS

    @property
    def parent_method(self) -> str | None:
        """The method whose adapter a2t/t2a continue from (same family), else None."""
        if self.objective in SEQUENTIAL:
            return join_method(self.family, SEQUENTIAL[self.objective][0])
        return None

    @property
    def stage_objective(self) -> str:
        """The loss this run optimises: ``a2t`` → ``tok``, ``t2a`` → ``act``, else the objective itself."""
        return SEQUENTIAL[self.objective][1] if self.objective in SEQUENTIAL else self.objective

    def parent_config(self) -> IA2TrainConfig | None:
        pm = self.parent_method
        if pm is None:
            return None
        kw = dataclasses.asdict(self)
        kw.update(training_method=pm, family="", objective="")
        return IA2TrainConfig(**kw)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
