"""ICAE throughput: actlab's batched compress + decode vs a batch-1 loop in the reference implementation's style.

    .venv/bin/python benchmarks/peers_icae.py                   # 8 contexts × 1024 tokens, 32 new tokens, 1 thread
    .venv/bin/python benchmarks/peers_icae.py --samples 16 --context 2048 --reps 3

The published ICAE code handles one example at a time (its v2 is batch-1 only) and encodes a long context one
512-token segment per encoder forward, then prefills ``[BOS] slots [FT] prompt`` and decodes greedily with a KV cache,
batch 1. The **reference-style loop** here does exactly that on actlab's ICAE model (same weights, same rows, same
position ids, same greedy loop), so the two differ only in how the work is batched:

* **actlab**: ``ICAE.generate(contexts, prompts)`` — every segment of every sample in one encoder forward, one
  left-padded batched prefill and decode;
* **actlab, batch 1**: ``ICAE.generate([c], [p])`` per sample (segments of one sample still in one forward);
* **reference-style**: per sample, one encoder forward per segment, then batch-1 prefill + decode.

Reports generated tokens/s, median [min–max] over interleaved repetitions, and checks that all three give the same
tokens; the compression alone (all segments at once vs one forward per segment) is timed too. The model is a random Llama of the zoo ``tiny`` shape (speed depends on shapes, not weights).
"""

from __future__ import annotations

import argparse
import sys

import torch

from _bench import dump, interleave, machine, med
from actlab.icae.model import Memory, memory_position_ids, segment_plan


def reference_compress(icae, context_ids: list[int]) -> Memory:
    """One sample's memory slots, one encoder forward per segment (the reference's loop)."""
    cfg, dev, bos = icae.cfg, icae.device, icae.tok.bos_token_id
    inner = icae.base().base_model
    slots, spids = [], []
    for a, b, k in segment_plan(len(context_ids), icae.m, cfg.mean_compression_rate, cfg.adaptive_mem):
        head = [bos] if bos is not None else []
        row = head + list(context_ids[a:b]) + [icae.vocab + j for j in range(k)]
        if cfg.use_position_identifiers:
            p = [0] * len(head) + list(range(a + 1, b + 1)) + memory_position_ids(a + 1, b, k).tolist()
        else:
            p = list(range(len(row)))
        ids_t, pos = torch.tensor([row]), torch.tensor([p])
        h = inner(
            inputs_embeds=icae.token_embeds(ids_t),
            attention_mask=torch.ones_like(ids_t).to(dev),
            position_ids=pos.to(dev),
        ).last_hidden_state
        c = len(head) + b - a
        slots.append(h[0, c : c + k])
        spids.append(pos[0, c : c + k])
    return Memory([torch.cat(slots)], [torch.cat(spids)], [len(context_ids)])


def reference_style(icae, context_ids: list[int], prompt_ids: list[int], new: int) -> list[int]:
    """One sample, one encoder forward per segment, then batch-1 prefill and greedy decode."""
    return icae.greedy(icae.decoder_rows(reference_compress(icae, context_ids), "FT", [prompt_ids]), new)[0]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--context", type=int, default=1024, help="context tokens per sample (512 per segment)")
    ap.add_argument("--new", type=int, default=32, help="greedy tokens decoded per sample (EOS ignored)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    from actlab.icae.config import ICAEConfig
    from actlab.icae.model import ICAE
    from icae import _model, _text  # benchmarks/icae.py: the random tiny-shaped Llama and its text

    base, tok = _model(None, max(args.context + 256, 1024), "sdpa")
    cfg = ICAEConfig(
        fixed_mem_size=128,
        mean_compression_rate=4,
        lora_r=8,
        max_seq_len=args.context,
        use_position_identifiers=True,
        attn_implementation="sdpa",
    )
    icae = ICAE(base, tok, cfg).eval()
    icae.ignore_eos = True
    ctxs = [_text(tok, args.context, 10 + i) for i in range(args.samples)]
    prompt = "\nQuestion: what is the answer ?\nAnswer:"
    prompts = [prompt] * args.samples
    ctx_ids = icae.tokenize_contexts(ctxs)
    p_ids = tok(prompt, add_special_tokens=False)["input_ids"]
    out: dict[str, list] = {}

    def ours():
        out["actlab"] = icae.generate(ctxs, prompts, max_new_tokens=args.new)

    def ours_b1():
        out["actlab_batch1"] = [icae.generate([c], [p], max_new_tokens=args.new)[0] for c, p in zip(ctxs, prompts)]

    def ref():
        out["reference_style"] = [icae.decode_text(reference_style(icae, c, p_ids, args.new)) for c in ctx_ids]

    def comp_ours():
        icae.compress(ctx_ids)

    def comp_ref():
        for c in ctx_ids:
            reference_compress(icae, c)

    with torch.no_grad():
        times = interleave(
            {
                "actlab": ours,
                "actlab_batch1": ours_b1,
                "reference_style": ref,
                "compress_all_at_once": comp_ours,
                "compress_per_segment": comp_ref,
            },
            reps=args.reps,
        )
    comp = {k: times.pop(k) for k in ("compress_all_at_once", "compress_per_segment")}
    ntok = args.samples * args.new
    segs = len(segment_plan(len(ctx_ids[0]), icae.m, cfg.mean_compression_rate, cfg.adaptive_mem))
    print(
        f"ICAE on a random tiny-shaped Llama: {args.samples} samples × {len(ctx_ids[0])} context tokens "
        f"({segs} segments of ≤512 → {icae.m} slots each), {args.new} new tokens each"
    )
    print(f"  {machine()}")
    same = {k: out[k] == out["actlab"] for k in ("actlab_batch1", "reference_style")}
    print(
        f"  agreement: same generated text as actlab batched — batch-1: {same['actlab_batch1']}, "
        f"reference-style: {same['reference_style']}"
    )
    res = {
        "samples": args.samples,
        "context_tokens": len(ctx_ids[0]),
        "segments": segs,
        "new_tokens": args.new,
        "machine": machine(),
        "times_s": times,
        "same_outputs": same,
    }
    for k, t in times.items():
        r = med(times["reference_style"]) / med(t)
        per = [a / b for a, b in zip(times["reference_style"], t)]
        res[f"{k}_tok_s"], res[f"speedup_{k}_over_reference"] = ntok / med(t), r
        print(
            f"  {k:16s} {ntok / med(t):8.1f} tok/s [{ntok / max(t):.1f}–{ntok / min(t):.1f}]   "
            f"÷ reference-style time: {r:.2f}× [{min(per):.2f}–{max(per):.2f}]"
        )
    c1, c2 = med(comp["compress_all_at_once"]), med(comp["compress_per_segment"])
    res["compress_s"] = {"all_at_once": c1, "per_segment": c2}
    print(
        f"  where the time goes: compressing all {args.samples * segs} segments in one encoder forward {c1:.3f} s "
        f"vs one forward per segment {c2:.3f} s ({c2 / c1:.2f}×); the rest of each run is prefill + decode"
    )
    dump(args.json, res)
    return 0 if all(same.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
