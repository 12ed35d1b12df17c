"""``actlab iav cache | train | generate | evaluate | demo`` — Inherent Alignment Vectors (dual-head alignment).

    actlab iav cache    --ref_model tiny --dataset syn_hh --num_samples 512 --seq_length 128 --cache_file c.safetensors
    actlab iav train    --model_name_or_path tiny --dataset syn_hh --output_dir runs/iav [--cache_file c.safetensors]
    actlab iav launch   --model_name_or_path tiny --dataset syn_hh --output_dir runs/iav     (train.sh: all GPUs)
    actlab iav generate --heads runs/iav --prompt "Can you tell me how to bake bread?" --alpha 1.5
    actlab iav evaluate --heads runs/iav --arm_model runs/arm --dpo_model runs/dpo --alphas 0 0.5 1 1.5 2
    actlab iav demo     [--model_id tiny]

Flags keep the public IAV code's names (``train_main.py``, ``cache.sh``). ``--config_path x.yaml`` sets any flag
(the loss weights flat or under ``loss_config:``); explicit flags override it. Multi-GPU:
``actlab iav launch ...`` (the seed's ``train.sh``), or ``accelerate launch -m actlab.cli.main iav train ...``.
"""

from __future__ import annotations

from actlab.cli.common import Family, Verb


def _train(cfg) -> int:
    from actlab.iav.trainer import train

    out = train(cfg, ref_model=cfg.ref_model)
    print(f"heads: {out / 'heads'}")  # under a launcher rank 0 alone shows it (cli.main)
    return 0


def _launch(cfg) -> int:
    from pathlib import Path

    from actlab.iav.verbs import launch, launch_command, launch_line

    if cfg.print_only:
        print(launch_line(cfg))
        return 0
    in_process = launch_command(cfg) is None
    rc = launch(cfg)
    if in_process and rc == 0:
        print(f"heads: {Path(cfg.train.output_dir) / 'heads'}")
    return rc


def _cache(cfg) -> int:
    from actlab.iav.cache import build_cache

    print(f"cache: {build_cache(cfg)}")
    return 0


def _generate(cfg) -> int:
    from actlab.core.io import dumps
    from actlab.iav.verbs import generate

    rows = generate(cfg)
    if cfg.output_file:
        print(f"wrote {len(rows)} generations to {cfg.output_file}")
    else:
        for r in rows:
            print(dumps(r, indent=None))
    return 0


def _evaluate(cfg) -> int:
    from actlab.iav.verbs import evaluate

    evaluate(cfg)
    out = cfg.eval.output_dir
    print(open(f"{out}/table.md", encoding="utf-8").read())
    print(f"results: {out}/results.json  plot: {out}/reward_vs_alpha.png")
    return 0


def _demo(cfg) -> int:
    from actlab.iav.config import demo

    print(demo(cfg)["text"])
    return 0


FAMILY = Family(
    "iav",
    "IAV: dual-head alignment vectors (cache, train, generate, evaluate, demo)",
    [
        Verb(
            "cache",
            "cache a reference model's outputs over chosen + rejected (safetensors)",
            "actlab.iav.config:CacheConfig",
            _cache,
            api="actlab.iav.cache:build_cache",
            description="Run a reference model (may differ from the backbone; same tokenizer) over the preference set "
            "and write its per-token log-probs, top-k distribution and gathered logits for chosen and "
            "rejected sequences.",
        ),
        Verb(
            "train",
            "train the alignment (and base) head on preference pairs",
            "actlab.iav.config:TrainConfig",
            _train,
            api="actlab.iav.trainer:train",
            multiprocess=True,
            description="Train IAV heads on a frozen backbone: L = L_pref + λ_kl L_kl + λ_l2 L_l2. Checkpoints every "
            "--save_steps; rerunning resumes.",
        ),
        Verb(
            "launch",
            "train.sh: detect the GPUs, accelerate launch on 2+, one process otherwise",
            "actlab.iav.verbs:IAVLaunchConfig",
            _launch,
            api="actlab.iav.verbs:launch",
            description="What the seed's train.sh does: count the visible GPUs (CUDA_VISIBLE_DEVICES respected); with "
            "two or more, run `accelerate launch --multi_gpu --num_processes N -m actlab.cli.main iav train "
            "...`; with one or none, train in this process. Takes every `iav train` flag.",
        ),
        Verb(
            "generate",
            "generate with z_final = z_base + α·a_t",
            "actlab.iav.config:IAVGenerateConfig",
            _generate,
            api="actlab.iav.verbs:generate",
            description="Generate from trained IAV heads (KV cache, batching, greedy or sampling).",
        ),
        Verb(
            "evaluate",
            "α sweep vs base, GenARM and DPO: reward, win rate, KL, distinct-n, speed",
            "actlab.iav.verbs:IAVEvaluateConfig",
            _evaluate,
            api="actlab.iav.verbs:evaluate",
            description="Compare IAV at several α with the base model, GenARM-style decoding and a DPO model; writes "
            "results.json, table.md, reward_vs_alpha.png and judge exports.",
        ),
        Verb(
            "demo",
            "tiny end to end: train IAV + DPO + ARM, sweep α, table and plot",
            "actlab.iav.config:IAVDemoConfig",
            _demo,
            api="actlab.iav.config:demo",
            description="On a zoo model: train IAV heads, a TRL DPO model and a GenARM ARM on syn_hh, sweep α and print "
            "the side-by-side table; writes the plot.",
        ),
    ],
)
