"""``actlab iav evaluate`` as a Python function of one config dataclass (the rest of the IAV verbs take theirs
directly: :func:`actlab.iav.cache.build_cache`, :func:`actlab.iav.trainer.train`, :func:`generate`,
:func:`actlab.iav.config.demo`)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from actlab.core.config import check_positive
from actlab.core.errors import ActlabError
from actlab.iav.config import IAVGenerateConfig, TrainConfig
from actlab.iav.evaluate import EvalConfig

log = logging.getLogger(__name__)

#: help for EvalConfig's fields (the dataclass lives in actlab.iav.evaluate)
EVAL_META = {
    "heads": {"help": "IAV heads dir (save_pretrained) or a train run dir"},
    "heads_frozen_base": {"help": "a second IAV run trained with --freeze_base_head"},
    "model_name_or_path": {"help": "backbone (default: the one the heads name)"},
    "arm_model": {"help": "GenARM autoregressive reward model dir"},
    "dpo_model": {"help": "DPO model dir (e.g. from `actlab iav demo`)"},
    "prompt_set": {
        "aliases": ["--dataset"],  # generate_iav.py's spelling
        "help": "syn_hh, hh_rlhf, alpaca_eval or arena_hard",
    },
    "prompts_file": {"help": "local prompts (JSON/JSONL)"},
    "alphas": {"help": "α values of the sweep"},
    "reward_model": {"help": "programmatic (syn_hh) or an HF sequence-classification reward model"},
}


@dataclass
class IAVEvaluateConfig:
    """``actlab iav evaluate``: IAV at several α vs the base model, GenARM-style decoding and a DPO model."""

    CLI_META: ClassVar[dict] = EVAL_META

    eval: EvalConfig = field(default_factory=EvalConfig)
    train_baselines: bool = field(
        default=False,
        metadata={
            "help": "train --arm_model / --dpo_model dirs that do not exist yet with TRL (CPO-as-ARM, DPOTrainer)"
        },
    )
    baseline_dataset: str = field(default="syn_hh", metadata={"help": "preference data for --train_baselines"})
    baseline_samples: int = field(default=1024, metadata={"help": "pairs for --train_baselines"})
    baseline_steps: int = field(default=60, metadata={"help": "steps for --train_baselines"})

    def __post_init__(self) -> None:
        check_positive("baseline_samples", self.baseline_samples, integer=True)
        check_positive("baseline_steps", self.baseline_steps, integer=True)

    def check_inputs(self) -> None:
        """The heads and baseline directories (files are checked here, not when the config is made)."""
        p = Path(self.eval.heads)
        if not p.exists():
            raise ActlabError(f"--heads {p} does not exist (an IAV heads dir or train run dir)")
        todo = [
            (k, d)
            for k, d in (("arm", self.eval.arm_model), ("dpo", self.eval.dpo_model))
            if d and not Path(d).exists()
        ]
        if todo and not self.train_baselines:
            raise ActlabError(f"--{todo[0][0]}_model {todo[0][1]} does not exist; pass --train_baselines to train it")


def _backbone_of(heads: str) -> str:
    from actlab.core.io import read_json
    from actlab.iav.evaluate import _heads_path
    from actlab.iav.model import CONFIG_FILE

    p = _heads_path(heads) / CONFIG_FILE
    bb = read_json(p).get("backbone") if p.exists() else None
    if not bb:
        raise ActlabError(f"cannot tell the backbone of {heads}; pass --model_name_or_path")
    return bb


def evaluate(cfg: IAVEvaluateConfig) -> dict:
    """Train the missing baselines (with ``train_baselines``), then :func:`actlab.iav.evaluate.evaluate`."""
    from actlab.iav.evaluate import evaluate as _evaluate

    ev = cfg.eval
    todo = [(k, d) for k, d in (("arm", ev.arm_model), ("dpo", ev.dpo_model)) if d and not Path(d).exists()]
    if todo:
        from actlab.iav.baselines import train_arm, train_dpo
        from actlab.iav.data import load_rows

        backbone = ev.model_name_or_path or _backbone_of(ev.heads)
        rows = load_rows(cfg.baseline_dataset, "train", cfg.baseline_samples, ev.seed)
        for kind, d in todo:
            fn = train_arm if kind == "arm" else train_dpo
            log.info(f"training the {kind} baseline with TRL into {d}")
            fn(backbone, rows, d, max_steps=cfg.baseline_steps, batch_size=16, learning_rate=1e-4, seed=ev.seed)
    return _evaluate(ev)


def load_heads(heads: str, backbone: str | None):
    from actlab.iav.model import HEADS_FILE, IAVModel

    h = Path(heads)
    if h.is_dir() and not (h / HEADS_FILE).exists() and (h / "heads" / HEADS_FILE).exists():
        h = h / "heads"
    return IAVModel.from_pretrained(h, backbone=backbone)


def generate(cfg: IAVGenerateConfig) -> list[dict]:
    """``[{"alpha", "prompt", "response"}]`` for every α × prompt; also written to ``cfg.output_file`` if set."""
    import dataclasses

    from actlab.core.io import atomic_write_json

    if cfg.prompts_file:
        from actlab.iav.evaluate import load_prompts

        prompts = [p["prompt"] for p in load_prompts("syn_hh", 10**9, cfg.prompts_file)]
    else:
        from actlab.iav.evaluate import HH_TEMPLATE

        prompts = [p if "Human:" in p else HH_TEMPLATE.format(q=p) for p in cfg.prompt]
    iav = load_heads(cfg.heads, cfg.model_name_or_path)
    rows = []
    for a in cfg.alpha:
        outs = iav.generate(prompts, alpha=a, **dataclasses.asdict(cfg.generation))
        rows += [{"alpha": a, "prompt": p, "response": o} for p, o in zip(prompts, outs, strict=True)]
    if cfg.output_file:
        atomic_write_json(cfg.output_file, rows)
    return rows


# ------------------------------------------------------------------------------------------------------ launch
@dataclass
class IAVLaunchConfig:
    """``actlab iav launch``: what the seed's ``train.sh`` does. It counts the visible GPUs (``CUDA_VISIBLE_DEVICES``
    respected) and, with two or more, runs ``accelerate launch --multi_gpu --num_processes N -m actlab.cli.main iav
    train ...``; with one GPU or none it trains in this process. Every ``iav train`` flag is accepted."""

    train: TrainConfig = field(default_factory=TrainConfig)
    num_processes: int | None = field(
        default=None,
        metadata={"help": "processes (default: the number of visible GPUs; 0 or 1 GPU = one process, no launcher)"},
    )
    print_only: bool = field(default=False, metadata={"help": "print the command it would run and exit"})

    def __post_init__(self) -> None:
        if self.num_processes is not None:
            check_positive("num_processes", self.num_processes, integer=True)

    def check_inputs(self) -> None:
        self.train.check_inputs()


def visible_gpus() -> int:
    try:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:  # noqa: BLE001 - no usable CUDA = no GPU
        return 0


def train_argv(cfg: TrainConfig) -> list[str]:
    """The ``iav train`` flags that give ``cfg`` back (only the values that differ from the defaults)."""
    from actlab.core.config import schema

    s = schema(TrainConfig)
    out: list[str] = []
    for leaf in s.leaves.values():
        obj = cfg
        for p in leaf.path:
            obj = getattr(obj, p)
        v = getattr(obj, leaf.name)
        if v == s.default(leaf):
            continue
        out += [f"--{leaf.name}", ("true" if v else "false") if isinstance(v, bool) else str(v)]
    return out


def launch_command(cfg: IAVLaunchConfig, n_gpus: int | None = None) -> list[str] | None:
    """The ``accelerate launch`` command line for ``cfg``, or ``None`` when one process is enough (it then trains
    in-process). ``n_gpus``: the visible GPUs (default: counted here)."""
    import sys

    n = cfg.num_processes if cfg.num_processes is not None else (visible_gpus() if n_gpus is None else n_gpus)
    if n <= 1:
        return None
    return [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        str(n),
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",  # --bf16: the trainer casts the backbone
        "-m",
        "actlab.cli.main",
        "iav",
        "train",
        *train_argv(cfg.train),
    ]


def launch_line(cfg: IAVLaunchConfig) -> str:
    """What :func:`launch` runs, as one line: the ``accelerate launch`` command, or ``one process (visible GPUs:
    N): actlab iav train ...``."""
    import shlex

    cmd = launch_command(cfg)
    if cmd is None:
        return f"one process (visible GPUs: {visible_gpus()}): actlab iav train {shlex.join(train_argv(cfg.train))}"
    return shlex.join(cmd)


def launch(cfg: IAVLaunchConfig) -> int:
    """Run the training as ``train.sh`` would: through ``accelerate launch`` on several GPUs, else in-process;
    returns the exit code. The command is logged at info; with ``print_only`` nothing runs (:func:`launch_line`
    gives the command)."""
    import subprocess

    cmd = launch_command(cfg)
    log.info(launch_line(cfg))
    if cfg.print_only:
        return 0
    if cmd is None:
        from actlab.iav.trainer import train

        train(cfg.train)
        return 0
    return subprocess.run(cmd, check=False).returncode
