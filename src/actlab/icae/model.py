"""In-context autoencoder (Ge et al., ICLR 2024) with EPL position identifiers (Zhao et al., 2409.14364).

* **encoder** = the base LM + a LoRA adapter; input per segment ``[BOS] seg [M_0 .. M_{k-1}]``; the memory slots are
  the last hidden states (after the final norm) at the memory positions.
* **decoder** = the *same* base with the adapter disabled (frozen); the slots are written into its input embeddings.
* memory-token embeddings: a separate ``nn.Embedding(m + 3, d)`` for ids ``V .. V+m-1`` (slots) and ``[AE]``,
  ``[LM]``, ``[FT]`` (ids ``V+m .. V+m+2``), ``V`` = the base vocabulary size (JetBrains layout).
* **batch > 1**: all segments of all samples go through one encoder forward (right-padded, memory tokens right after
  the real tokens, explicit position ids), slots are gathered by index; the decoder is left-padded with explicit
  position ids; generation is a greedy loop with a KV cache (HF ``generate(inputs_embeds=…)`` would derive positions
  from the mask, which breaks EPL).
* **EPL** (``use_position_identifiers``): context tokens at global pids ``1..L``; a segment ``x1..xn`` with ``k``
  slots puts slot ``j`` at ``round(x1 + (r-1)/2 + j·r)``, ``r = (xn-x1+1)/k``; in the decoder the slots keep those
  pids, ``[AE]`` sits at 0 with the reconstruction at ``1, 2, …``; ``[LM]``/``[FT]`` at ``L`` with what follows at
  ``L+1, …``.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from actlab.core.decode import device_sync as _sync_fn
from actlab.core.errors import ActlabError
from actlab.icae.config import ICAEConfig

SPECIALS = ("AE", "LM", "FT")
WEIGHTS = "icae.safetensors"
LLM_WEIGHTS = "llm.safetensors"  # SimpleLLM fine-tuned (LoRA only)


# ------------------------------------------------------------------------------------------------ position ids
def memory_position_ids(x1: int, xn: int, k: int) -> torch.Tensor:
    """EPL pids of ``k`` memory tokens summarising the chunk at global positions ``x1..xn`` (inclusive).

    ``r = (xn-x1+1)/k``; ``pid_j = round(x1 + (r-1)/2 + j·r)``. ``x1=1, xn=510, k=102`` → ``3, 8, …, 508``.
    (``torch.round`` rounds halves to even, which equals UPL's integer formula ``x1 + (r-1)//2 + j·r`` for even r.)
    """
    r = (xn - x1 + 1) / k
    return torch.linspace(x1 + (r - 1) / 2, xn - (r - 1) / 2, k, dtype=torch.float64).round().long()


def segment_plan(n: int, m: int, rate: int, adaptive: bool = True) -> list[tuple[int, int, int]]:
    """``[(start, end, k)]``: ``n_seg = ceil(n/(m·r))`` segments of ``ceil(n/n_seg)`` tokens, ``k`` slots each."""
    if n <= 0:
        raise ActlabError("empty context: there is nothing to compress (give a non-empty context)")
    n_seg = math.ceil(n / (m * rate))
    seg_len = math.ceil(n / n_seg)
    plan = []
    for s in range(n_seg):
        a, b = s * seg_len, min(n, (s + 1) * seg_len)
        if a >= b:
            break
        k = min(m, math.ceil((b - a) / rate)) if adaptive else m
        plan.append((a, b, k))
    return plan


def _left_pad_embeds(rows: Sequence[torch.Tensor], pids: Sequence[torch.Tensor]):
    """Left-pad ``[len_i, d]`` embeddings and their pids → ``(embeds, mask, position_ids)``."""
    n = max(r.shape[0] for r in rows)
    d = rows[0].shape[1]
    emb = rows[0].new_zeros((len(rows), n, d))
    mask = torch.zeros((len(rows), n), dtype=torch.long, device=rows[0].device)
    pos = torch.zeros((len(rows), n), dtype=torch.long, device=rows[0].device)
    for i, (r, p) in enumerate(zip(rows, pids)):
        emb[i, n - r.shape[0] :] = r
        mask[i, n - r.shape[0] :] = 1
        pos[i, n - r.shape[0] :] = p.to(pos.device)
    return emb, mask, pos


def _left_pad_labels(labels: Sequence[torch.Tensor], emb: torch.Tensor) -> torch.Tensor:
    """Left-pad per-row label vectors with -100 to ``emb``'s ``[B, n]``, on its device (as :func:`_left_pad_embeds`)."""
    n = emb.shape[1]
    out = torch.full((len(labels), n), -100, dtype=torch.long)
    for i, lab in enumerate(labels):
        out[i, n - lab.shape[0] :] = lab
    return out.to(emb.device)


@dataclass
class Memory:
    """Compressed contexts: ``slots[i]`` is ``[S_i, d]``, ``pids[i]`` their position ids, ``lengths[i]`` = L_i."""

    slots: list[torch.Tensor]
    pids: list[torch.Tensor]
    lengths: list[int]

    @property
    def ratios(self) -> list[float]:
        return [n / max(1, s.shape[0]) for n, s in zip(self.lengths, self.slots)]


@dataclass
class Prefill:
    """Decoder rows ready for a forward: left-padded embeddings, mask, explicit position ids, optional labels."""

    embeds: torch.Tensor
    mask: torch.Tensor
    pids: torch.Tensor
    labels: torch.Tensor | None = None


@contextlib.contextmanager
def stored_activations(model):
    """Run ``model`` without checkpointing inside the block. ICAE's frozen decoder is the base under
    ``disable_adapter``; a recompute in the backward pass would run outside that block, with the encoder's LoRA
    active (other activations; torch raises), so the decoder pass keeps its activations and only the encoder is
    checkpointed."""
    on = [m for m in model.modules() if getattr(m, "gradient_checkpointing", False) is True]
    for m in on:
        m.gradient_checkpointing = False
    try:
        yield
    finally:
        for m in on:
            m.gradient_checkpointing = True


# ---------------------------------------------------------------------------------------------- save / load
def _fingerprint(config, base_name, vocab: int, lora_r: int, lora_targets, **extra: str) -> dict[str, str]:
    """What a weights file records about its base model (checked again when it is loaded)."""
    return {
        "base_model": str(base_name),
        "model_type": str(config.model_type),
        "vocab_size": str(vocab),
        "hidden_size": str(getattr(config, "hidden_size", getattr(config, "n_embd", ""))),
        "num_hidden_layers": str(getattr(config, "num_hidden_layers", getattr(config, "n_layer", ""))),
        **extra,
        "lora_r": str(lora_r),
        "lora_targets": ",".join(lora_targets),
    }


def _weights_path(path, default_name: str):
    from pathlib import Path

    path = Path(path)
    return path if path.is_file() or path.suffix == ".safetensors" else path / default_name


def _check_fingerprint(path, meta: dict, mine: dict, keys: Sequence[str]) -> None:
    for key in keys:
        if key in meta and meta[key] != mine[key]:
            raise ActlabError(
                f"checkpoint {path} was trained on another base model or setting ({key}={meta[key]}"
                f" from base {meta.get('base_model', '?')!r}; this model has {key}={mine[key]}, "
                f"base {mine['base_model']!r})"
            )


def _load_lora(peft_model, tensors: dict, path) -> None:
    """The ``lora.*`` tensors into ``peft_model``; LoRA weights the model lacks are an ActlabError."""
    from peft import set_peft_model_state_dict

    lora = {k[len("lora.") :]: v for k, v in tensors.items() if k.startswith("lora.")}
    res = set_peft_model_state_dict(peft_model, lora)
    bad = [k for k in getattr(res, "unexpected_keys", []) if "lora" in k]
    if bad:
        raise ActlabError(f"checkpoint {path} has LoRA weights this model lacks (e.g. {bad[0]})")


# ---------------------------------------------------------------------------------------------------- shared base
def attach_lora(model, cfg) -> tuple:
    """Freeze ``model`` and attach the LoRA of ``cfg`` (``lora_r``/``lora_alpha``/``lora_dropout`` on
    ``lora_target_modules``, resolved per architecture); returns ``(peft_model, resolved targets)``."""
    from peft import LoraConfig

    from actlab.core.adapters import attach, conv1d_targets, lora_targets

    for p in model.parameters():
        p.requires_grad_(False)
    t = lora_targets(model, cfg.lora_target_modules)
    lcfg = LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=t.modules or None,
        task_type="CAUSAL_LM",
        fan_in_fan_out=conv1d_targets(model, t.modules),
        **({"target_parameters": t.parameters} if t.parameters else {}),
    )
    return attach(model, lcfg, seed=cfg.seed), t.modules + t.parameters


class _Decoding:
    """Greedy decoding with a KV cache and explicit position ids (shared by ICAE and SimpleLLM)."""

    tok = None
    vocab: int = 0
    ignore_eos: bool = False  # benchmarks: decode a fixed number of tokens
    max_positions: int | None = None  # learned absolute positions (GPT-2, OPT); None = rotary / any
    weights_file = WEIGHTS  # the file name :meth:`save` writes into a directory

    def save(self, path) -> str:
        """The trainable weights only (safetensors, atomic) with the base's fingerprint as metadata; a directory
        gets :attr:`weights_file`."""
        from actlab.core.io import save_tensors

        path = _weights_path(path, self.weights_file)
        save_tensors(path, self.trainable_state(), metadata=self.fingerprint())
        return str(path)

    def check_positions(self, last: int) -> None:
        """A learned absolute position table (GPT-2, OPT) has no row past its size: one line instead of an index
        error (rotary models take any position id)."""
        if self.max_positions is not None and last >= self.max_positions:
            from actlab.core.arch import model_type

            raise ActlabError(
                f"position id {last} is past the {self.max_positions} learned positions of "
                f"{model_type(self._decoder())}; lower max_seq_len or max_new_tokens"
            )

    def _decoder(self):
        raise NotImplementedError

    def _decoder_ctx(self):
        import contextlib

        return contextlib.nullcontext()

    def token_embeds(self, ids: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @property
    def device(self) -> torch.device:
        return self._decoder().get_input_embeddings().weight.device

    def _stop_ids(self) -> set[int]:
        if self.ignore_eos or self.tok.eos_token_id is None:
            return set()
        return {self.tok.eos_token_id}

    @torch.no_grad()
    def greedy(self, pre: Prefill, max_new_tokens: int, past=None, timings: dict | None = None) -> list[list[int]]:
        """Greedy continuation of ``pre`` (optionally after a cache ``past`` whose mask is included in ``pre.mask``),
        by core's one token loop (:func:`actlab.core.decode.decode_loop`).

        New tokens take position ``last pid + 1``; logits are restricted to the base vocabulary.
        Returns the new ids per row, cut before EOS.
        """
        from actlab.core.decode import decode_loop

        self.check_positions(int(pre.pids.max()) + max_new_tokens - 1)
        stepper = _PrefillStepper(self._decoder(), self.token_embeds, self.vocab, pre, past)
        with self._decoder_ctx():
            return decode_loop(
                stepper, max_new_tokens, stop_ids=self._stop_ids(), pad_id=self.tok.pad_token_id or 0, timings=timings
            )

    def decode_text(self, ids: list[int]) -> str:
        return self.tok.decode(ids, skip_special_tokens=True)


class _PrefillStepper:
    """The decoder after a prefill of embeddings (``[BOS] slots [special] prompt``) with explicit position ids,
    optionally after a reused cache; then one token per step at the next position."""

    def __init__(self, dec, token_embeds, vocab: int, pre: Prefill, past=None):
        self.dec, self.token_embeds, self.vocab = dec, token_embeds, vocab
        self.pre, self.past, self.mask, self.last = pre, past, pre.mask, pre.pids[:, -1]

    def start(self) -> torch.Tensor:
        pre = self.pre
        res = self.dec(
            inputs_embeds=pre.embeds,
            attention_mask=self.mask,
            position_ids=pre.pids,
            past_key_values=self.past,
            use_cache=True,
            logits_to_keep=1,
        )
        self.past = res.past_key_values
        return res.logits[:, -1, : self.vocab]

    def next(self, tokens: torch.Tensor) -> torch.Tensor:
        self.last = self.last + 1
        self.mask = torch.cat([self.mask, self.mask.new_ones((self.mask.shape[0], 1))], dim=1)
        res = self.dec(
            inputs_embeds=self.token_embeds(tokens[:, None]),
            attention_mask=self.mask,
            position_ids=self.last[:, None],
            past_key_values=self.past,
            use_cache=True,
        )
        self.past = res.past_key_values
        return res.logits[:, -1, : self.vocab]


# --------------------------------------------------------------------------------------------------------- ICAE
class ICAE(nn.Module, _Decoding):
    """ICAE on any HF causal LM.

    Args:
        model: the base causal LM (it becomes the frozen decoder; the encoder is it + LoRA).
        tok: its tokenizer.
        cfg (`ICAEConfig`): ``fixed_mem_size``, ``mean_compression_rate``, ``use_position_identifiers``, LoRA.
    """

    def __init__(self, model, tok, cfg: ICAEConfig):
        from actlab.core.arch import learned_positions

        nn.Module.__init__(self)
        if cfg.use_position_identifiers and getattr(model.config, "_attn_implementation", "") == "flash_attention_2":
            raise ActlabError("use_position_identifiers cannot run under flash_attention_2; load with sdpa or eager")
        self.cfg, self.tok = cfg, tok
        self.m = cfg.fixed_mem_size
        emb = model.get_input_embeddings().weight
        self.vocab = int(emb.shape[0])
        self.base_name = getattr(model, "actlab_name", None) or getattr(model.config, "_name_or_path", "") or ""
        self.model, self.lora_targets = attach_lora(model, cfg)
        self.max_positions = learned_positions(model)  # GPT-2 / OPT: a position table that pids must stay inside
        g = torch.Generator().manual_seed(cfg.seed)
        init = torch.randn((self.m + len(SPECIALS), emb.shape[1]), generator=g) * emb.float().std().item()
        self.memory_token_embed = nn.Embedding(self.m + len(SPECIALS), emb.shape[1]).to(emb.device, emb.dtype)
        with torch.no_grad():
            self.memory_token_embed.weight.copy_(init.to(emb.dtype) + emb.float().mean(0).to(emb.dtype))
        self.eval()

    # ------------------------------------------------------------------------------------------------ pieces
    def special_id(self, name: str) -> int:
        return self.vocab + self.m + SPECIALS.index(name)

    def base(self):
        """The causal LM with the LoRA layers injected (use under ``disable_adapter`` for the frozen decoder)."""
        return self.model.get_base_model()

    def _decoder(self):
        return self.base()

    def _decoder_ctx(self):
        return self.model.disable_adapter()

    def token_embeds(self, ids: torch.Tensor) -> torch.Tensor:
        """Embeddings of ids: base vocabulary below ``V``, memory / special tokens from ``memory_token_embed``."""
        ids = ids.to(self.device)
        table = self.base().get_input_embeddings()
        is_mem = ids >= self.vocab
        out = table(ids.clamp(max=self.vocab - 1))
        if bool(is_mem.any()):
            mem = self.memory_token_embed((ids - self.vocab).clamp(min=0)).to(out.dtype)
            out = torch.where(is_mem[..., None], mem, out)
        return out

    def trainable_state(self) -> dict[str, torch.Tensor]:
        from peft import get_peft_model_state_dict

        sd = {f"lora.{k}": v for k, v in get_peft_model_state_dict(self.model).items()}
        sd["memory_token_embed.weight"] = self.memory_token_embed.weight
        return sd

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    # --------------------------------------------------------------------------------------------- encoder
    def tokenize_contexts(self, contexts: Sequence[str]) -> list[list[int]]:
        out = []
        for c in contexts:
            if not c or not c.strip():
                raise ActlabError("empty context: there is nothing to compress (give a non-empty context)")
            ids = self.tok(c, add_special_tokens=False)["input_ids"][: self.cfg.max_seq_len]
            out.append(ids)
        return out

    def compress(self, contexts: Sequence[Sequence[int]], timings: dict | None = None) -> Memory:
        """Encode token-id contexts into memory slots; all segments of all samples in **one** forward."""
        cfg, dev = self.cfg, self.device
        bos = self.tok.bos_token_id
        rows, pids, where = [], [], []  # where: (sample, row, first memory column, k)
        for i, ids in enumerate(contexts):
            for a, b, k in segment_plan(len(ids), self.m, cfg.mean_compression_rate, cfg.adaptive_mem):
                head = [bos] if bos is not None else []
                row = head + list(ids[a:b]) + [self.vocab + j for j in range(k)]
                if cfg.use_position_identifiers:
                    p = [0] * len(head) + list(range(a + 1, b + 1)) + memory_position_ids(a + 1, b, k).tolist()
                else:
                    p = list(range(len(row)))
                where.append((i, len(rows), len(head) + b - a, k))
                rows.append(row)
                pids.append(p)
        n = max(len(r) for r in rows)
        pad = self.tok.pad_token_id if self.tok.pad_token_id is not None else 0
        ids_t = torch.full((len(rows), n), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), n), dtype=torch.long)
        pos = torch.zeros((len(rows), n), dtype=torch.long)
        for r, (row, p) in enumerate(zip(rows, pids)):
            ids_t[r, : len(row)] = torch.tensor(row)
            mask[r, : len(row)] = 1
            pos[r, : len(row)] = torch.tensor(p)
        self.check_positions(int(pos.max()))
        sync = _sync_fn(dev)
        t0 = time.perf_counter()
        inner = self.base().base_model  # the transformer body (LoRA active): last_hidden_state is post final norm
        h = inner(
            inputs_embeds=self.token_embeds(ids_t), attention_mask=mask.to(dev), position_ids=pos.to(dev)
        ).last_hidden_state
        # gather slots by index
        r_idx = torch.cat([torch.full((k,), r, dtype=torch.long) for _, r, c, k in where])
        c_idx = torch.cat([torch.arange(c, c + k) for _, r, c, k in where])
        flat = h[r_idx.to(dev), c_idx.to(dev)]
        flat_pid = pos[r_idx, c_idx]
        sync()
        if timings is not None:
            timings["compress_s"] = timings.get("compress_s", 0.0) + time.perf_counter() - t0
        slots, spids = [[] for _ in contexts], [[] for _ in contexts]
        off = 0
        for i, _, _, k in where:
            slots[i].append(flat[off : off + k])
            spids[i].append(flat_pid[off : off + k])
            off += k
        return Memory([torch.cat(s) for s in slots], [torch.cat(p) for p in spids], [len(c) for c in contexts])

    # --------------------------------------------------------------------------------------------- decoder
    def decoder_rows(
        self,
        mem: Memory,
        special: str,
        prompts: Sequence[Sequence[int]],
        targets: Sequence[Sequence[int]] | None = None,
        score_from: Sequence[int] | None = None,
    ) -> Prefill:
        """``[BOS] slots [special] prompt (target)`` per sample, left-padded, with EPL or default pids.

        ``targets`` (teacher forcing) adds labels: target token t is predicted from the position before it;
        ``score_from[i]`` leaves the first target tokens unscored (LM's ``leave_tokens_for_lm``).
        """
        epl = self.cfg.use_position_identifiers
        bos = self.tok.bos_token_id
        sp = self.special_id(special)
        rows, pids, labels = [], [], []
        for i, (slots, spid, L) in enumerate(zip(mem.slots, mem.pids, mem.lengths)):
            tgt = list(targets[i]) if targets is not None else []
            tail_ids = [sp, *prompts[i], *tgt]
            tail = self.token_embeds(torch.tensor(tail_ids, dtype=torch.long))
            head = self.token_embeds(torch.tensor([bos])) if bos is not None else tail[:0]
            rows.append(torch.cat([head, slots.to(tail.dtype), tail]))
            nh = head.shape[0]
            if epl:
                start = 0 if special == "AE" else L
                p = [0] * nh + spid.tolist() + [start + j for j in range(len(tail_ids))]
            else:
                p = list(range(nh + slots.shape[0] + len(tail_ids)))
            pids.append(torch.tensor(p, dtype=torch.long))
            if targets is not None:
                lab = torch.full((len(p),), -100, dtype=torch.long)
                skip = score_from[i] if score_from is not None else 0
                if tgt:
                    lab[len(p) - len(tgt) + skip :] = torch.tensor(tgt[skip:], dtype=torch.long)
                labels.append(lab)
        emb, mask, pos = _left_pad_embeds(rows, pids)
        self.check_positions(int(pos.max()))
        return Prefill(emb, mask, pos, _left_pad_labels(labels, emb) if targets is not None else None)

    def loss(self, pre: Prefill) -> torch.Tensor:
        """Token-averaged CE of the frozen decoder on ``pre.labels`` (gradients reach slots and special tokens)."""
        with self.model.disable_adapter(), stored_activations(self.base()):
            logits = self.base()(inputs_embeds=pre.embeds, attention_mask=pre.mask, position_ids=pre.pids).logits
        return nn.functional.cross_entropy(
            logits[:, :-1].float().reshape(-1, logits.shape[-1]), pre.labels[:, 1:].reshape(-1), ignore_index=-100
        )

    @torch.no_grad()
    def teacher_forced_argmax(self, pre: Prefill) -> list[list[int]]:
        """Argmax predictions at each scored label position (token accuracy / EM with teacher forcing)."""
        with self.model.disable_adapter():
            logits = self.base()(inputs_embeds=pre.embeds, attention_mask=pre.mask, position_ids=pre.pids).logits
        pred = logits[:, :-1, : self.vocab].argmax(-1)
        lab = pre.labels[:, 1:]
        return [pred[i][lab[i] != -100].tolist() for i in range(pred.shape[0])]

    # ----------------------------------------------------------------------------------------------- api
    @torch.no_grad()
    def generate(
        self,
        contexts: Sequence[str],
        prompts: Sequence[str] | None = None,
        special: str = "FT",
        max_new_tokens: int = 64,
        timings: dict | None = None,
    ) -> list[str]:
        """Compress ``contexts`` and generate after ``[special] prompt`` (batched; greedy)."""
        ctx = self.tokenize_contexts(contexts)
        prompts = prompts if prompts is not None else [""] * len(ctx)
        p_ids = [self.tok(p, add_special_tokens=False)["input_ids"] if p else [] for p in prompts]
        if not self.cfg.do_compress:
            return SimpleLLM.from_icae(self).generate(contexts, prompts, max_new_tokens, timings=timings)
        mem = self.compress(ctx, timings)
        out = self.greedy(self.decoder_rows(mem, special, p_ids), max_new_tokens, timings=timings)
        if timings is not None:
            timings["context_tokens"] = timings.get("context_tokens", 0) + sum(mem.lengths)
            timings["memory_slots"] = timings.get("memory_slots", 0) + sum(s.shape[0] for s in mem.slots)
        return [self.decode_text(o) for o in out]

    @torch.no_grad()
    def prefix_cache(self, mem: Memory, special: str = "FT"):
        """Prefill ``[BOS] slots [special]`` of ONE context once → ``(cache, mask, next pid)`` for many prompts."""
        pre = self.decoder_rows(mem, special, [[]])
        with self.model.disable_adapter():
            res = self.base()(
                inputs_embeds=pre.embeds,
                attention_mask=pre.mask,
                position_ids=pre.pids,
                use_cache=True,
                logits_to_keep=1,
            )
        return res.past_key_values, pre.mask, int(pre.pids[0, -1]) + 1

    @torch.no_grad()
    def generate_shared(
        self,
        context: str,
        prompts: Sequence[str],
        special: str = "FT",
        max_new_tokens: int = 64,
        timings: dict | None = None,
    ) -> list[str]:
        """Several prompts on one context: compress once, prefill ``[prefix + slots]`` once, reuse its KV cache."""
        mem = self.compress(self.tokenize_contexts([context]), timings)
        cache, pmask, nxt = self.prefix_cache(mem, special)
        return self._continue_cache(cache, pmask, nxt, prompts, max_new_tokens, timings)

    def _continue_cache(self, cache, pmask, nxt, prompts, max_new_tokens, timings):
        import copy

        p_ids = [self.tok(p, add_special_tokens=False)["input_ids"] for p in prompts]
        b = len(p_ids)
        n = max(len(p) for p in p_ids)
        if n == 0:
            raise ActlabError("empty prompt: give a question or instruction after the context")
        cache = copy.deepcopy(cache)
        cache.batch_repeat_interleave(b)
        # [prefix][pads][prompt]: pads sit between the shared prefix and each prompt (masked; explicit pids)
        ids = torch.full((b, n), self.tok.pad_token_id or 0, dtype=torch.long)
        m = torch.zeros((b, n), dtype=torch.long)
        pos = torch.zeros((b, n), dtype=torch.long)
        for i, p in enumerate(p_ids):
            ids[i, n - len(p) :] = torch.tensor(p)
            m[i, n - len(p) :] = 1
            pos[i, n - len(p) :] = torch.arange(nxt, nxt + len(p))
        dev = self.device
        mask = torch.cat([pmask.expand(b, -1).to(dev), m.to(dev)], dim=1)
        pre = Prefill(self.token_embeds(ids), mask, pos.to(dev))
        out = self.greedy(pre, max_new_tokens, past=cache, timings=timings)
        return [self.decode_text(o) for o in out]

    # ------------------------------------------------------------------------------------------ save / load
    def fingerprint(self) -> dict[str, str]:
        return _fingerprint(
            self.base().config,
            self.base_name,
            self.vocab,
            self.cfg.lora_r,
            self.lora_targets,
            fixed_mem_size=str(self.m),
        )

    def load(self, path) -> ICAE:
        """Load weights saved by :meth:`save`; a checkpoint of another base model is an ActlabError."""
        from actlab.core.io import load_tensors

        path = _weights_path(path, self.weights_file)
        tensors, meta = load_tensors(path)
        _check_fingerprint(
            path,
            meta,
            self.fingerprint(),
            ("model_type", "vocab_size", "hidden_size", "num_hidden_layers", "fixed_mem_size", "lora_r"),
        )
        _load_lora(self.model, tensors, path)
        with torch.no_grad():
            self.memory_token_embed.weight.copy_(
                tensors["memory_token_embed.weight"].to(self.memory_token_embed.weight)
            )
        return self


# ---------------------------------------------------------------------------------------------------- SimpleLLM
class SimpleLLM(_Decoding):
    """The full-context baseline: ``[BOS] context prompt`` → greedy answer, same decode loop as ICAE."""

    weights_file = LLM_WEIGHTS

    def __init__(self, model, tok, cfg: ICAEConfig | None = None, decoder_ctx=None):
        self.model, self.tok = model, tok
        self.cfg = cfg or ICAEConfig(model_type="llm")
        self.vocab = int(model.get_input_embeddings().weight.shape[0])
        self._ctx = decoder_ctx
        from actlab.core.arch import learned_positions

        self.max_positions = learned_positions(model)

    @classmethod
    def from_icae(cls, icae: ICAE) -> SimpleLLM:
        """The ICAE's frozen decoder as a full-context model (the adapter is disabled while it runs)."""
        return cls(icae.base(), icae.tok, icae.cfg, decoder_ctx=icae.model.disable_adapter)

    def _decoder(self):
        return self.model

    def _decoder_ctx(self):
        import contextlib

        return self._ctx() if self._ctx is not None else contextlib.nullcontext()

    def token_embeds(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model.get_input_embeddings()(ids.to(self.device))

    # ------------------------------------------------------------------------------------- fine-tuning (LLM-FT)
    peft = None  # the PEFT wrapper once :meth:`add_lora` ran

    def add_lora(self) -> SimpleLLM:
        """Freeze the base and attach a LoRA adapter with the config's ``lora_*`` settings (the "LLM-FT" baseline:
        the full-context decoder fine-tuned on the same data as ICAE); ``self.model`` keeps the base class with the
        LoRA layers active, so decoding is unchanged."""
        if self._ctx is not None:
            raise ActlabError(
                "this SimpleLLM shares an ICAE's decoder (SimpleLLM.from_icae); fine-tune a SimpleLLM "
                "built on its own base model"
            )
        cfg, model = self.cfg, self.model
        self.peft, self.lora_targets = attach_lora(model, cfg)
        self.model = self.peft.get_base_model()
        self._ctx = None
        return self

    def train(self, mode: bool = True) -> SimpleLLM:
        self.model.train(mode)
        return self

    def eval(self) -> SimpleLLM:
        return self.train(False)

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]

    def trainable_state(self) -> dict[str, torch.Tensor]:
        from peft import get_peft_model_state_dict

        if self.peft is None:
            raise ActlabError("SimpleLLM has no adapter to save (add_lora first)")
        return {f"lora.{k}": v for k, v in get_peft_model_state_dict(self.peft).items()}

    def fingerprint(self) -> dict[str, str]:
        base = getattr(self.model, "actlab_name", None) or getattr(self.model.config, "_name_or_path", "") or ""
        return _fingerprint(
            self.model.config,
            base,
            self.vocab,
            self.cfg.lora_r,
            getattr(self, "lora_targets", []),
            icae_model_type="llm",
        )

    def load(self, path) -> SimpleLLM:
        """Load LoRA weights saved by :meth:`save` (attaching the adapter first if needed)."""
        from actlab.core.io import load_tensors

        path = _weights_path(path, self.weights_file)
        tensors, meta = load_tensors(path)
        if "memory_token_embed.weight" in tensors:
            raise ActlabError(f"checkpoint {path} is an ICAE checkpoint; model_type: llm loads llm.safetensors")
        if self.peft is None:
            self.add_lora()
        _check_fingerprint(
            path, meta, self.fingerprint(), ("model_type", "vocab_size", "hidden_size", "num_hidden_layers", "lora_r")
        )
        _load_lora(self.peft, tensors, path)
        return self

    def loss(self, pre: Prefill) -> torch.Tensor:
        """Token-averaged CE on ``pre.labels`` (the same positions as ICAE's: the target tokens only)."""
        with self._decoder_ctx():
            logits = self.model(inputs_embeds=pre.embeds, attention_mask=pre.mask, position_ids=pre.pids).logits
        return nn.functional.cross_entropy(
            logits[:, :-1].float().reshape(-1, logits.shape[-1]), pre.labels[:, 1:].reshape(-1), ignore_index=-100
        )

    def rows(
        self, contexts: Sequence[str], prompts: Sequence[str], targets: Sequence[Sequence[int]] | None = None
    ) -> Prefill:
        """``[BOS] context prompt (target)`` per sample, left-padded; ``targets`` (token ids) add labels."""
        bos = [self.tok.bos_token_id] if self.tok.bos_token_id is not None else []
        rows, pids, labels = [], [], []
        for i, (c, p) in enumerate(zip(contexts, prompts)):
            if not c or not c.strip():
                raise ActlabError("empty context: give a non-empty context")
            ids = self.tok(c, add_special_tokens=False)["input_ids"][: self.cfg.max_seq_len]
            ids = (
                bos
                + ids
                + (
                    (self.tok(p, add_special_tokens=False)["input_ids"] if isinstance(p, str) else list(p))
                    if p
                    else []
                )
            )
            tgt = list(targets[i]) if targets is not None else []
            lab = [-100] * len(ids) + tgt
            ids += tgt
            rows.append(self.token_embeds(torch.tensor(ids, dtype=torch.long)))
            pids.append(torch.arange(len(ids)))
            labels.append(torch.tensor(lab, dtype=torch.long))
        emb, mask, pos = _left_pad_embeds(rows, pids)
        return Prefill(emb, mask, pos, _left_pad_labels(labels, emb) if targets is not None else None)

    @torch.no_grad()
    def generate(
        self,
        contexts: Sequence[str],
        prompts: Sequence[str] | None = None,
        max_new_tokens: int = 64,
        timings: dict | None = None,
        special: str | None = None,
    ) -> list[str]:
        prompts = prompts if prompts is not None else [""] * len(contexts)
        pre = self.rows(contexts, prompts)
        if timings is not None:
            timings["context_tokens"] = timings.get("context_tokens", 0) + int(pre.mask.sum())
        return [self.decode_text(o) for o in self.greedy(pre, max_new_tokens, timings=timings)]
