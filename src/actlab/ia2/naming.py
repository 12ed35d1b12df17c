"""Run names and directories, as the seed's naming convention (upstream ``utils.get_model_name``).

    {output_dir}/{method}/{dataset}/{name}

    LoRA   tok/a2t/t2a  {model}_{lora_type}_{r}_{alpha}_{T}_{N}_{lr}_{run}_{label_type}
           act/tokl     {model}_{lora_type}_{r}_{alpha}_{T}_{N}_{lr}_{run}
           tna          {model}_{lora_type}_{r}_{alpha}_{T}_{N}_{lr}_{run}_{ce_weight}
    IA3    same, with   {model}_ia3_{ia3_type}_{T}_{N}_{lr}_{run}...
    prompt/prefix       {model}_{prompt|prefix}_{num_virtual_tokens}_{T}_{N}_{lr}_{run}...

Numbers are written with Python's ``str`` (``1e-4`` → ``0.0001``, ``0.002`` → ``0.002``), as upstream does.
Settings that are not in the name (act_site, max_icl_demos, epochs, ...) are in the run's ``config.json``; a
non-default ``act_site`` is appended (``..._site-block_output``) so it never collides with the paper's runs.
"""

from __future__ import annotations

from pathlib import Path

from actlab.core.models import short_name
from actlab.ia2.config import IA2TrainConfig


def _num(x) -> str:
    return str(x)


def run_name(cfg: IA2TrainConfig) -> str:
    model = short_name(cfg.model_id)
    if cfg.family == "lora":
        adapter = f"{cfg.lora_type}_{cfg.lora_r}_{cfg.lora_alpha}"
    elif cfg.family == "ia3":
        adapter = f"ia3_{cfg.ia3_type}"
    else:
        adapter = f"{cfg.family}_{cfg.num_virtual_tokens}"
    base = f"{model}_{adapter}_{cfg.num_generated_tokens}_{cfg.num_train_examples}_{_num(cfg.lr)}_{cfg.run_idx}"
    if cfg.objective in ("tok", "a2t", "t2a"):
        base = f"{base}_{cfg.label_type}"
    elif cfg.objective == "tna":
        base = f"{base}_{_num(cfg.ce_loss_weight)}"
    if cfg.act_site != "attn_output" and (cfg.uses_acts or cfg.objective == "a2t"):
        base = f"{base}_site-{cfg.act_site.replace('/', '-').replace('{layer}', 'L')}"
    if cfg.act_layers is not None and (cfg.uses_acts or cfg.objective == "a2t"):
        base = f"{base}_layers-{'-'.join(str(x) for x in cfg.act_layers)}"
    return base


def run_dir(cfg: IA2TrainConfig) -> Path:
    return Path(cfg.output_dir) / cfg.training_method / cfg.dataset / run_name(cfg)


def parent_dir(cfg: IA2TrainConfig) -> Path | None:
    """Where a2t/t2a look for their parent adapter (same settings, parent method), else None."""
    parent = cfg.parent_config()
    return None if parent is None else run_dir(parent)
