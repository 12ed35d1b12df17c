"""``actlab icae`` — in-context autoencoder: prepare-pretrain | pretrain | finetune | infer | demo.

Every verb takes :class:`~actlab.icae.config.ICAEConfig`: ``--config_path file.yaml`` (see ``configs/icae/``) and
any field as a flag (flags win over the file). ``actlab icae demo`` starts from the demo's own settings.
"""

from __future__ import annotations

import json

from actlab.cli.common import Family, Verb


def _print(obj) -> None:
    print(json.dumps(obj, indent=2, default=str))


def cmd_prepare(cfg) -> int:
    from actlab.icae.data import prepare_pretrain

    _print({k: str(v) for k, v in prepare_pretrain(cfg).items()})
    return 0


def cmd_pretrain(cfg) -> int:
    from actlab.icae.trainer import pretrain

    _print(pretrain(cfg))
    return 0


def cmd_finetune(cfg) -> int:
    from actlab.icae.trainer import finetune

    _print(finetune(cfg))
    return 0


def cmd_infer(cfg) -> int:
    from actlab.icae.infer import run_infer

    _print(run_infer(cfg))
    return 0


def cmd_demo(cfg) -> int:
    from actlab.icae.config import demo
    from actlab.icae.gauge import format_gauge

    s = demo(cfg)
    rate = s.get("ae/compression_rate")
    print(
        format_gauge(
            s,
            f"AE on {s['model']} at {cfg.icae.mean_compression_rate}x (measured "
            f"{float('nan') if rate is None else rate:.2f}x)",
        )
    )
    _print(s)
    return 0


_C = "actlab.icae.config:ICAEConfig"
FAMILY = Family(
    "icae",
    "in-context autoencoder (ICAE + EPL position identifiers)",
    [
        Verb(
            "prepare-pretrain",
            "write the pretraining texts (offline: the zoo's synthetic passages)",
            _C,
            cmd_prepare,
            api="actlab.icae.data:prepare_pretrain",
        ),
        Verb(
            "pretrain",
            "AE + LM pretraining of the LoRA encoder and memory embeddings",
            _C,
            cmd_pretrain,
            api="actlab.icae.trainer:pretrain",
            multiprocess=True,
        ),
        Verb(
            "finetune",
            "fine-tune on task qa (SQuAD) | repoqa | trajectories",
            _C,
            cmd_finetune,
            api="actlab.icae.trainer:finetune",
            multiprocess=True,
        ),
        Verb(
            "infer",
            "evaluate task ae | qa | repoqa | trajectories; predictions + metrics JSONL",
            _C,
            cmd_infer,
            api="actlab.icae.infer:run_infer",
        ),
        Verb(
            "demo",
            "pretrain briefly, autoencode held-out passages (BLEU-1), QA EM/F1 vs SimpleLLM",
            "actlab.icae.config:ICAEDemoConfig",
            cmd_demo,
            api="actlab.icae.config:demo",
        ),
    ],
)
