"""Where things live in each architecture, resolved once per model from the model itself.

:func:`layout` finds the decoder layer list, the attention and MLP modules of a layer, the embeddings and the LM
head, and whether the block is sequential, parallel (attention and MLP read the same input: GPT-J, GPT-NeoX, Falcon,
Cohere, Phi) or mixture-of-experts. Nothing is keyed on a hand-kept per-architecture table: every HF decoder lays
its layers out as a ``ModuleList`` of blocks whose children are an attention module and an MLP (or, as in OPT, the
MLP's two linears on the layer itself).

Paths are relative to the *unwrapped* base model (see :func:`unwrap`), so PEFT's ``base_model.model.`` prefixes
never leak into site names.
"""

from __future__ import annotations

import difflib
import inspect
import weakref
from dataclasses import dataclass

import torch
import torch.nn as nn

from actlab.core.errors import ActlabError

_ATTN_NAMES = ("self_attn", "self_attention", "attn", "attention")
_MLP_NAMES = ("mlp", "feed_forward", "block_sparse_moe", "ffn", "moe")
# the linear that writes the MLP's output when the MLP is not a submodule (OPT: fc1/fc2 on the layer)
_MLP_OUT_NAMES = ("fc2", "fc_out", "down_proj", "dense_4h_to_h", "c_proj", "w2")


@dataclass(frozen=True)
class Layout:
    """One architecture's module layout (paths relative to the unwrapped model; ``attn``/``mlp`` to a layer).

    ``mlp`` is the module whose output is the MLP's output: ``"mlp"`` for most, ``"fc2"`` for OPT (``mlp_module``
    is then False). ``block`` is ``"sequential"``, ``"parallel"`` or ``"moe"`` (an MoE block is sequential).
    ``attn_site`` / ``mlp_site``: where ``attn_output`` / ``mlp_output`` are read — the branch module itself, or its
    output projection where the module adds the residual itself (BLOOM: ``self_attention.dense``,
    ``mlp.dense_4h_to_h``).
    """

    model_type: str
    layers: str
    attn: str | None
    mlp: str | None
    mlp_module: bool
    block: str
    embed: str
    lm_head: str
    norm: str
    attn_site: str | None = None  # layer-relative module whose output is the branch output (default: attn / mlp)
    mlp_site: str | None = None

    def sites(self) -> tuple[str, ...]:
        out = ["block_output"]
        if self.attn:
            out.insert(0, "attn_output")
        if self.mlp:
            out.append("mlp_output")
        return tuple(out)

    def as_dict(self) -> dict[str, str]:
        return dict(
            layers=self.layers,
            attn=self.attn or "",
            mlp=self.mlp or "",
            norm=self.norm,
            embed=self.embed,
            lm_head=self.lm_head,
        )


def unwrap(model: nn.Module) -> nn.Module:
    """The plain ``*ForCausalLM`` under a PEFT wrapper (or the model itself)."""
    get_base = getattr(model, "get_base_model", None)
    if callable(get_base):
        return get_base()
    return model


def model_type(model: nn.Module) -> str:
    return str(getattr(getattr(unwrap(model), "config", None), "model_type", None) or type(unwrap(model)).__name__)


def _name_of(base: nn.Module, target: nn.Module | None) -> str:
    if target is None:
        return ""
    return next((n for n, m in base.named_modules() if m is target), "")


def _is_parallel(cfg, mt: str) -> bool:
    if mt == "falcon":
        return bool(getattr(cfg, "parallel_attn", False) or getattr(cfg, "new_decoder_architecture", False))
    if hasattr(cfg, "use_parallel_residual"):  # GPT-NeoX (default on), StableLM (default off)
        return bool(cfg.use_parallel_residual)
    # blocks whose attention and MLP both read the one input norm (no flag in their configs)
    return mt in ("gptj", "cohere", "cohere2", "phi", "codegen", "gpt_neox_japanese")


def _layout(base: nn.Module) -> Layout:
    cfg = getattr(base, "config", None)
    mt = str(getattr(cfg, "model_type", None) or type(base).__name__)
    n = getattr(cfg, "num_hidden_layers", None)
    layers_name, first = None, None
    for name, mod in base.named_modules():  # pre-order: the decoder's layer list comes before any expert list
        if isinstance(mod, nn.ModuleList) and len(mod) > 0 and (n is None or len(mod) == n):
            layers_name, first = name, mod[0]
            break
    if first is None:
        raise ActlabError(
            f"architecture {mt!r} is not supported: no list of {n} decoder layers found in {type(base).__name__}"
        )
    children = dict(first.named_children())
    attn = next((c for c in _ATTN_NAMES if c in children), None) or next(
        (c for c, m in children.items() if "attention" in type(m).__name__.lower()), None
    )
    mlp = next((c for c in _MLP_NAMES if c in children), None) or next(
        (c for c, m in children.items() if any(k in type(m).__name__.lower() for k in ("mlp", "moe", "feedforward"))),
        None,
    )
    mlp_module = mlp is not None
    if mlp is None:  # OPT, XGLM, ...: the MLP's linears sit on the layer; its output is the last one's
        mlp = next((c for c in _MLP_OUT_NAMES if isinstance(children.get(c), nn.Linear)), None)
    moe = mlp_module and (
        hasattr(children[mlp], "experts")
        or bool(getattr(cfg, "num_local_experts", 0) or getattr(cfg, "num_experts", 0))
    )
    block = "moe" if moe else ("parallel" if _is_parallel(cfg, mt) else "sequential")
    emb = base.get_input_embeddings() if hasattr(base, "get_input_embeddings") else None
    head = base.get_output_embeddings() if hasattr(base, "get_output_embeddings") else None
    norm = next(
        (
            name
            for name, _ in base.named_modules()
            if not name.startswith(f"{layers_name}.")
            and name.rsplit(".", 1)[-1] in ("norm", "ln_f", "final_layer_norm", "final_layernorm", "norm_f")
        ),
        "",
    )
    return Layout(
        model_type=mt,
        layers=layers_name,
        attn=attn,
        mlp=mlp,
        mlp_module=mlp_module,
        block=block,
        embed=_name_of(base, emb),
        lm_head=_name_of(base, head),
        norm=norm,
        attn_site=_branch_site(children, attn),
        mlp_site=_branch_site(children, mlp),
    )


def _branch_site(children: dict[str, nn.Module], name: str | None) -> str | None:
    """``name``, or ``name.<its last linear>`` when the module takes the residual and adds it itself."""
    if name is None:
        return None
    mod = children[name]
    try:
        takes_residual = "residual" in inspect.signature(type(mod).forward).parameters
    except (TypeError, ValueError):
        takes_residual = False
    if takes_residual:
        last = [c for c, m in mod.named_children() if isinstance(m, nn.Linear)]
        if last:
            return f"{name}.{last[-1]}"
    return name


_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> Layout (never keeps a model alive)


def layout(model: nn.Module) -> Layout:
    """The :class:`Layout` of ``model`` (found once per model object)."""
    base = unwrap(model)
    lay = _CACHE.get(base)
    if lay is None:
        lay = _CACHE[base] = _layout(base)
    return lay


def paths(model: nn.Module) -> dict[str, str]:
    """Module paths of ``model``'s architecture (``layers``, ``attn``, ``mlp``, ``norm``, ``embed``, ``lm_head``)."""
    return layout(model).as_dict()


def get_module(model: nn.Module, path: str) -> nn.Module:
    """Resolve a dotted path against the unwrapped model; an unknown path is an error listing near misses."""
    base = unwrap(model)
    try:
        return base.get_submodule(path)
    except AttributeError:
        names = [n for n, _ in base.named_modules() if n]
        close = difflib.get_close_matches(path, names, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; e.g. {names[min(3, len(names) - 1)]}"
        raise ActlabError(
            f"unknown module path {path!r} in {model_type(model)} ({type(base).__name__}){hint}"
        ) from None


def layers(model: nn.Module) -> nn.ModuleList:
    return get_module(model, layout(model).layers)


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


def embed_size(model: nn.Module) -> int:
    """Width of the input embeddings (OPT-350m: 512, narrower than its hidden size 1024)."""
    return int(unwrap(model).get_input_embeddings().weight.shape[1])


# ------------------------------------------------------------------------------------------ the model's output path
class _Returns(nn.Module):
    """Stands in for a model's body: calling it (or any of the body's submodules, as OPT calls
    ``self.model.decoder``) returns ``value``; other attributes (``config``, ...) are the real body's."""

    def __init__(self, value, real: nn.Module | None = None):
        super().__init__()
        self.__dict__["_value"] = value
        self.__dict__["_real"] = real

    def forward(self, *args, **kwargs):
        return self._value

    def __getattr__(self, name):
        real = self.__dict__.get("_real")
        if real is not None:
            attr = getattr(real, name)
            return self if isinstance(attr, nn.Module) else attr
        return super().__getattr__(name)


class _BodyOutput(dict):
    """The body's output: ``last_hidden_state`` (also ``[0]``); every other field (cache, router logits) is None."""

    def __init__(self, h):
        super().__init__(last_hidden_state=h)
        self.last_hidden_state = h

    def __getitem__(self, k):
        return self.last_hidden_state if k in (0, "last_hidden_state") else None

    def __getattr__(self, name):
        return None


def _swap(owner: nn.Module, path: str, new: nn.Module) -> tuple[nn.Module, str, nn.Module]:
    parent_path, _, name = path.rpartition(".")
    parent = owner.get_submodule(parent_path) if parent_path else owner
    old = getattr(parent, name)
    setattr(parent, name, new)
    return parent, name, old


def output_logits(lm: nn.Module, hidden: torch.Tensor, logits: torch.Tensor | None = None) -> torch.Tensor:
    """The logits ``lm`` gives for last hidden states ``hidden`` ``[..., d]`` (after the final norm), computed by the
    model's *own* forward: its body is replaced by one that returns ``hidden``, so everything the model does after
    the body runs as written — the LM head and its bias, Cohere's ``logit_scale``, Gemma-2's final soft-capping,
    Granite's ``logits_scaling``, OPT's ``project_out`` (inside the body, already in ``hidden``).

    ``logits`` given (``[..., V]``, e.g. another head's ``W h``): they replace the LM head's output, so the result is
    the model's post-head computation applied to them.
    """
    base = unwrap(lm)
    body_path = base.base_model_prefix
    lay = layout(base)
    lead = hidden.shape[:-1]
    h3 = hidden.reshape(1, -1, hidden.shape[-1])
    body = base.get_submodule(body_path)
    swaps = [_swap(base, body_path, _Returns(_BodyOutput(h3), real=body))]
    try:
        if logits is not None:
            swaps.append(_swap(base, lay.lm_head, _Returns(logits.reshape(1, -1, logits.shape[-1]))))
        out = base(input_ids=None, inputs_embeds=h3, use_cache=False, return_dict=True)
    finally:
        for parent, name, old in reversed(swaps):
            setattr(parent, name, old)
    z = out.logits
    return z.reshape(*lead, z.shape[-1])


def head_is_linear(lm: nn.Module) -> bool:
    """Whether the model's logits are its LM head's output alone (no scale, cap or other post-processing): then
    ``W h`` may stand for the model's logits (fused heads); checked on random logits through :func:`output_logits`."""
    base = unwrap(lm)
    head = base.get_output_embeddings()
    d = head.weight.shape[1]
    g = torch.Generator().manual_seed(0)
    z = (torch.randn((1, 3, head.weight.shape[0]), generator=g) * 4).to(head.weight.device, head.weight.dtype)
    with torch.no_grad():
        got = output_logits(base, z.new_zeros((1, 3, d)), logits=z)
    return bool(got.shape == z.shape and torch.equal(got, z))


def postprocess_logits(lm: nn.Module, logits: torch.Tensor) -> torch.Tensor:
    """The model's own post-head computation (scale, soft-cap, ...) applied to ``logits`` ``[..., V]``."""
    return output_logits(lm, logits.new_zeros((*logits.shape[:-1], 1)), logits=logits)


def learned_positions(model: nn.Module) -> int | None:
    """How many positions a model with *learned absolute* position embeddings can take (GPT-2's ``wpe``, OPT's
    ``embed_positions``, which adds its offset of 2 itself: pass 0-based ids); None for rotary / ALiBi models,
    whose positions have no table to run off."""
    base = unwrap(model)
    cfg = base.config
    for name, mod in base.named_modules():
        if name.rsplit(".", 1)[-1] in ("wpe", "embed_positions", "position_embeddings") and isinstance(
            mod, nn.Embedding
        ):
            n = getattr(cfg, "max_position_embeddings", None) or getattr(cfg, "n_positions", None)
            return int(n or mod.num_embeddings - int(getattr(mod, "offset", 0)))
    return None
