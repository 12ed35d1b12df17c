"""``--gradient_checkpointing``: the model's own activation (gradient) checkpointing, non-reentrant.

    from actlab.core.gradckpt import enable_gradient_checkpointing
    enable_gradient_checkpointing(model, frozen_base=True)   # adapters/heads train on a frozen base

Calls ``transformers``' ``activation_checkpointing_enable`` (``gradient_checkpointing_enable`` on versions that
lack it) with ``use_reentrant=False``; with ``frozen_base`` also ``enable_input_require_grads()``, as PEFT does
for adapters on a frozen model. The model recomputes each layer's activations in the backward pass instead of
keeping them; it acts only in training mode, and the gradients are those of the plain run (float tolerance).
"""

from __future__ import annotations

KWARGS = {"use_reentrant": False}


def enable_gradient_checkpointing(model, frozen_base: bool = False):
    """Turn on ``model``'s gradient checkpointing (a ``transformers`` or PEFT model); returns ``model``. A model
    that does not support it is a one-line :class:`~actlab.core.errors.ActlabError`."""
    from actlab.core.errors import ActlabError

    base = model.get_base_model() if callable(getattr(model, "get_base_model", None)) else model
    if not getattr(base, "supports_gradient_checkpointing", False):
        raise ActlabError(
            f"--gradient_checkpointing: {type(base).__name__} does not support it; "
            "valid: --gradient_checkpointing false"
        )
    fn = getattr(model, "activation_checkpointing_enable", None)
    if fn is not None:
        fn(activation_checkpointing_kwargs=dict(KWARGS))
    else:  # older transformers
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=dict(KWARGS))
    if frozen_base:
        model.enable_input_require_grads()
    return model


def checkpointing_on(model) -> bool:
    """Whether any module of ``model`` has its ``gradient_checkpointing`` flag on (the layers that recompute)."""
    return any(getattr(m, "gradient_checkpointing", False) is True for m in model.modules())


def is_gradient_checkpointing(model) -> bool:
    """Whether ``model`` (or the model under a PEFT wrapper) has gradient checkpointing on."""
    for m in (model, getattr(model, "base_model", None), getattr(getattr(model, "base_model", None), "model", None)):
        if m is not None and getattr(m, "is_gradient_checkpointing", False):
            return True
    return False
