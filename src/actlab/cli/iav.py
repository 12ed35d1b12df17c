"""``actlab iav cache | train | generate | evaluate | demo`` — Inherent Alignment Vectors (dual-head alignment).

    actlab iav cache    --ref_model tiny --dataset syn_hh --num_samples 512 --seq_length 128 --cache_file c.safetensors
    actlab iav train    --model_name_or_path tiny --dataset syn_hh --output_dir runs/iav [--cache_file c.safetensors]
    actlab iav generate --heads runs/iav --prompt "Can you tell me how to bake bread?" --alpha 1.5
    actlab iav evaluate --heads runs/iav --arm_model runs/arm --dpo_model runs/dpo --alphas 0 0.5 1 1.5 2
    actlab iav demo     [--model_id tiny]

Flags keep the public IAV code's names (``train_main.py``, ``cache.sh``). ``--config_path x.yaml`` sets any train
flag; explicit flags override it. Multi-GPU: ``accelerate launch -m actlab.cli.main iav train ...``.
"""

from __future__ import annotations

import argparse

from actlab.cli.common import family_parser, positive_int

TRAIN_FLAGS = {
    # flag: (type, help); defaults come from TrainConfig / LossConfig
    "model_name_or_path": (str, "backbone: zoo name, local dir or hub id (default tiny)"),
    "output_dir": (str, "run directory (default runs/iav)"),
    "dataset": (str, "syn_hh (offline), hh_rlhf (Dahoas/full-hh-rlhf) or a local file (default syn_hh)"),
    "num_train_samples": (positive_int, "training pairs (default 512)"),
    "num_val_samples": (int, "validation pairs, 0 = none (default 64)"),
    "cache_file": (str, "reference cache from `actlab iav cache` (default: the frozen reference head)"),
    "num_epochs": (positive_int, "epochs (default 1)"),
    "max_steps": (int, "stop after this many optimizer steps; 0 = epochs (default 0)"),
    "batch_size": (positive_int, "pairs per device per micro-step (default 8)"),
    "grad_accum": (positive_int, "gradient accumulation steps (default 1)"),
    "learning_rate": (float, "AdamW learning rate (default 5e-3)"),
    "weight_decay": (float, "AdamW weight decay (default 0.01)"),
    "warmup_ratio": (float, "linear warmup fraction (default 0.1)"),
    "max_grad_norm": (float, "gradient clipping (default 1.0)"),
    "seq_length": (positive_int, "max tokens per sequence (default 128)"),
    "max_prompt_length": (positive_int, "max prompt tokens, kept from the end (default 64)"),
    "save_steps": (positive_int, "checkpoint every N steps (default 50)"),
    "eval_steps": (positive_int, "validate every N steps (default 25)"),
    "seed": (int, "seed (default 0)"),
    "device": (str, "cpu / cuda (default: accelerate's choice)"),
}
LOSS_FLAGS = {
    "loss": (str, "corrected (default) or faithful (the public code's loss)"),
    "beta": (float, "preference temperature β (default 0.1)"),
    "lambda_kl": (float, "KL weight (default 0.1)"),
    "lambda_l2": (float, "L2 weight on a_t (default 0.01)"),
    "train_alpha": (float, "α used during training (default 1.0)"),
}


def _add_flags(p, flags: dict) -> None:
    for name, (typ, help) in flags.items():
        p.add_argument(f"--{name}", type=typ, default=None, help=help)


def _floats(s: str) -> float:
    try:
        return float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {s!r}") from None


def register(sub) -> None:
    verbs = family_parser(sub, "iav", "IAV: dual-head alignment vectors (cache, train, generate, evaluate, demo)")

    p = verbs.add_parser("cache", help="cache a reference model's outputs over chosen + rejected (safetensors)",
                         description="Run a reference model (may differ from the backbone; same tokenizer) over the "
                                     "preference set and write its per-token log-probs, top-k distribution and "
                                     "gathered logits for chosen and rejected sequences.")
    p.add_argument("--ref_model", "--model_name", dest="ref_model", default="tiny", help="reference model")
    p.add_argument("--dataset", "--dataset_name", dest="dataset", default="syn_hh")
    p.add_argument("--split", default="train")
    p.add_argument("--num_samples", type=positive_int, default=512, help="pairs (must equal train's num_train_samples)")
    p.add_argument("--seq_length", "--max_seq_length", dest="seq_length", type=positive_int, default=128)
    p.add_argument("--max_prompt_length", type=positive_int, default=64)
    p.add_argument("--loss", default="corrected", help="sequence layout: corrected or faithful")
    p.add_argument("--topk", type=int, default=64, help="reference tokens kept per position (0 = full vocabulary)")
    p.add_argument("--batch_size", type=positive_int, default=16)
    p.add_argument("--cache_file", "--output_path", dest="cache_file", default="iav_cache.safetensors")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None)
    p.set_defaults(func=_cache)

    p = verbs.add_parser("train", help="train the alignment (and base) head on preference pairs",
                         description="Train IAV heads on a frozen backbone: L = L_pref + λ_kl L_kl + λ_l2 L_l2. "
                                     "Checkpoints every --save_steps; rerunning resumes.")
    p.add_argument("--config_path", default=None, help="YAML with any of the flags below (flags override it)")
    _add_flags(p, TRAIN_FLAGS)
    _add_flags(p, LOSS_FLAGS)
    p.add_argument("--ref_model", default=None, help="a live reference model instead of the frozen head (slow)")
    p.add_argument("--bf16", action="store_true", default=None, help="backbone in bf16 (heads stay fp32)")
    p.add_argument("--gradient_checkpointing", action="store_true", default=None,
                   help="accepted; the frozen backbone runs under no_grad, so nothing is kept to checkpoint")
    p.add_argument("--freeze_base_head", action="store_true", default=None, help="train only the alignment head")
    p.add_argument("--wandb", action="store_true", default=None, help="log to Weights & Biases")
    p.set_defaults(func=_train)

    p = verbs.add_parser("generate", help="generate with z_final = z_base + α·a_t",
                         description="Generate from trained IAV heads (KV cache, batching, greedy or sampling).")
    p.add_argument("--heads", required=True, help="heads dir (save_pretrained) or train run dir")
    p.add_argument("--model_name_or_path", default=None, help="backbone (default: the one the heads name)")
    p.add_argument("--prompt", nargs="+", default=None, help="prompt text(s)")
    p.add_argument("--prompts_file", default=None, help="JSON/JSONL prompts (instruction/turns/prompt/question)")
    p.add_argument("--alpha", type=_floats, nargs="+", default=[1.0], help="α value(s) (default 1.0)")
    p.add_argument("--max_new_tokens", type=positive_int, default=64)
    p.add_argument("--do_sample", action="store_true")
    p.add_argument("--temperature", type=_floats, default=0.7)
    p.add_argument("--top_p", type=_floats, default=0.9)
    p.add_argument("--batch_size", type=positive_int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output_file", default=None, help="write JSON here instead of printing")
    p.set_defaults(func=_generate)

    p = verbs.add_parser("evaluate", help="α sweep vs base, GenARM and DPO: reward, win rate, KL, distinct-n, speed",
                         description="Compare IAV at several α with the base model, GenARM-style decoding and a "
                                     "DPO model; writes results.json, table.md, reward_vs_alpha.png and judge exports.")
    p.add_argument("--heads", required=True)
    p.add_argument("--heads_frozen_base", default=None, help="a second IAV run trained with --freeze_base_head")
    p.add_argument("--model_name_or_path", default=None)
    p.add_argument("--arm_model", default=None, help="GenARM autoregressive reward model dir")
    p.add_argument("--dpo_model", default=None, help="DPO model dir (e.g. from `actlab iav demo`)")
    p.add_argument("--train_baselines", action="store_true",
                   help="train --arm_model / --dpo_model dirs that do not exist yet with TRL (CPO-as-ARM, DPOTrainer)")
    p.add_argument("--baseline_dataset", default="syn_hh", help="preference data for --train_baselines")
    p.add_argument("--baseline_samples", type=positive_int, default=1024)
    p.add_argument("--baseline_steps", type=positive_int, default=60)
    p.add_argument("--prompt_set", default="syn_hh", help="syn_hh, hh_rlhf, alpaca_eval or arena_hard")
    p.add_argument("--prompts_file", default=None)
    p.add_argument("--num_prompts", type=positive_int, default=300)
    p.add_argument("--alphas", type=_floats, nargs="+", default=[0.0, 0.5, 1.0, 1.5, 2.0])
    p.add_argument("--genarm_alpha", type=_floats, default=1.0)
    p.add_argument("--max_new_tokens", type=positive_int, default=128)
    p.add_argument("--do_sample", action="store_true")
    p.add_argument("--temperature", type=_floats, default=1.0)
    p.add_argument("--top_p", type=_floats, default=1.0)
    p.add_argument("--batch_size", type=positive_int, default=16)
    p.add_argument("--reward_model", default="programmatic", help="programmatic (syn_hh) or an HF seq-cls RM")
    p.add_argument("--output_dir", default="runs/iav_eval")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_evaluate)

    p = verbs.add_parser("demo", help="tiny end to end: train IAV + DPO + ARM, sweep α, table and plot",
                         description="On a zoo model: train IAV heads, a TRL DPO model and a GenARM ARM on syn_hh, "
                                     "sweep α and print the side-by-side table; writes the plot.")
    p.add_argument("--model_id", default="tiny",
                   help="zoo model, a model dir, or 'dialogs' (a dialogs-only stand-in built on first use); default tiny")
    p.add_argument("--output_dir", default="runs/iav_demo")
    p.add_argument("--num_prompts", type=positive_int, default=100)
    p.add_argument("--max_new_tokens", type=positive_int, default=48)
    p.add_argument("--quick", action="store_true", help="fewer steps and prompts (smoke test)")
    p.set_defaults(func=_demo)


def _train_config(args):
    from actlab.core.errors import ActlabError
    from actlab.iav.config import LossConfig, TrainConfig

    base: dict = {}
    if args.config_path:
        from pathlib import Path

        import yaml

        path = Path(args.config_path)
        if not path.exists():
            raise ActlabError(f"config file {path} not found")
        base = yaml.safe_load(path.read_text()) or {}
        if not isinstance(base, dict):
            raise ActlabError(f"{path}: expected a mapping of flag names to values")
    loss = dict(base.pop("loss_config", {}) or {})
    for k in LOSS_FLAGS:
        if k in base:
            loss[k] = base.pop(k)
    known = set(TRAIN_FLAGS) | {"bf16", "gradient_checkpointing", "freeze_base_head", "wandb", "ref_model"}
    unknown = sorted(set(base) - known)
    if unknown:
        from actlab.core.errors import unknown_choice

        raise unknown_choice("config key", unknown[0], sorted(known | set(LOSS_FLAGS)))
    for k in known:
        v = getattr(args, k, None)
        if v is not None:
            base[k] = v
    for k in LOSS_FLAGS:
        v = getattr(args, k, None)
        if v is not None:
            loss[k] = v
    ref_model = base.pop("ref_model", None)
    return TrainConfig(**base, loss=LossConfig(**loss)), ref_model


def _train(args) -> int:
    from actlab.iav.trainer import train

    cfg, ref_model = _train_config(args)
    import os

    out = train(cfg, ref_model=ref_model)
    if os.environ.get("RANK", "0") == "0":
        print(f"heads: {out / 'heads'}")
    return 0


def _cache(args) -> int:
    from actlab.iav.cache import build_cache
    from actlab.iav.config import CacheConfig

    cfg = CacheConfig(**{k: getattr(args, k) for k in CacheConfig.__dataclass_fields__ if k != "dtype"})
    print(f"cache: {build_cache(cfg)}")
    return 0


def _load_heads(heads: str, backbone: str | None):
    from pathlib import Path

    from actlab.iav.model import HEADS_FILE, IAVModel

    h = Path(heads)
    if h.is_dir() and not (h / HEADS_FILE).exists() and (h / "heads" / HEADS_FILE).exists():
        h = h / "heads"
    return IAVModel.from_pretrained(h, backbone=backbone)


def _generate(args) -> int:
    from actlab.core.errors import ActlabError
    from actlab.core.io import atomic_write_json, dumps
    from actlab.iav.config import GenerateConfig, check_alpha

    alphas = [check_alpha(a) for a in args.alpha]
    gcfg = GenerateConfig(max_new_tokens=args.max_new_tokens, do_sample=args.do_sample, temperature=args.temperature,
                          top_p=args.top_p, batch_size=args.batch_size, seed=args.seed)
    if args.prompts_file:
        from actlab.iav.evaluate import load_prompts

        prompts = [p["prompt"] for p in load_prompts("syn_hh", 10**9, args.prompts_file)]
    elif args.prompt:
        from actlab.iav.evaluate import HH_TEMPLATE

        prompts = [p if "Human:" in p else HH_TEMPLATE.format(q=p) for p in args.prompt]
    else:
        raise ActlabError("give --prompt TEXT... or --prompts_file FILE")
    iav = _load_heads(args.heads, args.model_name_or_path)
    rows = []
    for a in alphas:
        outs = iav.generate(prompts, alpha=a, **vars(gcfg))
        rows += [{"alpha": a, "prompt": p, "response": o} for p, o in zip(prompts, outs, strict=True)]
    if args.output_file:
        atomic_write_json(args.output_file, rows)
        print(f"wrote {len(rows)} generations to {args.output_file}")
    else:
        for r in rows:
            print(dumps(r, indent=None))
    return 0


def _evaluate(args) -> int:
    from pathlib import Path

    from actlab.iav.evaluate import EvalConfig, evaluate

    cfg = EvalConfig(**{k: getattr(args, k) for k in EvalConfig.__dataclass_fields__})
    todo = [(f, d) for f, d in (("arm", cfg.arm_model), ("dpo", cfg.dpo_model)) if d and not Path(d).exists()]
    if todo and args.train_baselines:
        from actlab.iav.baselines import train_arm, train_dpo
        from actlab.iav.data import load_rows

        backbone = cfg.model_name_or_path or _backbone_of(cfg.heads)
        rows = load_rows(args.baseline_dataset, "train", args.baseline_samples, cfg.seed)
        for kind, d in todo:
            fn = train_arm if kind == "arm" else train_dpo
            print(f"training the {kind} baseline with TRL into {d}")
            fn(backbone, rows, d, max_steps=args.baseline_steps, batch_size=16, learning_rate=1e-4, seed=cfg.seed)
    elif todo:
        from actlab.core.errors import ActlabError

        raise ActlabError(f"--{todo[0][0]}_model {todo[0][1]} does not exist; pass --train_baselines to train it")
    evaluate(cfg)
    print(open(f"{cfg.output_dir}/table.md", encoding="utf-8").read())
    print(f"results: {cfg.output_dir}/results.json  plot: {cfg.output_dir}/reward_vs_alpha.png")
    return 0


def _backbone_of(heads: str) -> str:
    from actlab.core.errors import ActlabError
    from actlab.core.io import read_json
    from actlab.iav.evaluate import _heads_path
    from actlab.iav.model import CONFIG_FILE

    p = _heads_path(heads) / CONFIG_FILE
    bb = read_json(p).get("backbone") if p.exists() else None
    if not bb:
        raise ActlabError(f"cannot tell the backbone of {heads}; pass --model_name_or_path")
    return bb


def _demo(args) -> int:
    from actlab.iav.demo import demo

    demo(args.model_id, args.output_dir, num_prompts=args.num_prompts, max_new_tokens=args.max_new_tokens,
         quick=args.quick)
    return 0
