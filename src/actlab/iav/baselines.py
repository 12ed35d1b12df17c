"""Baselines trained with TRL (reused, not rewritten):

* **DPO**: ``trl.DPOTrainer`` (sigmoid loss against the frozen initial model as reference; β = 0.1 as GenARM's
  DPO baseline).
* **GenARM's autoregressive reward model (ARM)**: GenARM's loss ``−log σ(β_r(Σ log π_r(y_w) − Σ log π_r(y_l)))`` is
  reference-free and unnormalised; that is TRL's ``CPOTrainer`` with ``loss_type="sigmoid"`` and ``cpo_alpha=0``
  (no NLL term), so we train the ARM with it (β_r = 0.05 as GenARM's HH setting).

Both write a plain HF model directory (safetensors) that :func:`actlab.core.models.load` reads.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from actlab.core.errors import ActlabError

log = logging.getLogger(__name__)


def _dataset(rows: list[dict]):
    from datasets import Dataset

    return Dataset.from_list([{"prompt": r["prompt"], "chosen": r["chosen"], "rejected": r["rejected"]} for r in rows])


def _quiet_libraries() -> None:
    """Under ACTLAB_QUIET=1, silence the datasets/transformers progress bars that TRL's preprocessing prints."""
    from actlab.core.progress import quiet

    if quiet():
        import datasets
        import transformers

        datasets.disable_progress_bars()
        transformers.utils.logging.disable_progress_bar()


def _common(output_dir: str, max_steps: int, batch_size: int, learning_rate: float, max_length: int, seed: int):
    import torch

    _quiet_libraries()
    return dict(
        output_dir=str(output_dir),
        max_steps=max_steps,
        per_device_train_batch_size=batch_size,
        learning_rate=learning_rate,
        lr_scheduler_type="linear",
        warmup_steps=0.1,
        logging_steps=10,
        save_strategy="no",
        report_to=[],
        seed=seed,
        max_length=max_length,
        bf16=False,
        use_cpu=not torch.cuda.is_available(),
        disable_tqdm=os.environ.get("ACTLAB_QUIET") == "1",
        dataloader_num_workers=0,
        activation_checkpointing=False,
    )


def _train_trl(
    model_name_or_path: str, rows: list[dict], output_dir: str | Path, trainer_cls, args, meta: dict
) -> Path:
    """Load the model, train it with a TRL trainer, save it (skipped when ``output_dir`` already holds a model)."""
    from actlab.core.models import load

    out = Path(output_dir)
    if (out / "config.json").exists() and (out / "model.safetensors").exists():
        return out
    model, tok = load(model_name_or_path)
    model.train()
    trainer = trainer_cls(
        model=model, args=args(str(out) + ".trl"), train_dataset=_dataset(rows), processing_class=tok
    )
    _log_through_logging(trainer, meta["method"])
    from actlab.core.progress import bar_logging

    with bar_logging():
        trainer.train()
    return _save(trainer.model, tok, out, {**meta, "history": trainer.state.log_history})


def _log_through_logging(trainer, name: str) -> None:
    """The trainer's log dicts (loss, lr, …) as info lines of this module's logger: transformers prints them on
    stdout (``PrinterCallback``, or the progress bar's ``write``), which carries only a verb's results."""
    from transformers import TrainerCallback
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    class Logs(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if state.is_world_process_zero and logs:
                log.info(
                    f"{name} step {state.global_step}: "
                    + ", ".join(
                        f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                        for k, v in logs.items()
                        if k != "total_flos"
                    )
                )

    class Bar(ProgressCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):  # the bar only; Logs has the lines
            return None

    trainer.remove_callback(PrinterCallback)
    if trainer.pop_callback(ProgressCallback) is not None:
        trainer.add_callback(Bar)
    trainer.add_callback(Logs)


def train_dpo(
    model_name_or_path: str,
    rows: list[dict],
    output_dir: str | Path,
    *,
    beta: float = 0.1,
    max_steps: int = 100,
    batch_size: int = 8,
    learning_rate: float = 5e-5,
    max_length: int = 128,
    seed: int = 0,
) -> Path:
    """Fine-tune the whole model with ``trl.DPOTrainer``; returns the saved model directory."""
    from trl import DPOConfig, DPOTrainer

    def args(trl_dir: str):
        return DPOConfig(
            beta=beta,
            loss_type=["sigmoid"],
            **_common(trl_dir, max_steps, batch_size, learning_rate, max_length, seed),
        )

    return _train_trl(
        model_name_or_path, rows, output_dir, DPOTrainer, args, {"method": "dpo", "beta": beta, "max_steps": max_steps}
    )


def train_arm(
    model_name_or_path: str,
    rows: list[dict],
    output_dir: str | Path,
    *,
    beta: float = 0.05,
    max_steps: int = 100,
    batch_size: int = 8,
    learning_rate: float = 5e-5,
    max_length: int = 128,
    seed: int = 0,
) -> Path:
    """Train a GenARM autoregressive reward model with TRL's CPO trainer (sigmoid loss, ``cpo_alpha=0``)."""
    from trl.experimental.cpo import CPOConfig, CPOTrainer

    def args(trl_dir: str):
        return CPOConfig(
            beta=beta,
            loss_type="sigmoid",
            cpo_alpha=0.0,
            **_common(trl_dir, max_steps, batch_size, learning_rate, max_length, seed),
        )

    return _train_trl(
        model_name_or_path,
        rows,
        output_dir,
        CPOTrainer,
        args,
        {"method": "genarm_arm", "beta": beta, "max_steps": max_steps},
    )


def _save(model, tok, out: Path, info: dict) -> Path:
    import shutil

    from actlab.core.io import atomic_write_json

    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.eval()
    model.save_pretrained(tmp, safe_serialization=True)
    tok.save_pretrained(tmp)
    atomic_write_json(tmp / "actlab_baseline.json", info)
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    shutil.rmtree(str(out) + ".trl", ignore_errors=True)
    if not (out / "config.json").exists():
        raise ActlabError(f"saving the baseline to {out} failed")
    return out
