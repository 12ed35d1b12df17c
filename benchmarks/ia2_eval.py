"""IA2 evaluation speed: batched + shared-demo KV cache vs one-by-one, with identical predictions.

    .venv/bin/python benchmarks/ia2_eval.py                 # tiny (built on first use), 1 thread
    .venv/bin/python benchmarks/ia2_eval.py --model micro   # a random micro Llama (no zoo needed)

The workload is the base-with-ICL evaluation of one run: the same ``--demos`` demos (from a synthetic remapped
sst2 pool) precede each of ``--queries`` eval queries. One-by-one = one full forward per prompt (batch 1, no
cache) — what a straightforward evaluation does; the fast path = the demos prefilled once, their KV cache expanded
to batches of right-padded queries (:func:`actlab.ia2.evaluate.shared_prefix_next_token_logits`). Reports
examples/s of both, the ratio (goal ≥ 4×), and whether the top-1 predictions (and top-10 sets) are identical.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import torch


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="tiny", help="zoo name / path, or 'micro' for a random micro Llama")
    ap.add_argument("--dataset", default="syn_sst2_remap")
    ap.add_argument("--demos", type=int, default=8)
    ap.add_argument("--queries", type=int, default=128)
    ap.add_argument("--batch_size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", help="also write the figures to this JSON file")
    args = ap.parse_args(argv)
    os.environ.setdefault("ACTLAB_QUIET", "1")
    torch.set_num_threads(args.threads)

    from actlab.core.models import load, next_token_logits
    from actlab.data import build_icl_prompt, load_pool, prepare
    from actlab.ia2.evaluate import common_prefix_len, shared_prefix_next_token_logits

    if args.model == "micro":
        from actlab.core.testing import micro_model, micro_tokenizer

        tok = micro_tokenizer()
        model = micro_model("llama", tok, hidden=64, layers=4, max_pos=2048)
        dataset = "syn_sst2"  # the micro vocabulary has no capitalised remap words
    else:
        model, tok = load(args.model)
        dataset = args.dataset
    with tempfile.TemporaryDirectory() as d:
        name = dataset.removesuffix("_remap")
        prepare(
            name,
            d,
            num_train_samples=max(64, args.demos * 2),
            num_val_samples=args.queries,
            label_template="remap" if dataset.endswith("_remap") else None,
        )
        train, val = load_pool(dataset, d, "train"), load_pool(dataset, d, "val")
    demos = train[: args.demos]
    prompts = [build_icl_prompt(demos, q) for q in val[: args.queries]]
    n = len(prompts)
    enc = [tok(p)["input_ids"] for p in prompts]
    plen = common_prefix_len(enc)

    with torch.no_grad():
        next_token_logits(model, tok, prompts[:2], batch_size=1)  # warm-up
        t = time.perf_counter()
        ref = torch.cat([next_token_logits(model, tok, [p], batch_size=1) for p in prompts])
        t_slow = time.perf_counter() - t
        t = time.perf_counter()
        fast = shared_prefix_next_token_logits(model, tok, prompts, batch_size=args.batch_size)
        t_fast = time.perf_counter() - t
        t = time.perf_counter()
        batched = next_token_logits(model, tok, prompts, batch_size=args.batch_size)
        t_batched = time.perf_counter() - t
    same_top1 = bool(torch.equal(ref.argmax(-1), fast.argmax(-1)) and torch.equal(ref.argmax(-1), batched.argmax(-1)))
    same_top10 = bool(torch.equal(ref.topk(10, -1).indices, fast.topk(10, -1).indices))
    max_diff = float((ref - fast).abs().max())
    res = {
        "model": args.model,
        "dataset": dataset,
        "queries": n,
        "demos": args.demos,
        "batch_size": args.batch_size,
        "threads": args.threads,
        "prompt_tokens_mean": sum(map(len, enc)) / n,
        "shared_prefix_tokens": plen,
        "one_by_one_ex_per_s": n / t_slow,
        "batched_no_cache_ex_per_s": n / t_batched,
        "batched_prefix_cache_ex_per_s": n / t_fast,
        "speedup": t_slow / t_fast,
        "speedup_batched_no_cache": t_slow / t_batched,
        "identical_top1": same_top1,
        "identical_top10": same_top10,
        "max_abs_logit_diff": max_diff,
    }
    print(
        f"IA2 eval on {args.model} ({dataset}): {n} queries × {args.demos} demos, "
        f"{res['prompt_tokens_mean']:.0f} tokens/prompt, {plen} shared, {args.threads} thread(s)"
    )
    print(f"  one-by-one                 {res['one_by_one_ex_per_s']:8.1f} ex/s")
    print(
        f"  batched (no cache)         {res['batched_no_cache_ex_per_s']:8.1f} ex/s  "
        f"({res['speedup_batched_no_cache']:.1f}×)"
    )
    print(
        f"  batched + prefix KV cache  {res['batched_prefix_cache_ex_per_s']:8.1f} ex/s  ({res['speedup']:.1f}×, "
        f"goal ≥ 4×)"
    )
    print(
        f"  identical top-1 predictions: {same_top1}; identical top-10 sets: {same_top10}; max |Δlogit| {max_diff:.2e}"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2)
    return 0 if same_top1 else 1


if __name__ == "__main__":
    sys.exit(main())
