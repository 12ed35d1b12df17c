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
from typing import ClassVar

from actlab.core.config import check_device, check_dtype, check_positive, check_range
from actlab.core.errors import ActlabError, unknown_choice
from actlab.core.io import check_report_to, report_to_field

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
#: tna's CE weight when none is given: the default of the original ``train_unified.py`` (its README examples pass
#: 0.002 explicitly; the paper's grids are {0.001, 0.01, 0.05, 0.5} for Llama, {0.1, 0.5, 0.7, 0.9} for Qwen)
DEFAULT_CE_LOSS_WEIGHT = 0.02
#: ``--continue_training`` values: the sequential objectives
CONTINUE_TRAINING = tuple(SEQUENTIAL)


# The method grammar, in one place for training, sweeps, evaluation, analysis and plots:
#   method = [family prefix] objective     ("tok", "ia3-a2t", "prompt-act", "prefix-tokl"; LoRA has no prefix)
def method_parts(method: str) -> tuple[str, str] | None:
    """``"ia3-a2t"`` → ``("ia3", "a2t")``; ``"tok"`` → ``("lora", "tok")``; None for a name outside the grammar
    (``base``, ``icl``, a foreign name in a result file)."""
    if method not in METHODS:
        return None
    for fam, pre in FAMILY_PREFIX.items():
        if pre and method.startswith(pre):
            return fam, method[len(pre) :]
    return "lora", method


def split_method(method: str) -> tuple[str, str]:
    """:func:`method_parts` of a method that must be valid: an unknown name is an error listing :data:`METHODS`."""
    parts = method_parts(method)
    if parts is None:
        raise unknown_choice("training method", method, METHODS)
    return parts


def join_method(family: str, objective: str) -> str:
    return FAMILY_PREFIX[family] + objective


def method_sort_key(method: str) -> tuple[int, int, str]:
    """Families in :data:`FAMILIES` order, then objectives in :data:`OBJECTIVES` + ``tokl`` order; names outside
    the grammar last."""
    parts = method_parts(method)
    if parts is None:
        return (len(FAMILIES), 0, method)
    fam, obj = parts
    return (FAMILIES.index(fam), (OBJECTIVES + EXTRA_OBJECTIVES).index(obj), method)


def check_module_type(kind: str, value: str) -> str:
    """A LoRA/IA3 target: role letters (``qkv``, ``qko``; ``all``), ``all-linear`` or module names (``a,b``)."""
    from actlab.core.adapters import check_target_spec

    return check_target_spec(kind, value)


@dataclass
class IA2TrainConfig:
    """Everything one IA2 training run depends on; saved whole in the run's ``config.json``.

    > Parameters that control the method and data

    training_method (`str`): one of :data:`METHODS`.
    dataset (`str`, defaults to ``"gsm8k"``): a prepared dataset (``actlab data prepare`` + ``make-train``).
    model_id (`str`, defaults to ``"tiny"``): zoo name, local directory or hub id.
    label_type (`str`, *optional*): ``ground_truth`` or ``icl_outputs``; required by tok/a2t/t2a,
        tna defaults to ``icl_outputs`` (the paper's IA2+SFT setting).
    ce_loss_weight (`float`, *optional*): w in ``(1-w)·act + w·CE`` for tna, in [0, 1]; default
        :data:`DEFAULT_CE_LOSS_WEIGHT` (0.02, the original script's default).
    continue_training (`str`, *optional*): ``a2t`` or ``t2a``, the original script's spelling of the sequential
        methods: ``--training_method tok --continue_training a2t`` is ``--training_method a2t`` (ia3-tok → ia3-a2t,
        ...); the training method must be the stage's own objective (tok for a2t, act for t2a) or the sequential
        name itself.
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
    dtype/device (default: bf16 on cuda, fp32 on cpu), checkpoint_every (steps), gradient_checkpointing (the
    model's own, non-reentrant), report_to (experiment trackers), wandb_log (= report_to wandb), wandb_project,
    force.
    """

    training_method: str = field(metadata={"metavar": "METHOD", "help": "one of: " + " ".join(METHODS)})
    dataset: str = field(default="gsm8k", metadata={"help": "prepared dataset (actlab data prepare + make-train)"})
    model_id: str = field(default="tiny", metadata={"help": "zoo name, local dir or hub id"})
    label_type: str | None = field(
        default=None, metadata={"choices": LABEL_TYPES, "help": "required by tok/a2t/t2a; tna defaults to icl_outputs"}
    )
    ce_loss_weight: float | None = field(
        default=None,
        metadata={
            "help": f"w in (1-w)*act + w*CE, in [0, 1], for tna (default {DEFAULT_CE_LOSS_WEIGHT}, the original "
            f"script's)"
        },
    )
    continue_training: str | None = field(
        default=None,
        metadata={
            "choices": CONTINUE_TRAINING,
            "help": "a2t | t2a: continue from the act (a2t) or tok (t2a) adapter; "
            "--training_method tok --continue_training a2t = --training_method a2t",
        },
    )
    num_generated_tokens: int = field(
        default=1, metadata={"help": "T: response tokens generated by the teacher / covered by the losses"}
    )
    num_train_examples: int = field(
        default=100, metadata={"help": "N: selects data/{dataset}/train/{N}_{run_idx}.json"}
    )
    run_idx: int = field(default=0, metadata={"help": "run index (data split, seed)"})
    max_icl_demos: int | None = field(
        default=None,
        metadata={"help": "use at most this many demos per teacher prompt (default: all in the run file)"},
    )
    # adapter
    lora_type: str = field(default="qko", metadata={"help": "LoRA targets, letters of q k v o g u d (or all)"})
    lora_r: int = field(default=8, metadata={"help": "LoRA rank"})
    lora_alpha: int = field(default=8, metadata={"help": "LoRA alpha"})
    lora_dropout: float = field(default=0.0, metadata={"help": "LoRA dropout, in [0, 1)"})
    ia3_type: str = field(
        default="qko", metadata={"help": "(IA)3 targets = feedforward modules, letters of q k v o g u d"}
    )
    num_virtual_tokens: int = field(default=20, metadata={"help": "prompt/prefix tuning tokens"})
    # activations
    act_site: str = field(
        default="attn_output",
        metadata={"help": "aligned site: attn_output (the paper's), block_output, mlp_output or a module path"},
    )
    act_layers: list[int] | None = field(default=None, metadata={"help": "layers to align (default all)"})
    # training
    lr: float = field(default=1e-4, metadata={"help": "learning rate (finite, > 0)"})
    batch_size: int = field(default=4, metadata={"help": "effective batch"})
    micro_batch_size: int | None = field(
        default=None, metadata={"help": "examples per forward (default = batch_size)"}
    )
    num_epochs: int = field(default=50, metadata={"help": "max epochs"})
    patience: int = field(default=5, metadata={"help": "dev evaluations without improvement before early stopping"})
    dev_eval_steps: int = field(default=2, metadata={"help": "dev loss every this many steps"})
    max_steps: int | None = field(default=None, metadata={"help": "stop after this many optimizer steps (smoke runs)"})
    seed: int | None = field(default=None, metadata={"help": "seed (default: run_idx)"})
    kl_topk: int = field(default=64, metadata={"help": "teacher top-k log-probs kept for tokl"})
    target_batch_size: int = field(
        default=8, metadata={"help": "teacher prompts per generate batch when building targets"}
    )
    # io
    output_dir: str = field(default="outputs", metadata={"help": "runs go to {output_dir}/{method}/{dataset}/"})
    data_dir: str = field(default="data", metadata={"help": "prepared data root"})
    cache_dir: str | None = field(default=None, metadata={"help": "target cache (default $ACTLAB_HOME/ia2_targets)"})
    dtype: str | None = field(default=None, metadata={"help": "model dtype (default bf16 on cuda, fp32 on cpu)"})
    device: str | None = field(default=None, metadata={"help": "cpu | cuda | cuda:N | mps (default: best available)"})
    checkpoint_every: int = field(
        default=10, metadata={"help": "checkpoint every this many steps (resume after a kill)"}
    )
    gradient_checkpointing: bool = field(
        default=False,
        metadata={
            "help": "recompute the model's activations in the backward pass (less memory, same gradients; not for "
            "prefix methods)"
        },
    )
    wandb_log: bool = field(default=False, metadata={"help": "also log to Weights & Biases"})
    wandb_project: str = field(default="ia2", metadata={"help": "Weights & Biases project"})
    report_to: tuple[str, ...] = report_to_field()
    force: bool = field(default=False, metadata={"help": "retrain a complete run"})
    # derived (filled in __post_init__, kept in config.json so evaluation can filter on them)
    family: str = field(default="", init=True, metadata={"cli": False})
    objective: str = field(default="", init=True, metadata={"cli": False})
    overwrite: bool = field(default=False, metadata={"help": "redo a finished run whose recorded config differs"})

    #: keys of a run's config.json that are not options (``--config_path run/config.json`` skips them)
    CONFIG_FILE_IGNORE: ClassVar[tuple[str, ...]] = (
        "run_name",
        "run_dir",
        "parent_dir",
        "stage_objective",
        "target_cache",
        "adapter_modules",
        "world_size",
    )

    def __post_init__(self) -> None:
        self.report_to = tuple(check_report_to(self.report_to)) or ("none",)
        if self.continue_training is not None:
            self._resolve_continue_training()
        self.family, self.objective = split_method(self.training_method)
        if self.label_type is not None and self.label_type not in LABEL_TYPES:
            raise unknown_choice("label_type", self.label_type, LABEL_TYPES)
        if self.objective in NEEDS_LABELS and self.label_type is None:
            raise ActlabError(
                f"--training_method {self.training_method} needs --label_type ({' or '.join(LABEL_TYPES)})"
            )
        if self.objective == "tna":
            if self.ce_loss_weight is None:
                self.ce_loss_weight = DEFAULT_CE_LOSS_WEIGHT
            if self.label_type is None:
                self.label_type = "icl_outputs"
        if self.objective in ("act", "tokl") and self.label_type is not None:
            self.label_type = None  # the name carries no label type; the loss ignores labels
        if self.objective != "tna":
            self.ce_loss_weight = None
        if self.ce_loss_weight is not None:
            check_range("ce_loss_weight", self.ce_loss_weight, 0.0, 1.0, hi_open=False)
        if self.family == "lora":
            check_module_type("--lora_type", self.lora_type)
            check_positive("lora_r", self.lora_r, integer=True)
            check_positive("lora_alpha", self.lora_alpha, integer=True)
            check_range("lora_dropout", self.lora_dropout, 0.0, 1.0)
        if self.family == "ia3":
            check_module_type("--ia3_type", self.ia3_type)
        if self.family in ("prompt", "prefix"):
            check_positive("num_virtual_tokens", self.num_virtual_tokens, integer=True)
        for name in (
            "num_generated_tokens",
            "num_train_examples",
            "batch_size",
            "num_epochs",
            "patience",
            "dev_eval_steps",
            "kl_topk",
            "target_batch_size",
            "checkpoint_every",
        ):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise ActlabError(f"--{name} must be a positive integer, got {v!r}")
        check_positive("run_idx", self.run_idx, integer=True, allow_zero=True)
        for name in ("micro_batch_size", "max_steps"):
            if getattr(self, name) is not None:
                check_positive(name, getattr(self, name), integer=True)
        if self.max_icl_demos is not None:
            check_positive("max_icl_demos", self.max_icl_demos, integer=True, allow_zero=True)
        if self.seed is not None:
            check_positive("seed", self.seed, integer=True, allow_zero=True)
        check_positive("lr", self.lr)
        check_device("device", self.device)
        check_dtype("dtype", self.dtype)
        if self.gradient_checkpointing and self.family == "prefix":
            raise ActlabError(
                f"--gradient_checkpointing does not apply to --training_method {self.training_method}: "
                "prefix tuning passes its virtual tokens as a KV cache, which checkpointed layers drop; "
                "it works with lora, ia3 and prompt methods"
            )
        if self.act_layers is not None:
            self.act_layers = [int(x) for x in self.act_layers]
        if self.act_site not in ("attn_output", "block_output", "mlp_output") and "." not in self.act_site:
            raise unknown_choice(
                "act_site",
                self.act_site,
                ("attn_output", "block_output", "mlp_output"),
                hint="or a module path such as model.layers.{layer}.mlp.down_proj",
            )

    def _resolve_continue_training(self) -> None:
        """``--continue_training a2t|t2a`` → the sequential method name (then the field is cleared: the method name
        alone says it, so a run's config.json reads back the same)."""
        seq = self.continue_training
        if seq not in CONTINUE_TRAINING:
            raise unknown_choice("continue_training", seq, CONTINUE_TRAINING)
        fam, obj = split_method(self.training_method)
        if obj not in (seq, SEQUENTIAL[seq][1]):
            raise ActlabError(
                f"--continue_training {seq} trains a {SEQUENTIAL[seq][1]} stage on the "
                f"{SEQUENTIAL[seq][0]} adapter; --training_method {self.training_method} does not fit "
                f"(use {join_method(fam, SEQUENTIAL[seq][1])} or {join_method(fam, seq)})"
            )
        self.training_method = join_method(fam, seq)
        self.continue_training = None

    def check_inputs(self) -> None:
        """The directories the run reads and writes, before anything is written."""
        from actlab.core.config import check_model, check_out_dir

        check_model("model_id", self.model_id)
        check_report_to(self.report_to, wandb=self.wandb_log, installed=True)
        check_out_dir("output_dir", self.output_dir)
        check_out_dir("data_dir", self.data_dir)
        check_out_dir("cache_dir", self.cache_dir)
        from actlab.core.config import check_json_doc
        from actlab.data.make_train import train_path
        from actlab.data.prepare import pool_path

        check_json_doc(
            f"dataset {self.dataset!r} pool",
            pool_path(self.dataset, self.data_dir),
            ("train_examples", "val_examples"),
        )
        check_json_doc(
            "run file",
            train_path(self.dataset, self.num_train_examples, self.run_idx, self.data_dir),
            ("train", "dev"),
        )

    def check_given(self, given) -> None:
        """Options set by the user (CLI flags, file values that differ from the default) that the method ignores."""
        applies = {
            "lora": ("lora_type", "lora_r", "lora_alpha", "lora_dropout"),
            "ia3": ("ia3_type",),
            "prompt": ("num_virtual_tokens",),
            "prefix": ("num_virtual_tokens",),
        }
        for fam, names in applies.items():
            if fam == self.family or (fam in ("prompt", "prefix") and self.family in ("prompt", "prefix")):
                continue
            bad = [n for n in names if n in given]
            if bad:
                users = sorted(
                    m
                    for m in METHODS
                    if split_method(m)[0] in ([fam] if fam in ("lora", "ia3") else ["prompt", "prefix"])
                )[:5]
                raise ActlabError(
                    f"--{bad[0]} {getattr(self, bad[0])!r} does not apply to --training_method "
                    f"{self.training_method} ({self.family} adapter); it is for {fam} methods "
                    f"({', '.join(users)}, ...)"
                )
        if self.objective != "tna" and "ce_loss_weight" in given:
            raise ActlabError(
                f"--ce_loss_weight does not apply to --training_method "
                f"{self.training_method}; it is the CE weight of tna methods (tna, ia3-tna, ...)"
            )

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
        kw.update(training_method=pm, family="", objective="", gradient_checkpointing=False)  # not in the fingerprint
        return IA2TrainConfig(**kw)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
