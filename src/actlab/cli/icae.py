"""``actlab icae`` — in-context autoencoder: prepare-pretrain | pretrain | finetune | infer | demo.

Every verb reads ``--config_path file.yaml`` (see ``configs/icae/``); a few flags override the YAML.
"""

from __future__ import annotations

import json

from actlab.cli.common import family_parser


def _config(args):
    from actlab.icae.config import ICAEConfig

    over = {k: getattr(args, k, None) for k in ("model_name", "output_dir", "checkpoint_path", "task", "max_steps",
                                                   "model_type")}  # fmt: skip
    if args.config_path is None:  # demo without a file: its built-in defaults
        from actlab.icae.demo import DEMO_DEFAULTS

        return ICAEConfig.from_dict({**DEMO_DEFAULTS, **{k: v for k, v in over.items() if v is not None}})
    return ICAEConfig.from_yaml(args.config_path, **over)


def _print(obj) -> None:
    print(json.dumps(obj, indent=2, default=str))


def cmd_prepare(args) -> int:
    from actlab.icae.data import prepare_pretrain

    cfg = _config(args)
    _print({k: str(v) for k, v in prepare_pretrain(cfg).items()})
    return 0


def cmd_pretrain(args) -> int:
    from actlab.icae.trainer import pretrain

    _print(pretrain(_config(args)))
    return 0


def cmd_finetune(args) -> int:
    from actlab.icae.trainer import finetune

    _print(finetune(_config(args)))
    return 0


def cmd_infer(args) -> int:
    from actlab.icae.infer import run_infer

    _print(run_infer(_config(args)))
    return 0


def cmd_demo(args) -> int:
    from actlab.icae.demo import run_demo

    _print(run_demo(_config(args), quick=args.quick))
    return 0


def register(sub) -> None:
    verbs = family_parser(sub, "icae", "in-context autoencoder (ICAE + EPL position identifiers)")
    specs = [
        ("prepare-pretrain", cmd_prepare, "write the pretraining texts (offline: the zoo's synthetic passages)"),
        ("pretrain", cmd_pretrain, "AE + LM pretraining of the LoRA encoder and memory embeddings"),
        ("finetune", cmd_finetune, "fine-tune on task qa (SQuAD) | repoqa | trajectories"),
        ("infer", cmd_infer, "evaluate task ae | qa | repoqa | trajectories; predictions + metrics JSONL"),
        ("demo", cmd_demo, "pretrain briefly, autoencode held-out passages (BLEU-1), QA EM/F1 vs SimpleLLM"),
    ]
    for name, fn, help_ in specs:
        p = verbs.add_parser(name, help=help_, description=help_)
        p.add_argument("--config_path", required=name != "demo", default=None,
                       help="YAML config (configs/icae/*.yaml)" + ("; default: the demo's built-in settings"
                                                                  if name == "demo" else ""))
        p.add_argument("--model_name", default=None, help="override the base model")
        p.add_argument("--output_dir", default=None, help="override the run directory")
        p.add_argument("--checkpoint_path", default=None, help="override the ICAE weights to load")
        p.add_argument("--task", default=None, help="override the task")
        p.add_argument("--model_type", default=None, help="override: icae | llm")
        p.add_argument("--max_steps", type=int, default=None, help="override the training steps")
        if name == "demo":
            p.add_argument("--quick", action="store_true", help="a very short run (smoke test)")
        p.set_defaults(func=fn)
