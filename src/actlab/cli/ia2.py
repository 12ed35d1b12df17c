"""``actlab ia2 train | sweep | evaluate | plot | plot-all | analyze | demo``.

    actlab ia2 train --training_method act --dataset syn_sst2_remap --num_train_examples 8 --lr 1e-3 --run_idx 0
    actlab ia2 train --training_method tok --label_type icl_outputs --lora_type qkv ...
    actlab ia2 train --training_method prompt-tna --ce_loss_weight 0.5 --num_virtual_tokens 20 ...
    actlab ia2 sweep --training_methods tok act --include_sequential --sequential_first --datasets syn_sst2_remap \
        --num_train_examples 8 --lrs 1e-3 --run_indices 0 1 --max_parallel 2

Flags keep the names of upstream's ``train_unified.py`` / ``train_all_unified.py``; they come from
:class:`~actlab.ia2.config.IA2TrainConfig` (train) and :func:`~actlab.ia2.verbs.sweep_cli_config` (sweep).
"""

from __future__ import annotations

from actlab.cli.common import Family, Verb
from actlab.cli.ia2_eval import EVAL_VERBS


def _train(cfg) -> int:
    from actlab.ia2.trainer import train

    print(train(cfg))  # under a launcher rank 0 alone shows it (cli.main)
    return 0


def _sweep(cfg) -> int:
    from actlab.ia2.sweep import format_dry_run, format_summary
    from actlab.ia2.verbs import sweep

    results = sweep(cfg)
    if cfg.dry_run:
        print(format_dry_run(results))
        return 0
    print(format_summary(results))
    return 0 if all(r["status"] in ("done", "skipped") for r in results) else 1


FAMILY = Family(
    "ia2",
    "IA2: ICL activation alignment — train, sweep, evaluate, plot, analyze",
    [
        Verb(
            "train",
            "train one adapter (train_unified.py)",
            "actlab.ia2.config:IA2TrainConfig",
            _train,
            api="actlab.ia2.trainer:train",
            multiprocess=True,
            description="Train one IA2/SFT adapter. A run's config.json is a valid --config_path.",
        ),
        Verb(
            "sweep",
            "grid of train runs (train_all_unified.py)",
            "actlab.ia2.verbs:sweep_cli_config",
            _sweep,
            api="actlab.ia2.verbs:sweep",
            description="Train a grid: methods x datasets x N x lrs x run indices x ce weights x adapter settings, with "
            "--max_parallel worker processes (one GPU each when GPUs exist). Axis flags take several "
            "values: --datasets --num_train_examples --lrs --run_indices --ce_loss_weights --lora_types "
            "--lora_rs --lora_alphas --ia3_types --num_virtual_tokens.",
        ),
        *EVAL_VERBS,
    ],
)
