"""Where things live in each architecture, keyed by ``config.model_type`` (a plain table, as PEFT does).

Paths are relative to the *unwrapped* base model (see :func:`unwrap`), so PEFT's ``base_model.model.`` prefixes
never leak into site names.
"""

from __future__ import annotations

import difflib

import torch.nn as nn

from actlab.core.errors import ActlabError

_LLAMA_LIKE = dict(layers="model.layers", attn="self_attn", mlp="mlp", norm="model.norm", embed="model.embed_tokens",
                   lm_head="lm_head")
ARCH: dict[str, dict[str, str]] = {
    **{t: _LLAMA_LIKE for t in ("llama", "mistral", "mixtral", "qwen2", "qwen3", "qwen3_moe", "gemma", "gemma2",
                                "gemma3_text", "phi3", "olmo", "olmo2", "granite", "smollm3", "cohere")},
    "gpt2": dict(layers="transformer.h", attn="attn", mlp="mlp", norm="transformer.ln_f", embed="transformer.wte",
                 lm_head="lm_head"),
    "gpt_neox": dict(layers="gpt_neox.layers", attn="attention", mlp="mlp", norm="gpt_neox.final_layer_norm",
                     embed="gpt_neox.embed_in", lm_head="embed_out"),
}
SUPPORTED = tuple(sorted(ARCH))


def unwrap(model: nn.Module) -> nn.Module:
    """The plain ``*ForCausalLM`` under a PEFT wrapper (or the model itself)."""
    get_base = getattr(model, "get_base_model", None)
    if callable(get_base):
        return get_base()
    return model


def paths(model: nn.Module) -> dict[str, str]:
    """Module paths for ``model``'s architecture; unknown architectures are discovered (the layer ModuleList)."""
    base = unwrap(model)
    mt = getattr(getattr(base, "config", None), "model_type", None)
    if mt in ARCH:
        return ARCH[mt]
    n = getattr(getattr(base, "config", None), "num_hidden_layers", None)
    for name, mod in base.named_modules():
        if isinstance(mod, nn.ModuleList) and len(mod) > 0 and (n is None or len(mod) == n):
            first = mod[0]
            attn = next((c for c in ("self_attn", "attn", "attention") if hasattr(first, c)), "self_attn")
            return dict(layers=name, attn=attn, mlp="mlp", norm="", embed="", lm_head="lm_head")
    raise ActlabError(f"unsupported architecture {mt!r}: no decoder layer list found; supported: {', '.join(SUPPORTED)}")


def get_module(model: nn.Module, path: str) -> nn.Module:
    """Resolve a dotted path against the unwrapped model; an unknown path is an error listing near misses."""
    base = unwrap(model)
    try:
        return base.get_submodule(path)
    except AttributeError:
        names = [n for n, _ in base.named_modules() if n]
        close = difflib.get_close_matches(path, names, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; e.g. {names[min(3, len(names) - 1)]}"
        raise ActlabError(f"unknown module path {path!r} in {type(base).__name__}{hint}") from None


def layers(model: nn.Module) -> nn.ModuleList:
    return get_module(model, paths(model)["layers"])


def num_layers(model: nn.Module) -> int:
    return len(layers(model))


def check_layer(model: nn.Module, layer: int) -> int:
    """Normalise a (possibly negative) layer index; out of range is an error that says the valid range."""
    n = num_layers(model)
    if not -n <= layer < n:
        raise ActlabError(f"layer {layer} out of range for a {n}-layer model; valid: 0..{n - 1} (or -{n}..-1)")
    return layer % n


def hidden_size(model: nn.Module) -> int:
    cfg = unwrap(model).config
    return int(getattr(cfg, "hidden_size", None) or cfg.n_embd)
