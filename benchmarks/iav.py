"""IAV speed, in one run (ratios within the run; the machine is noisy):

1. decode tokens/s of IAV (one backbone forward + one fused head per token) ÷ GenARM-style decoding
   (``log π_base + α log π_ARM``: two full forwards and two KV caches per token) with an ARM of the same size;
   goal ≥ 1.8×. Also shown: IAV with the two heads applied separately (no fusion).
2. training step with the frozen reference head ÷ with a live reference model (a second body forward per step,
   its head at the same response positions); goal ≥ 1.8×. Also timed: one body forward over the batch (what the
   frozen head saves), so the rest of the step (heads, loss, backward, AdamW) can be read off. Both with a trainable
   base head (the default) and a frozen one (``--freeze_base_head``: then ``z_base`` is ``z_ref`` and the KL is 0).

Like ``actlab iav train`` on a CPU, it keeps freed memory in glibc's heap (``trainer.keep_freed_memory``; turn off
with ``--no_keep_freed_memory``).

Checks on the way: IAV at α = 0 decodes exactly like the base model; the live reference and the frozen head give the
same loss (the backbone is frozen, so they are the same function).

    .venv/bin/python benchmarks/iav.py                    # zoo tiny (built on first use), then random-tiny-L32
    .venv/bin/python benchmarks/iav.py --model random-tiny  # a random Llama of tiny's shape, no zoo needed
    .venv/bin/python benchmarks/iav.py --model random-tiny-L32  # tiny's width/vocabulary, 32 layers (body ≫ head)
    .venv/bin/python benchmarks/iav.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import torch

os.environ.setdefault("ACTLAB_QUIET", "1")


def random_tiny(layers: int = 4):
    """A random Llama with the zoo ``tiny`` shape (h128, 4 layers, vocab 2048, tied embeddings); ``layers`` deeper."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from actlab.core.models import prepare_tokenizer
    from actlab.core.testing import micro_tokenizer

    tok = micro_tokenizer()
    cfg = LlamaConfig(
        vocab_size=2048,
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    torch.manual_seed(0)
    lm = LlamaForCausalLM(cfg).eval()
    return lm, prepare_tokenizer(tok, lm)


def load_pair(name: str):
    import copy

    from actlab.core.models import load

    if name == "random-tiny":
        lm, tok = random_tiny()
    elif name.startswith("random-tiny-L"):  # e.g. random-tiny-L32: tiny's width and vocabulary, 32 layers
        lm, tok = random_tiny(int(name.rsplit("L", 1)[1]))
    else:
        lm, tok = load(name, device="cpu")
    arm = copy.deepcopy(lm)  # an ARM of the same size (its weights do not change the cost)
    ref = copy.deepcopy(lm)  # a live reference model
    return lm, arm, ref, tok


def timed(fn, reps: int) -> list[float]:
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def bench_decode(iav, lm, arm, tok, prompts, new_tokens: int, batch_size: int, reps: int) -> dict:
    from actlab.iav.generate import GenARMStepper, IAVStepper, PlainStepper, decode

    kw = dict(max_new_tokens=new_tokens, batch_size=batch_size, stop_at_eos=False, return_ids=True)
    same = decode(IAVStepper(iav, 0.0), tok, prompts, **kw) == decode(PlainStepper(lm), tok, prompts, **kw)
    runs = {
        "iav": lambda: decode(IAVStepper(iav, 1.0), tok, prompts, **kw),
        "iav_unfused": lambda: decode(IAVStepper(iav, 1.0, fused=False), tok, prompts, **kw),
        "genarm": lambda: decode(GenARMStepper(lm, arm, 1.0), tok, prompts, **kw),
    }
    for f in runs.values():
        f()  # warm-up
    times: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(reps):  # interleaved, so drifts in machine load hit all methods alike
        for k, f in runs.items():
            times[k] += timed(f, 1)
    ntok = len(prompts) * new_tokens
    tps = {k: ntok / statistics.median(v) for k, v in times.items()}
    return {
        "tokens": ntok,
        "tokens_per_s": tps,
        "ratio_iav_over_genarm": tps["iav"] / tps["genarm"],
        "ratio_unfused_over_genarm": tps["iav_unfused"] / tps["genarm"],
        "alpha0_identical_to_base": same,
    }


def bench_train(iav, ref, data, batch_size: int, reps: int) -> dict:
    from actlab.iav.config import LossConfig
    from actlab.iav.trainer import adamw, batch_loss, packed_batch

    cfg = LossConfig()
    opt = adamw([p for p in iav.parameters() if p.requires_grad], lr=1e-4)  # the trainer's optimiser
    idx = torch.arange(batch_size)
    l_head = batch_loss(iav, data, idx, cfg)[0].item()
    l_live = batch_loss(iav, data, idx, cfg, ref_lm=ref)[0].item()

    def step(ref_lm):
        loss, _ = batch_loss(iav, data, idx, cfg, ref_lm=ref_lm)
        loss.backward()
        opt.step()
        opt.zero_grad()

    def body():  # what the frozen head saves: one body forward over both sides (+ packing, negligible)
        with torch.no_grad():
            packed_batch(iav, data, idx, data.batch_length(idx))

    runs = {"frozen_head": lambda: step(None), "live_ref": lambda: step(ref), "body_forward": body}
    for f in runs.values():
        f()
    times: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(reps):
        for k, f in runs.items():
            times[k] += timed(f, 1)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "ms_per_step": {k: 1000 * v for k, v in med.items()},
        "ratio_head_over_live": med["live_ref"] / med["frozen_head"],
        "head_side_ms": 1000 * (med["frozen_head"] - med["body_forward"]),
        "loss_head": l_head,
        "loss_live": l_live,
        "same_loss": abs(l_head - l_live) < 1e-4 * max(1, abs(l_head)),
    }


def run_model(name: str, args) -> dict:
    from actlab.iav.data import load_rows, tokenize
    from actlab.iav.model import IAVModel

    lm, arm, ref, tok = load_pair(name)
    rows = load_rows("syn_hh", "test", max(args.prompts, args.train_batch))
    prompts = [r["prompt"] for r in rows[: args.prompts]]
    data = tokenize(rows[: args.train_batch], tok, args.seq_length, args.seq_length // 2)
    iavs = {}
    for mode, frozen in (("trainable_base", False), ("frozen_base", True)):
        iavs[mode] = IAVModel(lm, freeze_base_head=frozen, tokenizer=tok)
        with torch.no_grad():  # a trained-looking alignment head (zeros would be a special case for nothing)
            torch.manual_seed(0)
            iavs[mode].align_head.weight.normal_(0, 0.02)
    n_body = sum(p.numel() for n, p in lm.named_parameters() if "embed" not in n and "lm_head" not in n)
    n_head = lm.get_output_embeddings().weight.numel()
    res = {
        "model": name,
        "threads": args.threads,
        "keep_freed_memory": not args.no_keep_freed_memory,
        "params_body": n_body,
        "params_head": n_head,
        "decode": bench_decode(
            iavs["trainable_base"], lm, arm, tok, prompts, args.new_tokens, args.decode_batch, args.reps
        ),
        "train": {m: bench_train(iav, ref, data, args.train_batch, args.train_reps) for m, iav in iavs.items()},
    }
    d = res["decode"]
    print(
        f"model {name}: body {n_body / 1e6:.2f}M params, vocabulary head {n_head / 1e6:.2f}M params "
        f"(body ÷ head {n_body / n_head:.1f})"
    )
    print(
        f"decode ({len(prompts)} prompts × {args.new_tokens} tokens, batch {args.decode_batch}): "
        + ", ".join(f"{k} {v:.0f} tok/s" for k, v in d["tokens_per_s"].items())
    )
    print(
        f"  IAV ÷ GenARM = {d['ratio_iav_over_genarm']:.2f}× (goal ≥ 1.8×); unfused heads "
        f"{d['ratio_unfused_over_genarm']:.2f}×; α=0 identical to base: {d['alpha0_identical_to_base']}"
    )
    for mode, t in res["train"].items():
        print(
            f"train step, {mode.replace('_', ' ')} head (batch {args.train_batch} pairs, ≤{args.seq_length} "
            "tokens): " + ", ".join(f"{k} {v:.1f} ms" for k, v in t["ms_per_step"].items())
        )
        print(
            f"  frozen head ÷ live reference = {t['ratio_head_over_live']:.2f}× (goal ≥ 1.8×); same loss: "
            f"{t['same_loss']} ({t['loss_head']:.6f} vs {t['loss_live']:.6f})"
        )
        b, h = t["ms_per_step"]["body_forward"], t["head_side_ms"]
        print(
            f"  body forward (both sides) {b:.1f} ms; rest of the frozen-head step (heads, loss, backward, AdamW) "
            f"{h:.1f} ms; the live reference adds one body forward: (2·{b:.1f} + {h:.1f}) / ({b:.1f} + {h:.1f}) = "
            f"{(2 * b + h) / (b + h):.2f}×"
        )
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--model",
        default="tiny,random-tiny-L32",
        help="comma-separated: zoo names, paths, random-tiny, random-tiny-L<n> (default: the zoo's tiny and "
        "a 32-layer model of tiny's width and vocabulary, whose body ÷ head matches real LMs better)",
    )
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--new_tokens", type=int, default=64)
    ap.add_argument("--decode_batch", type=int, default=8)
    ap.add_argument("--train_batch", type=int, default=8)
    ap.add_argument("--seq_length", type=int, default=96)
    ap.add_argument("--reps", type=int, default=5, help="interleaved repetitions of the decode timings")
    ap.add_argument("--train_reps", type=int, default=21, help="interleaved repetitions of the step timings")
    ap.add_argument("--json", default=None)
    ap.add_argument(
        "--no_keep_freed_memory",
        action="store_true",
        help="leave glibc's malloc as it is (the trainer sets it on a CPU: trainer.keep_freed_memory)",
    )
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if not args.no_keep_freed_memory:
        from actlab.iav.trainer import keep_freed_memory

        keep_freed_memory()  # as actlab iav train does on a CPU

    results = [run_model(name.strip(), args) for name in args.model.split(",") if name.strip()]
    if args.json:
        from actlab.core.io import atomic_write_json

        atomic_write_json(args.json, results)
    print(
        json.dumps(
            {
                r["model"]: {
                    "decode_ratio": round(r["decode"]["ratio_iav_over_genarm"], 3),
                    **{f"train_ratio_{m}": round(t["ratio_head_over_live"], 3) for m, t in r["train"].items()},
                }
                for r in results
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
