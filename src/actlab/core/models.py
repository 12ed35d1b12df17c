"""Load any causal LM — an embedded zoo name, a local directory or a Hugging Face hub id — ready for batched work.

>>> model, tok = load("tiny")                          # a registered zoo name, built on first use  # doctest: +SKIP
>>> model, tok = load("Qwen/Qwen3-4B-Base")            # on a GPU machine: bf16 on cuda            # doctest: +SKIP

Padding rules (see docs/core.md):

* **scoring** (:func:`next_token_logits`, :func:`sequence_logprobs`) pads on the **right**: the real tokens of every
  row then sit at positions ``0..L-1`` exactly as when run alone, which also holds under PEFT prompt and prefix
  tuning (left padding puts pads between the virtual tokens and the text, which ``position_ids`` cannot fix);
* **generation** (:func:`generate`) pads on the **left** (the tokenizer's default here) and HF builds
  ``position_ids`` from the attention mask;
* any other forward on a left-padded batch should pass ``position_ids`` from :func:`model_inputs` (GPT-2's absolute
  positions are wrong otherwise).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch

from actlab.core.errors import ActlabError

# ------------------------------------------------------------------------------------------------ device and dtype


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` if given, else cuda > mps > cpu."""
    if device is not None:
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}


def pick_dtype(device: torch.device, dtype: str | torch.dtype | None = None) -> torch.dtype:
    """``dtype`` if given; else bf16 on cuda (fp16 where bf16 is unsupported), fp32 on mps and cpu."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype is not None and dtype != "auto":
        if dtype not in _DTYPES:
            raise ActlabError(f"unknown dtype {dtype!r}; valid: {', '.join(sorted(_DTYPES))}, auto")
        return _DTYPES[dtype]
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


# ------------------------------------------------------------------------------------------------------ resolution


def _looks_like_path(name: str) -> bool:
    return name.startswith(("/", "./", "../", "~")) or os.sep in name and os.path.exists(name.split(os.sep)[0])


def resolve(name_or_path: str) -> tuple[str, str]:
    """Classify a model reference: ``(kind, dir)`` for a registered name (``("zoo", dir)``: see
    :mod:`actlab.core.model_names`), ``("local", dir)`` or ``("hub", id)``.

    A registered name is resolved by its source (an embedded zoo name is built on first use). A path that does not
    exist, or a bare name that is neither a registered name nor a directory, is an :class:`ActlabError` that lists
    the registered names.
    """
    from actlab.core import model_names

    name = str(name_or_path)
    source = model_names.lookup(name)
    if source is not None:
        return source.kind, str(source.resolve(name))
    if os.path.isdir(os.path.expanduser(name)):
        return "local", os.path.expanduser(name)
    known = model_names.known_names()
    if _looks_like_path(name):
        raise ActlabError(
            f"model path {name!r} does not exist; give an existing directory, a hub id (org/name), "
            f"or an embedded name: {', '.join(known)}"
        )
    if "/" not in name or name.count("/") > 1:
        from actlab.core.errors import unknown_choice

        raise unknown_choice("model", name, known, hint="or a local directory, or a hub id such as Qwen/Qwen3-4B-Base")
    return "hub", name


def short_name(name_or_path: str) -> str:
    """The name used in run directories: ``meta-llama/Llama-3.2-1B`` → ``Llama-3.2-1B``, ``tiny`` → ``tiny``."""
    return Path(str(name_or_path).rstrip("/")).name


# ----------------------------------------------------------------------------------------------------- loading


def prepare_tokenizer(tok, model=None, padding_side: str = "left"):
    """Give ``tok`` a pad token (pad → eos → unk), left padding and a finite ``model_max_length``."""
    if tok.pad_token is None:
        if tok.eos_token is not None:
            tok.pad_token = tok.eos_token
        elif tok.unk_token is not None:
            tok.pad_token = tok.unk_token
        else:
            tok.add_special_tokens({"pad_token": "<pad>"})
            if model is not None:
                model.resize_token_embeddings(len(tok))
    tok.padding_side = padding_side
    if model is not None:
        maxpos = getattr(model.config, "max_position_embeddings", None) or getattr(model.config, "n_positions", None)
        if maxpos and (tok.model_max_length is None or tok.model_max_length > 10**8):
            tok.model_max_length = int(maxpos)
        if getattr(model.config, "pad_token_id", None) is None:
            model.config.pad_token_id = tok.pad_token_id
        gen = getattr(model, "generation_config", None)
        if gen is not None and gen.pad_token_id is None:
            gen.pad_token_id = tok.pad_token_id
    return tok


def _first_line(e: BaseException, limit: int = 240) -> str:
    msg = (str(e).strip().splitlines() or [type(e).__name__])[0]
    return msg[:limit]


def load_tokenizer(name_or_path: str, *, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    kind, ref = resolve(name_or_path)
    try:
        tok = AutoTokenizer.from_pretrained(ref, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as e:
        raise ActlabError(f"could not load the tokenizer of {name_or_path!r}: {_first_line(e)}") from None
    return prepare_tokenizer(tok)


def load(
    name_or_path: str = "tiny",
    *,
    dtype: str | torch.dtype | None = None,
    device: str | None = None,
    trust_remote_code: bool = False,
    attn_implementation: str | None = None,
    revision: str | None = None,
):
    """Return ``(model, tokenizer)`` in eval mode on the chosen device, tokenizer left-padded with a pad token.

    Args:
        name_or_path (`str`, defaults to ``"tiny"``): an embedded zoo name, a local directory, or a hub id.
        dtype (`str` or `torch.dtype`, *optional*): default bf16 on cuda, fp32 on mps/cpu.
        device (`str`, *optional*): default cuda > mps > cpu.
        trust_remote_code (`bool`, defaults to `False`): only when you trust the repository.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from actlab.core.progress import quiet

    if quiet():  # transformers' "Loading weights" bars would precede a one-line error
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    kind, ref = resolve(name_or_path)
    dev = pick_device(device)
    dt = pick_dtype(dev, dtype)
    kw = dict(dtype=dt, trust_remote_code=trust_remote_code)
    if attn_implementation:
        kw["attn_implementation"] = attn_implementation
    if revision and kind == "hub":
        kw["revision"] = revision
    try:
        tok = AutoTokenizer.from_pretrained(
            ref, trust_remote_code=trust_remote_code, **({"revision": revision} if revision and kind == "hub" else {})
        )
        model = AutoModelForCausalLM.from_pretrained(ref, **kw)
    except (OSError, ValueError, KeyError) as e:
        from actlab.core import model_names

        where = {"local": "the directory", "hub": "the hub"}.get(kind) or model_names.where(kind) or kind
        raise ActlabError(f"could not load model {name_or_path!r} from {where}: {_first_line(e)}") from None
    model.to(dev)
    model.eval()
    prepare_tokenizer(tok, model)
    model.actlab_name = str(name_or_path)  # remembered for run names and caches
    return model, tok


# --------------------------------------------------------------------------------------------- batching helpers


def position_ids_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions 0..n-1 over the real tokens of each row (pads get 0): right for left *and* right padding."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def peft_type(model) -> str | None:
    """``"LORA"``, ``"IA3"``, ``"PROMPT_TUNING"``, ``"PREFIX_TUNING"``, … or None for a plain model."""
    cfg = getattr(model, "active_peft_config", None)
    if cfg is None:
        return None
    t = cfg.peft_type
    return getattr(t, "value", str(t))


def prompt_offset(model) -> int:
    """Tokens PEFT prepends to the *sequence* (prompt tuning / p-tuning: ``num_virtual_tokens``; prefix tuning: 0).

    Hidden states and logits of such a model are ``offset + L`` long; slice ``[:, offset:]`` to align with inputs.
    """
    t = peft_type(model)
    if t in ("PROMPT_TUNING", "P_TUNING", "MULTITASK_PROMPT_TUNING"):
        return int(model.active_peft_config.num_virtual_tokens)
    return 0


def model_inputs(model, batch) -> dict:
    """``input_ids``/``attention_mask`` on the model's device, plus ``position_ids`` from the mask where supported.

    Prompt tuning ignores ``position_ids`` (PEFT warns), so they are not passed there: right-pad such batches.
    """
    dev = next(model.parameters()).device
    out = {"input_ids": batch["input_ids"].to(dev), "attention_mask": batch["attention_mask"].to(dev)}
    if prompt_offset(model) == 0:
        out["position_ids"] = position_ids_from_mask(out["attention_mask"])
    return out


@contextlib.contextmanager
def padding_side(tok, side: str) -> Iterator:
    old = tok.padding_side
    tok.padding_side = side
    try:
        yield tok
    finally:
        tok.padding_side = old


def encode(
    tok, texts: Sequence[str], side: str = "left", add_special_tokens: bool = True, max_length: int | None = None
):
    """Tokenize a batch with padding on ``side`` (returns PyTorch tensors)."""
    with padding_side(tok, side):
        return tok(
            list(texts),
            return_tensors="pt",
            padding=True,
            add_special_tokens=add_special_tokens,
            truncation=max_length is not None,
            max_length=max_length,
        )


def _batches(n: int, batch_size: int) -> Iterator[range]:
    for i in range(0, n, batch_size):
        yield range(i, min(n, i + batch_size))


def pad_right(seqs: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad lists of token ids → ``(input_ids, attention_mask)``."""
    n = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), n), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), n), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.as_tensor(list(s), dtype=torch.long)
        mask[i, : len(s)] = 1
    return ids, mask


def pad_left(seqs: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad lists of token ids → ``(input_ids, attention_mask)``."""
    n = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), n), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), n), dtype=torch.long)
    for i, s in enumerate(seqs):
        if len(s):
            ids[i, n - len(s) :] = torch.as_tensor(list(s), dtype=torch.long)
            mask[i, n - len(s) :] = 1
    return ids, mask


def forward_right_padded(model, seqs: Sequence[Sequence[int]], pad_id: int, **kw):
    """One forward over right-padded ``seqs``; returns ``(outputs, attention_mask, offset)``.

    ``outputs.logits[:, offset + t]`` is the prediction after token ``t`` of each row — identical to running the row
    alone, under LoRA/IA3/prompt/prefix adapters alike.
    """
    ids, mask = pad_right(seqs, pad_id)
    dev = next(model.parameters()).device
    out = model(input_ids=ids.to(dev), attention_mask=mask.to(dev), **kw)
    return out, mask, prompt_offset(model)


@torch.no_grad()
def next_token_logits(model, tok, prompts: Sequence[str], batch_size: int = 16) -> torch.Tensor:
    """Logits (fp32, ``[n, vocab]``) of the token after each prompt; batched = one by one (right padding)."""
    rows = []
    enc = [tok(p)["input_ids"] for p in prompts]
    for idx in _batches(len(enc), batch_size):
        seqs = [enc[i] for i in idx]
        out, mask, off = forward_right_padded(model, seqs, tok.pad_token_id)
        last = mask.sum(1) - 1 + off
        rows.append(out.logits[torch.arange(len(seqs)), last.to(out.logits.device)].float().cpu())
    return torch.cat(rows) if rows else torch.empty(0)


@torch.no_grad()
def sequence_logprobs(
    model, tok, prompts: Sequence[str], continuations: Sequence[str], batch_size: int = 16
) -> list[torch.Tensor]:
    """Per-token log-probs (fp32) of each continuation given its prompt (right padding; batched = one by one).

    The continuation is tokenized without special tokens and appended to the prompt's ids.
    """
    if len(prompts) != len(continuations):
        raise ActlabError(f"{len(prompts)} prompts but {len(continuations)} continuations")
    p_ids = [tok(p)["input_ids"] for p in prompts]
    c_ids = [tok(c, add_special_tokens=False)["input_ids"] for c in continuations]
    result: list[torch.Tensor] = []
    for idx in _batches(len(p_ids), batch_size):
        seqs = [p_ids[i] + c_ids[i] for i in idx]
        out, _, off = forward_right_padded(model, seqs, tok.pad_token_id)
        logp = torch.log_softmax(out.logits.float(), -1).cpu()
        for j, i in enumerate(idx):
            start, n = len(p_ids[i]), len(c_ids[i])
            pos = torch.arange(start - 1, start - 1 + n) + off
            result.append(logp[j, pos, torch.as_tensor(c_ids[i], dtype=torch.long)])
    return result


class _StopOnStrings:
    """Per-row stopping criterion: a row is done once its decoded continuation contains a stop string.

    (HF's ``stop_strings`` needs a tokenizer whose vocabulary round-trips through ``convert_tokens_to_string``; this
    works with any tokenizer.)
    """

    def __init__(self, tok, stops: Sequence[str], prompt_len: int):
        self.tok, self.stops, self.start = tok, list(stops), prompt_len

    def __call__(self, input_ids: torch.Tensor, scores, **kw) -> torch.Tensor:
        done = []
        for row in input_ids[:, self.start :]:
            text = self.tok.decode(row[-64:], skip_special_tokens=True)
            done.append(any(s in text for s in self.stops))
        return torch.tensor(done, device=input_ids.device)


def _prompt_tuning_inputs(model, ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``[pads][virtual tokens][text]`` embeddings for a left-padded batch under PEFT prompt tuning.

    PEFT prepends the virtual tokens *before* the pads, which shifts the text's positions by the pad count (and
    PEFT drops ``position_ids``), so a padded row differs from the same row alone. Putting the pads first makes
    every row identical to its unpadded run; HF then derives positions from the mask.
    """
    virt = model.get_prompt(batch_size=ids.shape[0]).to(model.word_embeddings.weight.dtype)
    emb = model.word_embeddings(ids)
    nv = virt.shape[1]
    rows, masks = [], []
    for i in range(ids.shape[0]):
        p = int((mask[i] == 0).sum())
        rows.append(torch.cat([emb[i, :p], virt[i], emb[i, p:]]))
        masks.append(torch.cat([mask[i, :p], torch.ones(nv, dtype=mask.dtype, device=mask.device), mask[i, p:]]))
    return torch.stack(rows), torch.stack(masks)


@torch.no_grad()
def generate(
    model,
    tok,
    prompts: Sequence[str],
    max_new_tokens: int = 32,
    batch_size: int = 16,
    stop_strings: Sequence[str] | None = None,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_p: float = 1.0,
    return_ids: bool = False,
    **kw,
) -> list[str] | list[list[int]]:
    """Generate continuations (left padding, KV cache); text is cut at the first stop string.

    Greedy by default; batched output equals one-by-one output, also under PEFT prompt/prefix tuning.
    ``return_ids=True`` gives the new token ids (cut at EOS, before stop-string cutting).
    """
    from transformers import StoppingCriteriaList

    outs: list = []
    dev = next(model.parameters()).device
    gen_kw = dict(max_new_tokens=max_new_tokens, do_sample=do_sample, pad_token_id=tok.pad_token_id)
    if do_sample:
        gen_kw.update(temperature=temperature, top_p=top_p)
    else:
        gen_kw.update(temperature=None, top_p=None, top_k=None)
    gen_kw.update(kw)
    virtual = prompt_offset(model) > 0
    for idx in _batches(len(prompts), batch_size):
        enc = encode(tok, [prompts[i] for i in idx], side="left")
        ids, mask = enc["input_ids"].to(dev), enc["attention_mask"].to(dev)
        if virtual:
            embeds, mask = _prompt_tuning_inputs(model, ids, mask)
            call = dict(inputs_embeds=embeds, attention_mask=mask)
            gen, start = model.get_base_model().generate, 0  # with inputs_embeds only new tokens come back
        else:
            call = dict(input_ids=ids, attention_mask=mask)
            gen, start = model.generate, ids.shape[1]
        stopping = StoppingCriteriaList([_StopOnStrings(tok, stop_strings, start)]) if stop_strings else None
        seq = gen(**call, stopping_criteria=stopping, **gen_kw)
        new = seq[:, start:].cpu()
        for row in new:
            toks = row.tolist()
            if tok.eos_token_id is not None and tok.eos_token_id in toks:
                toks = toks[: toks.index(tok.eos_token_id)]
            toks = [t for t in toks if t != tok.pad_token_id]
            if return_ids:
                outs.append(toks)
                continue
            text = tok.decode(toks, skip_special_tokens=True)
            for s in stop_strings or ():
                if s in text:
                    text = text[: text.index(s)]
            outs.append(text)
    return outs
