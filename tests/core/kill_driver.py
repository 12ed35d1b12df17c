"""Run one long actlab verb in this process and stop it hard at a chosen point (used by ``test_kill.py``).

    python kill_driver.py VERB CONFIG_JSON [WHEN]

VERB: ``ia2`` | ``iav`` | ``icae-pretrain`` | ``icae-finetune`` | ``zoo`` | ``xmodel-extract``; CONFIG_JSON: the
verb's config as JSON. WHEN (optional) is ``ACTION@POINT:N``; ACTION ``kill`` = SIGKILL this process, ``hold`` =
write ``$KILL_DRIVER_MARK`` and sleep (keeps the run directory's lock). POINT:

* ``log:N``   right after the metrics row of step N is written (before that step's checkpoint, if any);
* ``ckpt:N``  inside the N-th checkpoint write: the temp file is complete, the rename not done;
* ``step:N``  at the start of the N-th optimizer step (mid-step: gradients computed, weights not updated);
* ``done``    just before ``COMPLETE`` is written (final weights saved);
* ``shard:N`` inside the N-th shard write (xmodel extract).

Errors the user could fix are printed as one ``actlab: error:`` line with exit code 2, as the CLI does.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

CKPT_NAMES = ("checkpoint.safetensors", "state.safetensors")


def zoo_spec():
    """A micro zoo entry (6 steps, a checkpoint every 2)."""
    from actlab.zoo.specs import CorpusSpec, ModelSpec, TrainSpec, ZooSpec
    from actlab.zoo.tokenizer import TokenizerSpec

    return ZooSpec(
        name="micro",
        description="test-only micro entry",
        corpus=CorpusSpec(
            {"icl": 0.5, "passages": 0.25, "arithmetic": 0.25},
            max_len=96,
            warmup_mix={"icl_copy": 1.0},
            warmup_steps=4,
            warmup_batch=6,
        ),
        model=ModelSpec(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=128,
        ),
        train=TrainSpec(steps=6, batch_size=4, warmup=2, threads=1, ckpt_every=2, eval_tasks=4),
        tokenizer=TokenizerSpec(vocab_size=600, n_docs=150),
        seed=0,
    )


def _stop(action: str) -> None:
    if action == "hold":
        Path(os.environ["KILL_DRIVER_MARK"]).write_text(str(os.getpid()))
        time.sleep(600)
    os.kill(os.getpid(), signal.SIGKILL)


def arm(when: str) -> None:
    action, _, point = when.partition("@")
    kind, _, n = point.partition(":")
    n = int(n or 0)
    count = {"n": 0}

    def hit() -> bool:
        count["n"] += 1
        return count["n"] == n

    if kind == "log":
        from actlab.core import io

        real_log = io.RunDir.log

        def log(self, row):
            real_log(self, row)
            if row.get("step") == n:
                _stop(action)

        io.RunDir.log = log
    elif kind in ("ckpt", "done", "shard"):
        real_replace = os.replace

        def replace(src, dst, *a, **k):
            name = Path(dst).name
            if (
                (kind == "ckpt" and name in CKPT_NAMES and hit())
                or (kind == "done" and name == "COMPLETE")
                or (kind == "shard" and name.startswith("shard-") and hit())
            ):
                _stop(action)
            return real_replace(src, dst, *a, **k)

        os.replace = replace
    elif kind == "step":
        import torch

        for cls in {
            c
            for c in (torch.optim.Adam, torch.optim.AdamW)
            for c in c.__mro__
            if "step" in c.__dict__ and c is not torch.optim.Optimizer
        }:  # AdamW inherits Adam.step: patch each step once
            real_step = cls.step

            def step(self, *a, _real=real_step, **k):
                if hit():
                    _stop(action)
                return _real(self, *a, **k)

            cls.step = step
    else:
        raise SystemExit(f"unknown kill point {point!r}")


def run(verb: str, cfg: dict) -> None:
    if verb == "ia2":
        from actlab.ia2 import IA2TrainConfig
        from actlab.ia2.trainer import train

        train(IA2TrainConfig(**cfg))
    elif verb == "iav":
        from actlab.iav.config import TrainConfig
        from actlab.iav.trainer import train

        train(TrainConfig(**cfg))
    elif verb in ("icae-pretrain", "icae-finetune"):
        from actlab.icae import trainer
        from actlab.icae.config import ICAEConfig

        (trainer.pretrain if verb == "icae-pretrain" else trainer.finetune)(ICAEConfig(**cfg))
    elif verb == "zoo":
        from actlab.zoo.build import build

        build(zoo_spec(), Path(cfg["final"]))
    elif verb == "xmodel-extract":
        from actlab.core.models import load
        from actlab.xmodel.extract import extract_pairs

        (ma, ta), (mb, tb) = load(cfg.pop("model_a")), load(cfg.pop("model_b"))
        texts = cfg.pop("texts")
        extract_pairs(ma, ta, mb, tb, texts, cfg.pop("out"), **cfg)
    else:
        raise SystemExit(f"unknown verb {verb!r}")


def main(argv: list[str]) -> int:
    import torch

    from actlab.core.errors import ActlabError

    torch.set_num_threads(1)
    if len(argv) > 2:
        arm(argv[2])
    try:
        run(argv[0], json.loads(argv[1]))
    except ActlabError as e:
        print(f"actlab: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
