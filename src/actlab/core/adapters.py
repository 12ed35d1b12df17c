"""PEFT adapters by family — LoRA, (IA)³, prompt tuning, prefix tuning — built the way the IA2 code builds them.

>>> cfg = peft_config("lora", model, modules="qko", r=8, alpha=8)       # doctest: +SKIP
>>> peft_model = attach(model, cfg)                                      # doctest: +SKIP

* ``modules`` is a string of letters: q k v o (attention projections), g u d (MLP gate/up/down); ``all`` = every one.
  Names are checked against the model: a type that matches no module is an :class:`ActlabError`.
* (IA)³ uses ``target_modules == feedforward_modules`` (upstream IA2's choice), so PEFT scales each module's input.
* prompt tuning: RANDOM init (upstream); prefix tuning: PEFT defaults (no projection).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from actlab.core.errors import ActlabError, unknown_choice

FAMILIES = ("lora", "ia3", "prompt", "prefix")
LETTERS = {"q": "q_proj", "k": "k_proj", "v": "v_proj", "o": "o_proj", "g": "gate_proj", "u": "up_proj",
           "d": "down_proj"}


def module_names(modules: str) -> list[str]:
    letters = "".join(LETTERS) if modules == "all" else modules
    bad = [c for c in letters if c not in LETTERS]
    if not letters or bad:
        raise ActlabError(f"bad module type {modules!r}; use letters of {''.join(LETTERS)} "
                          f"({', '.join(f'{k}={v}' for k, v in LETTERS.items())}) or all")
    return [LETTERS[c] for c in letters]


def linear_suffixes(model: nn.Module) -> set[str]:
    """The last path component of every ``nn.Linear`` (or HF Conv1D) in the model."""
    out = set()
    for name, mod in model.named_modules():
        if isinstance(mod, nn.Linear) or type(mod).__name__ == "Conv1D":
            out.add(name.rsplit(".", 1)[-1])
    return out


def check_modules(model: nn.Module, modules: str, kind: str) -> list[str]:
    """Module names for ``modules``, each of which must exist in ``model`` (else one-line error)."""
    names = module_names(modules)
    have = linear_suffixes(model)
    missing = [n for n in names if n not in have]
    if missing:
        raise ActlabError(f"{kind} {modules!r} names {', '.join(missing)}, which {type(model).__name__} does not have; "
                          f"its linear modules are: {', '.join(sorted(have))}")
    return names


def peft_config(family: str, model: nn.Module, *, modules: str = "qko", r: int = 8, alpha: int = 8,
                dropout: float = 0.0, num_virtual_tokens: int = 20):
    """The PEFT config of ``family`` for ``model`` (module names checked against the model)."""
    from peft import IA3Config, LoraConfig, PrefixTuningConfig, PromptTuningConfig, TaskType

    if family == "lora":
        names = check_modules(model, modules, "--lora_type")
        return LoraConfig(task_type=TaskType.CAUSAL_LM, r=r, lora_alpha=alpha, lora_dropout=dropout,
                          target_modules=names, bias="none")
    if family == "ia3":
        names = check_modules(model, modules, "--ia3_type")
        return IA3Config(task_type=TaskType.CAUSAL_LM, target_modules=names, feedforward_modules=names,
                         fan_in_fan_out=False)
    if num_virtual_tokens <= 0 and family in ("prompt", "prefix"):
        raise ActlabError(f"--num_virtual_tokens must be a positive integer, got {num_virtual_tokens}")
    if family == "prompt":
        return PromptTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=num_virtual_tokens,
                                  prompt_tuning_init="RANDOM")
    if family == "prefix":
        return PrefixTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=num_virtual_tokens)
    raise unknown_choice("adapter family", family, FAMILIES)


def _quiet_peft():
    """PEFT 0.21 calls a transformers API deprecated in 5.x (``is_gradient_checkpointing``): hide that warning."""
    import warnings

    ctx = warnings.catch_warnings()
    ctx.__enter__()
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
    return ctx


def attach(model: nn.Module, config, seed: int | None = None) -> nn.Module:
    """Wrap ``model`` with a fresh trainable adapter (base weights frozen).

    ``seed``: draw the adapter's random init from this seed, leaving the global RNG as it was (torch does not seed
    its global RNG to a fixed value across processes, so an unseeded init differs from run to run).
    """
    from peft import get_peft_model

    ctx = _quiet_peft()
    try:
        if seed is None:
            return get_peft_model(model, config)
        with torch.random.fork_rng(devices=list(range(torch.cuda.device_count()))):
            torch.manual_seed(seed)
            return get_peft_model(model, config)
    finally:
        ctx.__exit__(None, None, None)


def load_adapter(model: nn.Module, path, trainable: bool = False) -> nn.Module:
    """Wrap ``model`` with the adapter saved in ``path`` (``save_pretrained`` layout, safetensors)."""
    from peft import PeftConfig, PeftModel, set_peft_model_state_dict
    from safetensors.torch import load_file

    if not trainable:
        ctx = _quiet_peft()
        try:
            return PeftModel.from_pretrained(model, str(path), is_trainable=False)
        finally:
            ctx.__exit__(None, None, None)
    # PEFT refuses is_trainable=True for prompt learning; a fresh adapter + the saved weights works for every family
    cfg = PeftConfig.from_pretrained(str(path))
    cfg.inference_mode = False
    pm = attach(model, cfg)
    dev = next(model.parameters()).device
    state = {k: v.to(dev) for k, v in load_file(str(Path(path) / "adapter_model.safetensors")).items()}
    set_peft_model_state_dict(pm, state)
    got = adapter_state(pm)
    bad = [k for k, v in state.items() if k not in got or not torch.equal(got[k], v)]
    if bad:
        raise ActlabError(f"adapter {path} does not fit the model ({bad[0]} was not loaded)")
    return pm


def adapter_state(model: nn.Module) -> dict:
    """The adapter's parameters (PEFT's state dict: only what ``save_pretrained`` writes), detached copies."""
    from peft import get_peft_model_state_dict

    return {k: v.detach().clone() for k, v in get_peft_model_state_dict(model).items()}


def load_adapter_state(model: nn.Module, state: dict) -> None:
    from peft import set_peft_model_state_dict

    set_peft_model_state_dict(model, state)
