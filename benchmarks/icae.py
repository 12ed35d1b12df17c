"""ICAE speed benchmark, in one run:

1. **decode with 4× memory vs full context**: one long context (default 16384 tokens), the same question, a fixed
   number of greedy tokens. ICAE decodes over ``[BOS] slots [FT] prompt`` (≈ L/4 + prompt KV entries);
   ``SimpleLLM`` over ``[BOS] context prompt``. Reports decode time ratio (goal ≥ 2×), TTFT, compression time and
   the KV-cache size of each.
2. **throughput at batch 8 vs batch 1**: 8 contexts answered in one batched call vs 8 batch-1 calls (compression +
   prefill + decode), tokens/s ratio (goal ≥ 3×); the outputs must be identical.

Timing is a property of the shapes, not the weights, so by default the model is a random Llama with the zoo
``tiny`` shape (4 layers, h128, GQA 4/2) whose RoPE range covers the long context (``tiny`` itself stops at 512
positions). ``--model NAME`` runs a real model instead (contexts are then cut to its max positions).

    .venv/bin/python benchmarks/icae.py                 # ~1-2 min on 2 CPU cores
    .venv/bin/python benchmarks/icae.py --context 4096 --new 32 --json out.json
"""

from __future__ import annotations

import argparse
import json
import random
import time

import torch


def _model(name: str | None, max_pos: int, attn: str):
    from actlab.core.testing import WORDS, micro_tokenizer

    if name:
        from actlab.core.models import load

        return load(name, attn_implementation=attn)
    from transformers import AutoModelForCausalLM, LlamaConfig

    tok = micro_tokenizer(extra_words=tuple(f"w{i}" for i in range(300)))
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=max_pos,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        attn_implementation=attn,
    )
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg).eval()
    del WORDS
    return model, tok


def _text(tok, n_tokens: int, seed: int) -> str:
    from actlab.core.testing import WORDS

    rng = random.Random(seed)
    words = [w for w in WORDS if w.isalpha()] + [f"w{i}" for i in range(300)]
    text = " ".join(rng.choice(words) for _ in range(n_tokens))
    ids = tok(text, add_special_tokens=False)["input_ids"][:n_tokens]
    return tok.decode(ids)


def _kv_mb(model, n_tokens: int, batch: int = 1) -> float:
    c = model.config
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    kv = getattr(c, "num_key_value_heads", c.num_attention_heads)
    return batch * n_tokens * c.num_hidden_layers * 2 * kv * head_dim * torch.finfo(model.dtype).bits / 8 / 2**20


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="zoo name / dir / hub id (default: random tiny-shaped Llama)")
    ap.add_argument("--context", type=int, default=16384, help="long-context tokens for part 1")
    ap.add_argument("--new", type=int, default=64, help="greedy tokens decoded")
    ap.add_argument("--batch_context", type=int, default=512, help="context tokens per sample in part 2")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--attn", default="sdpa")
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    from actlab.icae.config import ICAEConfig
    from actlab.icae.model import ICAE, SimpleLLM

    base, tok = _model(args.model, max(args.context + 256, 1024), args.attn)
    limit = getattr(base.config, "max_position_embeddings", args.context + 256) - args.new - 32
    L = min(args.context, limit)
    cfg = ICAEConfig(
        fixed_mem_size=128,
        mean_compression_rate=4,
        lora_r=8,
        max_seq_len=L,
        use_position_identifiers=True,
        attn_implementation=args.attn,
    )
    icae = ICAE(base, tok, cfg).eval()
    llm = SimpleLLM.from_icae(icae)
    icae.ignore_eos = llm.ignore_eos = True
    prompt = "\nQuestion: what is the answer ?\nAnswer:"
    ctx = _text(tok, L, 0)
    n_ctx = len(tok(ctx, add_special_tokens=False)["input_ids"])

    # ---- part 1: long context, decode over 4x memory vs full context (median of repeats)
    def run(model, **kw):
        t: dict = {}
        out = model.generate([ctx], [prompt], max_new_tokens=args.new, timings=t, **kw)
        return t, out

    run(icae), run(llm)  # warm-up
    ic, lm = [], []
    for _ in range(args.repeats):
        ic.append(run(icae)[0])
        lm.append(run(llm)[0])

    def med(rows, key):
        return sorted(r.get(key, 0.0) for r in rows)[len(rows) // 2]

    slots = ic[0]["memory_slots"]
    part1 = {
        "context_tokens": n_ctx, "memory_slots": slots, "compression_rate": n_ctx / slots, "new_tokens": args.new,
        "icae_compress_s": med(ic, "compress_s"), "icae_ttft_s": med(ic, "ttft_s"), "icae_decode_s": med(ic, "decode_s"),
        "llm_ttft_s": med(lm, "ttft_s"), "llm_decode_s": med(lm, "decode_s"),
        "icae_kv_mb": _kv_mb(base, slots + 16 + args.new), "llm_kv_mb": _kv_mb(base, n_ctx + 16 + args.new),
    }  # fmt: skip
    part1["decode_speedup"] = part1["llm_decode_s"] / part1["icae_decode_s"]
    part1["ttft_speedup_incl_compression"] = part1["llm_ttft_s"] / (part1["icae_ttft_s"] + part1["icae_compress_s"])
    part1["end_to_end_speedup"] = (part1["llm_ttft_s"] + part1["llm_decode_s"]) / (
        part1["icae_compress_s"] + part1["icae_ttft_s"] + part1["icae_decode_s"]
    )

    # ---- part 2: throughput, batch 8 vs 8 x batch 1 (same outputs)
    ctxs = [_text(tok, args.batch_context, 10 + i) for i in range(8)]
    prompts = [prompt] * 8
    icae.generate(ctxs[:2], prompts[:2], max_new_tokens=4)  # warm-up
    t0 = time.perf_counter()
    batched = icae.generate(ctxs, prompts, max_new_tokens=args.new)
    t_b = time.perf_counter() - t0
    t0 = time.perf_counter()
    single = [icae.generate([c], [p], max_new_tokens=args.new)[0] for c, p in zip(ctxs, prompts)]
    t_1 = time.perf_counter() - t0
    part2 = {"samples": 8, "context_tokens_each": args.batch_context, "new_tokens": args.new,
             "batch8_s": t_b, "batch1x8_s": t_1, "throughput_ratio": t_1 / t_b, "same_outputs": batched == single,
             "batch8_tok_s": 8 * args.new / t_b, "batch1_tok_s": 8 * args.new / t_1}  # fmt: skip
    res = {
        "model": args.model or "random tiny-shaped Llama (4L, h128)",
        "threads": args.threads,
        "attn": args.attn,
        "device": str(icae.device),
        "torch": torch.__version__,
        "long_context": part1,
        "batching": part2,
    }
    print(json.dumps(res, indent=2))
    if args.json:
        from actlab.core.io import atomic_write_json

        atomic_write_json(args.json, res)
    return res


if __name__ == "__main__":
    main()
