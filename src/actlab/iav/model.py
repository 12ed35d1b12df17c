"""IAV dual-head model: one frozen backbone pass feeding three heads.

    h_t      = backbone(x)_t                      (frozen; last hidden state after the final norm)
    z_base   = post(W_b h_t)                      (W_b initialised from lm_head; trainable or frozen)
    a_t      = W_a h_t                            (zero-initialised copy of lm_head; trainable)
    z_ref    = post(W_ref h_t)                    (frozen copy of the original lm_head: the exact reference logits)
    z_final  = z_base + alpha * a_t

``post`` is whatever the model does after its LM head — Cohere's ``logit_scale``, Gemma-2's final soft-capping,
Granite's ``logits_scaling`` — run by the model's own forward (:func:`actlab.core.arch.output_logits`), so
``z_ref`` and ``z_final`` at alpha = 0 are the model's logits bit for bit on every architecture. For most models
``post`` is the identity (checked once, :func:`actlab.core.arch.head_is_linear`); only then is decoding's fused
``(W_b + alpha W_a) h`` used.

Trainable heads are fp32 parameters (the public code trains pure-bf16 heads, where most updates at lr 2e-6 fall
below bf16 resolution). The backbone is never trained, so it runs under ``torch.no_grad()``.

>>> iav = IAVModel(lm)                                     # doctest: +SKIP
>>> out = iav(input_ids, attention_mask, alpha=1.0)        # doctest: +SKIP
>>> iav.save_pretrained("runs/iav/heads"); IAVModel.from_pretrained("runs/iav/heads")   # doctest: +SKIP
>>> IAVModel.from_pretrained("runs/iav")                   # doctest: +SKIP   (a run: its final heads)
>>> IAVModel.from_pretrained("runs/iav/checkpoint-500")    # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from torch import nn

from actlab.core import arch
from actlab.core.errors import ActlabError
from actlab.iav.config import check_alpha

HEADS_FILE = "iav_heads.safetensors"
CONFIG_FILE = "iav_config.json"
FORMAT = "actlab-iav-heads"
FORMAT_VERSION = "1"


def weight_sha(w: torch.Tensor) -> str:
    """A short sha256 identifying the backbone's ``lm_head``, the same whether it was loaded in fp32 or bf16.

    (Hashes the weight rounded to bf16: an fp32 checkpoint loaded in bf16 or fp32, or a bf16 checkpoint loaded in
    fp32, all give the same bytes.)
    """
    b = w.detach().to(torch.bfloat16).contiguous().cpu().view(torch.int16)
    return hashlib.sha256(b.numpy().tobytes()).hexdigest()[:16]


def _linear_like(head: nn.Module, dtype: torch.dtype, zero: bool = False) -> nn.Linear:
    w = head.weight
    lin = nn.Linear(w.shape[1], w.shape[0], bias=getattr(head, "bias", None) is not None, device=w.device, dtype=dtype)
    with torch.no_grad():
        if zero:
            lin.weight.zero_()
            if lin.bias is not None:
                lin.bias.zero_()
        else:
            lin.weight.copy_(w.detach().to(dtype))
            if lin.bias is not None:
                lin.bias.copy_(head.bias.detach().to(dtype))
    return lin


def heads_file(path: str | Path) -> Path:
    """The heads file that :meth:`IAVModel.from_pretrained` reads for ``path`` (see there)."""
    from actlab.iav.trainer import latest_checkpoint

    path = Path(path)
    if path.is_file():
        return path
    for d in (path, path / "heads"):
        if (d / HEADS_FILE).exists():
            return d / HEADS_FILE
    ck = latest_checkpoint(path) if path.is_dir() else None
    if ck is not None and (ck / HEADS_FILE).exists():
        return ck / HEADS_FILE
    raise ActlabError(
        f"no IAV heads at {path} (expected {HEADS_FILE}, heads/{HEADS_FILE} or a checkpoint-<step>/ "
        "directory); train with `actlab iav train`"
    )


class IAVModel(nn.Module):
    """Wrap any HF causal LM as an IAV dual-head model.

    Args:
        lm: a ``transformers`` causal LM (any architecture with ``base_model`` and ``get_output_embeddings()``).
        freeze_base_head (`bool`, defaults to `False`): keep ``W_b`` equal to ``lm_head`` (then
            ``pi ∝ pi_ref · exp(alpha·a_t)``, GenARM's form with a linear ARM head).
        tokenizer: optional; lets :meth:`generate` take strings.
        backbone_id (`str`, *optional*): the backbone's id or path, written next to the heads on save.
    """

    def __init__(self, lm, freeze_base_head: bool = False, tokenizer=None, backbone_id: str | None = None):
        super().__init__()
        head = lm.get_output_embeddings()
        if head is None or not hasattr(head, "weight"):
            raise ActlabError(f"{type(lm).__name__} has no output embedding (lm_head); IAV needs a causal LM")
        for p in lm.parameters():
            p.requires_grad_(False)
        lm.eval()
        self.lm = lm
        self.backbone = lm.base_model
        self.tokenizer = tokenizer
        self.backbone_id = backbone_id or getattr(lm, "actlab_name", None) or getattr(lm, "name_or_path", None)
        self.freeze_base_head = bool(freeze_base_head)
        self.base_head = _linear_like(head, torch.float32)
        self.align_head = _linear_like(head, torch.float32, zero=True)
        self.ref_head = _linear_like(head, head.weight.dtype)  # exactly the original lm_head, frozen
        for p in self.ref_head.parameters():
            p.requires_grad_(False)
        for p in self.base_head.parameters():
            p.requires_grad_(not self.freeze_base_head)
        self.ref_sha = weight_sha(head.weight)
        self.head_is_linear = arch.head_is_linear(lm)
        self._fused: tuple[tuple, torch.Tensor, torch.Tensor | None] | None = None
        self._base_is_ref: tuple[tuple, bool] | None = None

    # ------------------------------------------------------------------------------------------------ forward
    @property
    def device(self) -> torch.device:
        return self.base_head.weight.device

    def hidden(self, input_ids, attention_mask=None, position_ids=None, past_key_values=None, use_cache=False):
        """The frozen backbone's last hidden state ``[B, L, d]`` (and the KV cache when ``use_cache``)."""
        with torch.no_grad():
            out = self.backbone(
                input_ids=input_ids,
                attention_mask=attention_mask,
                position_ids=position_ids,
                past_key_values=past_key_values,
                use_cache=use_cache,
            )
        return out.last_hidden_state, (out.past_key_values if use_cache else None)

    def heads(
        self, h: torch.Tensor, alpha: float = 1.0, ref: bool = True, z_base: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Apply the heads to hidden states ``h`` (any leading shape). Returns z_base, a, z_final (fp32), z_ref.

        ``z_base`` given (only valid when :meth:`base_is_ref`: the reference logits of the same ``h``) skips the
        base head's matmul.
        """
        hf = h.float()
        z_base = self.post(self.base_head(hf)) if z_base is None else z_base
        a = self.align_head(hf)
        out = {"z_base": z_base, "a": a, "z_final": torch.add(z_base, a, alpha=alpha) if alpha != 0 else z_base}
        if ref:
            out["z_ref"] = self.ref_logits(h)
        return out

    def base_is_ref(self) -> bool:
        """Whether ``W_b`` is frozen and equal to ``W_ref`` bit for bit (same dtype, same bias): then ``z_base`` is
        ``z_ref`` exactly and ``KL(base ‖ ref)`` is 0, so the packed loss computes one of them and skips the KL.

        Checked once per weight version (a loaded or hand-edited head is checked again).
        """
        if not self.freeze_base_head or self.base_head.weight.requires_grad:
            return False
        w, r = self.base_head.weight, self.ref_head.weight
        key = (w._version, r._version, w.data_ptr(), r.data_ptr())
        if self._base_is_ref is None or self._base_is_ref[0] != key:
            bw, br = self.base_head.bias, self.ref_head.bias
            same = (
                w.dtype == r.dtype
                and torch.equal(w, r)
                and ((bw is None and br is None) or (bw is not None and br is not None and torch.equal(bw, br)))
            )
            self._base_is_ref = (key, bool(same))
        return self._base_is_ref[1]

    @torch.no_grad()
    def ref_logits(self, h: torch.Tensor) -> torch.Tensor:
        """``z_ref = post(W_ref h)`` (fp32): the original model's logits, exactly (the backbone is frozen)."""
        return self.post(self.ref_head(h.to(self.ref_head.weight.dtype))).float()

    def post(self, logits: torch.Tensor) -> torch.Tensor:
        """The model's own computation after its LM head (identity for most architectures)."""
        return logits if self.head_is_linear else arch.postprocess_logits(self.lm, logits)

    def forward(
        self,
        input_ids,
        attention_mask=None,
        position_ids=None,
        alpha: float = 1.0,
        ref: bool = True,
        select: torch.Tensor | None = None,
        heads: bool = True,
    ):
        """Heads over every position, or with ``select`` (a bool mask ``[B, L-1]``) over ``h[:, :-1][select]``.

        ``heads=False`` returns only ``{"hidden": h}`` (the packed loss applies the heads itself).
        """
        h, _ = self.hidden(input_ids, attention_mask, position_ids)
        if select is not None:
            h = h[:, :-1][select]
        out = self.heads(h, alpha=alpha, ref=ref) if heads else {}
        out["hidden"] = h
        return out

    # --------------------------------------------------------------------------------------------- inference
    def fused_head(self, alpha: float) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``W_b + alpha·W_a`` (and bias), cached per alpha: decoding costs one vocabulary matmul per token.

        The cache is keyed on the heads' version counters, so an optimizer step or an in-place edit refreshes it.
        """
        alpha = check_alpha(alpha)
        key = (
            alpha,
            self.base_head.weight._version,
            self.align_head.weight._version,
            self.base_head.weight.data_ptr(),
            self.align_head.weight.data_ptr(),
        )
        if self._fused is None or self._fused[0] != key:
            with torch.no_grad():
                w = self.base_head.weight + alpha * self.align_head.weight if alpha else self.base_head.weight.clone()
                b = None
                if self.base_head.bias is not None:
                    b = self.base_head.bias + alpha * self.align_head.bias
            self._fused = (key, w, b)
        return self._fused[1], self._fused[2]

    def invalidate(self) -> None:
        """Forget the fused head (call after changing the heads' weights by hand)."""
        self._fused = None
        self._base_is_ref = None

    def final_logits(self, h: torch.Tensor, alpha: float, fused: bool = True) -> torch.Tensor:
        if not fused or not self.head_is_linear:
            return self.heads(h, alpha=alpha, ref=False)["z_final"]
        w, b = self.fused_head(alpha)
        return nn.functional.linear(h.float(), w, b)

    def generate(self, prompts, alpha: float = 1.0, tokenizer=None, **kw):
        """Generate from prompt(s) with ``z_final = z_base + alpha·a_t`` (KV cache, batching, greedy or sampling).

        Keyword arguments go to :func:`actlab.iav.generate.generate_iav` (``max_new_tokens``, ``do_sample``,
        ``temperature``, ``top_p``, ``batch_size``, ``seed``). A single string returns a single string.
        """
        from actlab.iav.generate import generate_iav

        tok = tokenizer or self.tokenizer
        if tok is None:
            raise ActlabError("IAVModel.generate needs a tokenizer (pass tokenizer= or load with from_pretrained)")
        single = isinstance(prompts, str)
        outs = generate_iav(self, tok, [prompts] if single else list(prompts), alpha=alpha, **kw)
        return outs[0] if single else outs

    # -------------------------------------------------------------------------------------------- save / load
    def head_state(self) -> dict[str, torch.Tensor]:
        sd = {"base_head.weight": self.base_head.weight, "align_head.weight": self.align_head.weight}
        if self.base_head.bias is not None:
            sd.update({"base_head.bias": self.base_head.bias, "align_head.bias": self.align_head.bias})
        return {k: v.detach().float().cpu() for k, v in sd.items()}

    def load_head_state(self, sd: dict[str, torch.Tensor], source: str = "heads") -> None:
        own = self.head_state()
        missing = sorted(set(own) - set(sd))
        if missing:
            raise ActlabError(f"{source} lacks {', '.join(missing)}; it is not an IAV heads file")
        for k, v in own.items():
            if tuple(sd[k].shape) != tuple(v.shape):
                raise ActlabError(
                    f"{source}: {k} has shape {tuple(sd[k].shape)} but this backbone needs "
                    f"{tuple(v.shape)}; load the heads onto the backbone they were trained on"
                )
        with torch.no_grad():
            for k in own:
                mod, name = k.split(".")
                getattr(getattr(self, mod), name).copy_(sd[k].to(self.device))
        self.invalidate()

    def save_pretrained(self, path: str | Path, extra: dict | None = None) -> Path:
        """Write ``iav_heads.safetensors`` (heads only) and ``iav_config.json`` (backbone id/path) into ``path``."""
        from actlab.core.io import atomic_write_json, save_tensors

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        meta = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "backbone": str(self.backbone_id or ""),
            "ref_head_sha": self.ref_sha,
            "freeze_base_head": str(self.freeze_base_head),
        }
        save_tensors(path / HEADS_FILE, self.head_state(), metadata=meta)
        cfg = {**meta, "freeze_base_head": self.freeze_base_head, **(extra or {})}
        atomic_write_json(path / CONFIG_FILE, cfg)
        return path

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        backbone: str | None = None,
        *,
        lm=None,
        tokenizer=None,
        dtype=None,
        device=None,
        strict_backbone: bool = True,
    ) -> IAVModel:
        """Load heads onto their backbone (``backbone`` overrides the saved id). ``path`` is any of: a heads
        directory written by :meth:`save_pretrained` (or its ``iav_heads.safetensors``), a ``checkpoint-<step>/``
        directory of a run, or a run directory of ``actlab iav train`` (its final ``heads/``; for a run not yet
        finished, its newest complete ``checkpoint-<step>/``).

        ``lm``/``tokenizer`` may be passed to reuse an already loaded backbone.
        """
        from actlab.core.io import load_tensors

        f = heads_file(path)
        sd, meta = load_tensors(f)
        if meta.get("format") != FORMAT:
            raise ActlabError(f"{f} is not an IAV heads file (format {meta.get('format')!r}, expected {FORMAT!r})")
        if meta.get("format_version") != FORMAT_VERSION:
            raise ActlabError(
                f"{f} has IAV heads format version {meta.get('format_version')!r}; this actlab reads "
                f"version {FORMAT_VERSION}: retrain with `actlab iav train`"
            )
        bb = backbone or meta.get("backbone") or None
        if lm is None:
            if not bb:
                raise ActlabError(f"{f} does not name its backbone; pass backbone=")
            from actlab.core.models import load

            lm, tokenizer = load(bb, dtype=dtype, device=device)
        model = cls(lm, freeze_base_head=meta.get("freeze_base_head") == "True", tokenizer=tokenizer, backbone_id=bb)
        if strict_backbone and meta.get("ref_head_sha") and meta["ref_head_sha"] != model.ref_sha:
            raise ActlabError(
                f"the heads in {f} were trained on another backbone (lm_head sha {meta['ref_head_sha']}, "
                f"this one {model.ref_sha}); pass the backbone they were trained on"
            )
        model.load_head_state(sd, source=str(f))
        return model

    def num_trainable(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def describe(self) -> str:
        return json.dumps(
            {
                "backbone": self.backbone_id,
                "trainable": self.num_trainable(),
                "freeze_base_head": self.freeze_base_head,
            }
        )
