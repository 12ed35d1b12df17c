"""Read and write activations at named sites — one implementation for every family.

A **site** is a kind plus a layer:

* ``attn_output``  — the self-attention module's output, after its output projection, *before* the residual add
  (``layers[i].self_attn`` output ``[0]``, or ``attn`` / ``attention`` / ``self_attention`` as the architecture
  names it; where the module adds the residual itself, as BLOOM's does, its output projection; IA2's alignment
  site);
* ``block_output`` — the residual stream after decoder layer ``i`` (``layers[i]`` output; equals
  ``output_hidden_states[i + 1]`` for every layer but the last, whose hidden state has the final norm applied);
* ``mlp_output``   — the MLP's (or MoE block's) output before its residual add; where the MLP is not a submodule
  (OPT: ``fc1``/``fc2`` on the layer) it is the output of the layer's second linear (``fc2``);
* or a raw module path relative to the unwrapped model, e.g. ``"model.layers.{layer}.mlp.down_proj"``
  (``{layer}`` is filled in) or ``"model.norm"``.

**Positions** index the *input tokens* of each call (the virtual tokens PEFT prompt tuning prepends are skipped
automatically): ``None`` = all, an int (``-1`` = last), a ``slice``, a LongTensor ``[B]`` (one position per row) or
``[B, P]``. Slicing happens inside the hook, so only what was asked for is kept.

Hooks are removed when the ``with`` block ends, also after an exception.

>>> with capture(model, "attn_output", layers=None, positions=-1) as cap:    # doctest: +SKIP
...     model(**batch)
>>> cap.stack().shape            # [n_layers, batch, d]                       # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn as nn

from actlab.core import arch
from actlab.core.errors import ActlabError

SITE_KINDS = ("attn_output", "block_output", "mlp_output")
Positions = None | int | slice | torch.Tensor


def site_path(model: nn.Module, site: str, layer: int | None) -> str:
    """The module path of ``site`` at ``layer`` (raw paths pass through, with ``{layer}`` filled in)."""
    if site in SITE_KINDS:
        if layer is None:
            raise ActlabError(f"site {site!r} needs a layer")
        lay = arch.layout(model)
        if site not in lay.sites():
            raise ActlabError(
                f"site {site!r} does not exist in {lay.model_type} (no {site.split('_')[0]} module in "
                f"its layers); its sites are: {', '.join(lay.sites())}, or a module path"
            )
        layer = arch.check_layer(model, layer)
        base = f"{lay.layers}.{layer}"
        return {
            "block_output": base,
            "attn_output": f"{base}.{lay.attn_site or lay.attn}",
            "mlp_output": f"{base}.{lay.mlp_site or lay.mlp}",
        }[site]
    if "." not in site and "{" not in site:
        lay = arch.layout(model)
        raise ActlabError(
            f"unknown site {site!r}; valid in {lay.model_type}: {', '.join(lay.sites())}, or a module "
            f"path such as {lay.layers}.0.{lay.mlp or lay.attn}"
        )
    if "{layer}" in site:
        if layer is None:
            raise ActlabError(f"site {site!r} has a {{layer}} placeholder but no layer was given")
        return site.format(layer=arch.check_layer(model, layer))
    return site


def site_module(model: nn.Module, site: str, layer: int | None) -> nn.Module:
    return arch.get_module(model, site_path(model, site, layer))


class _TokenShape:
    """``[B, T]`` of the current call, for sites whose module sees the tokens flattened (OPT runs ``fc1``/``fc2``
    on ``[B*T, d]``): read by a pre-hook on the layer, so the site gives ``[B, T, d]`` like every other."""

    def __init__(self):
        self.shape: tuple[int, int] | None = None

    def pre_hook(self, _mod, args, kwargs):
        h = args[0] if args else kwargs.get("hidden_states")
        if isinstance(h, torch.Tensor) and h.dim() == 3:
            self.shape = (h.shape[0], h.shape[1])
        return None

    def unflat(self, h: torch.Tensor) -> torch.Tensor:
        if h.dim() == 2 and self.shape is not None and h.shape[0] == self.shape[0] * self.shape[1]:
            return h.view(*self.shape, h.shape[-1])
        return h


def _flat_site(model: nn.Module, site: str, layer: int | None, handles: list) -> _TokenShape | None:
    """A :class:`_TokenShape` (its pre-hook added to ``handles``) when ``site`` is a layer-level MLP linear."""
    if site != "mlp_output" or arch.layout(model).mlp_module:
        return None
    keeper = _TokenShape()
    layer_mod = arch.get_module(model, site_path(model, "block_output", layer))
    handles.append(layer_mod.register_forward_pre_hook(keeper.pre_hook, with_kwargs=True))
    return keeper


def _main_tensor(output) -> torch.Tensor:
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    if hasattr(output, "last_hidden_state"):
        return output.last_hidden_state
    raise ActlabError(f"cannot read a tensor from a module output of type {type(output).__name__}")


def _replace_main(output, new: torch.Tensor):
    if isinstance(output, torch.Tensor):
        return new
    if isinstance(output, tuple):
        return (new, *output[1:])
    if isinstance(output, list):
        return [new, *output[1:]]
    raise ActlabError(f"cannot write into a module output of type {type(output).__name__}")


def _index(h: torch.Tensor, positions: Positions, offset: int) -> torch.Tensor:
    """Select positions of ``h`` ``[B, T, d]`` (input-token indices; ``offset`` virtual tokens skipped)."""
    if offset:
        h = h[:, offset:]
    if positions is None:
        return h
    if isinstance(positions, int):
        return h[:, positions]
    if isinstance(positions, slice):
        return h[:, positions]
    pos = torch.as_tensor(positions, device=h.device, dtype=torch.long)
    rows = torch.arange(h.shape[0], device=h.device)
    if pos.dim() == 1:
        return h[rows, pos]
    if pos.dim() == 2:
        return h[rows[:, None], pos]
    raise ActlabError(f"positions must be an int, a slice, or a [B] / [B, P] tensor; got shape {tuple(pos.shape)}")


@dataclass
class Capture:
    """Activations captured per (site, layer) and per forward call.

    ``cap[layer]`` (one site) or ``cap[site, layer]`` gives the first call's tensor; ``cap.calls(...)`` every call's;
    ``cap.cat(...)`` joins calls along the position axis (e.g. prefill ``-1`` + each generated token);
    ``cap.stack()`` stacks layers → ``[n_layers, ...]``.
    """

    site_names: list[str]
    layer_ids: list[int | None]
    data: dict[tuple[str, int | None], list[torch.Tensor]] = field(default_factory=dict)

    def _key(self, key) -> tuple[str, int | None]:
        if isinstance(key, tuple):
            return key
        if len(self.site_names) != 1:
            raise KeyError("several sites were captured: index with (site, layer)")
        return (self.site_names[0], key)

    def calls(self, key) -> list[torch.Tensor]:
        return self.data[self._key(key)]

    def __getitem__(self, key) -> torch.Tensor:
        calls = self.calls(key)
        if not calls:
            raise KeyError(f"nothing captured at {self._key(key)}: was the model run inside the with block?")
        return calls[0]

    def cat(self, key, dim: int = 1) -> torch.Tensor:
        """Concatenate all calls at ``key``; int positions give ``[B, d]`` per call, joined into ``[B, n_calls, d]``."""
        calls = self.calls(key)
        calls = [c.unsqueeze(1) if c.dim() == 2 else c for c in calls]
        return torch.cat(calls, dim=dim)

    def stack(self, site: str | None = None, all_calls: bool = False) -> torch.Tensor:
        site = site or self.site_names[0]
        get = (lambda k: self.cat(k)) if all_calls else (lambda k: self[k])
        return torch.stack([get((site, layer)) for layer in self.layer_ids])


@contextlib.contextmanager
def capture(
    model: nn.Module,
    site: str | Sequence[str] = "block_output",
    layers: int | Sequence[int] | None = None,
    positions: Positions = None,
    *,
    detach: bool = True,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    first_call_only: bool = False,
) -> Iterator[Capture]:
    """Record activations at ``site`` for ``layers`` (None = all) during the forward calls inside the block.

    Args:
        site: a site kind (``attn_output``, ``block_output``, ``mlp_output``), a raw module path, or a list of them.
        layers: layer indices (negative allowed); None = every layer. Ignored for raw paths without ``{layer}``.
        positions: which input positions to keep (see module docstring).
        detach: ``False`` keeps the graph (for losses on activations, e.g. IA2's ``act``).
        device, dtype: move/cast what is kept (e.g. ``device="cpu"`` to free accelerator memory).
        first_call_only: keep only the first call (the prefill of ``generate``).
    """
    sites = [site] if isinstance(site, str) else list(site)
    n = arch.num_layers(model)
    if layers is None:
        layer_ids: list[int | None] = list(range(n))
    elif isinstance(layers, int):
        layer_ids = [arch.check_layer(model, layers)]
    else:
        layer_ids = [arch.check_layer(model, x) for x in layers]
    offset = _offset(model)
    cap = Capture(site_names=sites, layer_ids=layer_ids)
    handles = []

    def make_hook(key, flat: _TokenShape | None):
        def hook(_mod, _inp, output):
            if first_call_only and cap.data[key]:
                return None
            full = _main_tensor(output)
            if flat is not None:
                full = flat.unflat(full)
            h = _index(full, positions, offset)
            if detach:
                h = h.detach()
            if device is not None or dtype is not None:
                h = h.to(device=device or h.device, dtype=dtype or h.dtype)
            if h.untyped_storage().data_ptr() == full.untyped_storage().data_ptr():
                h = h.clone()  # never keep a view of the whole activation alive
            cap.data[key].append(h)
            return None

        return hook

    try:
        for s in sites:
            per_layer = s in SITE_KINDS or "{layer}" in s
            for layer in layer_ids if per_layer else [None]:
                key = (s, layer)
                if key in cap.data:
                    continue
                cap.data[key] = []
                flat = _flat_site(model, s, layer, handles)
                handles.append(site_module(model, s, layer).register_forward_hook(make_hook(key, flat)))
        if not any(s in SITE_KINDS or "{layer}" in s for s in sites):
            cap.layer_ids = [None]
        yield cap
    finally:
        for h in handles:
            h.remove()


def _offset(model: nn.Module) -> int:
    from actlab.core.models import prompt_offset

    return prompt_offset(model)


@dataclass
class Intervention:
    """Handle returned by :func:`intervene`: counts forward calls seen and edits applied (``calls``/``applied``)."""

    calls: int = 0
    applied: int = 0

    def reset(self) -> None:
        """Treat the next forward call as a new prefill."""
        self.calls = 0
        self.applied = 0


MODES = ("replace", "add", "mean")


@contextlib.contextmanager
def intervene(
    model: nn.Module,
    site: str,
    layer: int | None,
    value: torch.Tensor | Callable,
    *,
    positions: Positions = -1,
    mode: str = "replace",
    prefill_only: bool = True,
) -> Iterator[Intervention]:
    """Write into the activation at ``site``/``layer`` at ``positions`` during the calls inside the block.

    ``value`` is a tensor broadcastable to the selected slice (``[B, d]`` for an int or ``[B]`` positions) or a
    callable ``f(selected) -> new``. ``mode``: ``replace`` (h ← v), ``add`` (h ← h + v), ``mean`` (h ← (h + v) / 2).
    With ``prefill_only`` (default) only the first forward call is edited — under ``generate`` that is the prompt
    pass, and the KV cache carries the edit forward; decode steps are left alone.
    """
    if mode not in MODES:
        raise ActlabError(f"unknown intervention mode {mode!r}; valid: {', '.join(MODES)}")
    offset = _offset(model)
    handle = Intervention()
    handles: list = []
    flat = _flat_site(model, site, layer, handles)

    def hook(_mod, _inp, output):
        handle.calls += 1
        if prefill_only and handle.calls > 1:
            return None
        h = _main_tensor(output)
        flat_shape = h.shape
        if flat is not None:
            h = flat.unflat(h)
        sel = _index(h, positions, offset)
        v = value(sel) if callable(value) else value.to(device=h.device, dtype=h.dtype)
        new_sel = {"replace": lambda: v.expand_as(sel), "add": lambda: sel + v, "mean": lambda: (sel + v) / 2}[mode]()
        h = h.clone()
        view = h[:, offset:] if offset else h
        _assign(view, positions, new_sel.to(h.dtype))
        handle.applied += 1
        return _replace_main(output, h.reshape(flat_shape))

    module = site_module(model, site, layer)
    handles.append(module.register_forward_hook(hook))
    try:
        yield handle
    finally:
        for hnd in handles:
            hnd.remove()


def _assign(h: torch.Tensor, positions: Positions, new: torch.Tensor) -> None:
    if positions is None:
        h[:] = new
    elif isinstance(positions, (int, slice)):
        h[:, positions] = new
    else:
        pos = torch.as_tensor(positions, device=h.device, dtype=torch.long)
        rows = torch.arange(h.shape[0], device=h.device)
        if pos.dim() == 1:
            h[rows, pos] = new
        else:
            h[rows[:, None], pos] = new
