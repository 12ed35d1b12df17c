"""How close to the machine: achieved FLOP/s of the zoo build step and the IA2 training step ÷ a measured matmul peak.

    .venv/bin/python benchmarks/efficiency.py                        # tiny's shape and h512/8 layers, 1 thread
    .venv/bin/python benchmarks/efficiency.py --shapes 128x4,512x8 --steps 8 --profile

Peak: ``torch.mm`` in fp32 on this machine with the same threads — large square GEMMs (1024³, 2048³) and the
zoo step's own GEMM shapes (rows = token slots in the batch; k, n = hidden, MLP and vocabulary widths), median of
interleaved repetitions; the peak is the best of them (on a loaded machine the large squares can come out lower than
the cache-resident step shapes). Achieved: the FLOPs of one step counted by
``torch.utils.flop_counter.FlopCounterMode`` (every matmul and attention kernel, forward and backward) ÷ its median
time (``--clock cpu``, the default: the process's CPU time, so that on a shared machine the time spent waiting for a
core counts for neither; ``--clock wall`` for elapsed time). Goal: ≥ 25 % of the peak. With ``--profile`` a ``torch.profiler`` table of one step shows where the
rest of the time goes.

* **zoo build step** — the zoo trainer's real step (label-weighted next-token loss, gradient clipping, AdamW) on the
  main-phase batches of the ``tiny`` spec (batch 24 documents), at the spec's shape and at wider ones (``--shapes``
  ``HIDDENxLAYERS``; the MLP is 2× hidden as in the spec, tokenizer and corpus are the zoo's).
* **IA2 training step** — ``act`` (LoRA qko, r 8) on 4 examples of a ``syn_sst2`` run, N = 16, 8 demos, the trainer's
  ``compute_losses`` + backward + Adam (as ``benchmarks/ia2_train.py``), on random models of the same shapes.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import torch

from _bench import dump, interleave, machine, med
from actlab.core.testing import micro_tokenizer


def flops_of(fn) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as fc:
        fn()
    return float(fc.get_total_flops())


def mm_peak(shapes: list[tuple[int, int, int]], reps: int, clock=time.perf_counter) -> dict[str, float]:
    """GFLOP/s of ``torch.mm`` [m, k] × [k, n] for each shape (fp32), median of interleaved repetitions."""
    fns, flops = {}, {}
    for m, k, n in shapes:
        a, b = torch.randn(m, k), torch.randn(k, n)
        key = f"{m}x{k}x{n}"
        fns[key] = lambda a=a, b=b: torch.mm(a, b)
        flops[key] = 2.0 * m * k * n
    times = interleave(fns, reps=reps, warmup=2, clock=clock)
    return {k: flops[k] / med(t) / 1e9 for k, t in times.items()}


def llama(tok, hidden: int, layers: int, vocab: int, max_pos: int = 512):
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=max(4, hidden // 32),
        num_key_value_heads=max(2, hidden // 64),
        max_position_embeddings=max_pos,
        tie_word_embeddings=True,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    torch.manual_seed(0)
    return LlamaForCausalLM(cfg)


def zoo_step(hidden: int, layers: int, zoo_tok):
    from actlab.zoo.build import get_spec
    from actlab.zoo.corpus import batch
    from actlab.zoo.tokenizer import label_scaffold_ids
    from actlab.zoo.train import _loss

    spec = get_spec("tiny")
    model = llama(
        zoo_tok,
        hidden,
        layers,
        len(zoo_tok),
        spec.model.max_position_embeddings if hasattr(spec.model, "max_position_embeddings") else 512,
    ).train()
    opt = torch.optim.AdamW(model.parameters(), lr=spec.train.lr, betas=(0.9, 0.95))
    scaffold = torch.tensor(label_scaffold_ids(zoo_tok))
    first = spec.corpus.warmup_steps if spec.corpus.warmup_mix else 0
    batches = [batch(zoo_tok, spec.corpus, spec.seed, first + s, spec.train.batch_size) for s in range(4)]
    state = {"i": 0}

    def step():
        b = batches[state["i"] % len(batches)]
        state["i"] += 1
        loss = _loss(model, b, scaffold, spec.train.label_loss_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), spec.train.grad_clip)
        opt.step()

    tokens = sum(int(b["attention_mask"].sum()) for b in batches) / len(batches)
    rows = sum(b["input_ids"].numel() for b in batches) / len(batches)
    return step, model, tokens, rows


def ia2_step(hidden: int, layers: int, tmp: str):
    from actlab.data import make_train, prepare
    from actlab.ia2 import IA2TrainConfig, losses
    from actlab.ia2.trainer import prepare as prepare_run

    tok = micro_tokenizer()
    model = llama(tok, hidden, layers, 2048).eval()
    d = f"{tmp}/data"
    if not os.path.exists(d):
        prepare("syn_sst2", d, num_train_samples=200, num_val_samples=10)
        make_train("syn_sst2", d, num_train_examples=[16], num_runs=1, max_icl_demos=8)
    cfg = IA2TrainConfig(
        "act",
        dataset="syn_sst2",
        model_id=f"random-h{hidden}-L{layers}",
        data_dir=d,
        output_dir=f"{tmp}/out",
        num_train_examples=16,
        num_generated_tokens=1,
        cache_dir=f"{tmp}/cache-{hidden}-{layers}",
        lora_type="qko",
        lr=1e-4,
    )
    pm, tok, items, _, _ = prepare_run(cfg, model, tok)
    opt = torch.optim.Adam([p for p in pm.parameters() if p.requires_grad], lr=1e-4)
    batches = [list(range(i, i + 4)) for i in range(0, 13, 4)]
    state = {"i": 0}
    pm.train()

    def step():
        b = batches[state["i"] % len(batches)]
        state["i"] += 1
        ls = losses.compute_losses(
            pm, [items["train"][j] for j in b], "act", pad_id=tok.pad_token_id, site="attn_output", layers=None
        )
        ls["loss"].backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step, pm, None, None


def profile_table(fn, rows: int = 12) -> tuple[str, float]:
    """``torch.profiler`` table of one call (self CPU time) and the share of that time in matmul kernels."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    ka = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in ka)
    mm = sum(e.self_cpu_time_total for e in ka if e.key in ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm"))
    return ka.table(sort_by="self_cpu_time_total", row_limit=rows), mm / total if total else float("nan")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shapes", default="128x4,512x8", help="HIDDENxLAYERS, comma-separated (tiny: 128x4)")
    ap.add_argument("--steps", type=int, default=6, help="timed steps of each kind (interleaved)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--profile", action="store_true", help="print a torch.profiler table of one step of each")
    ap.add_argument("--no_ia2", action="store_true")
    ap.add_argument(
        "--clock",
        default="cpu",
        choices=("cpu", "wall"),
        help="cpu (default): the process's CPU time, which leaves out waiting for a core on a shared "
        "machine (needs --threads 1); wall: elapsed time",
    )
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.clock == "cpu" and args.threads != 1:
        print("efficiency: --clock cpu adds up the CPU time of every thread; use --threads 1 or --clock wall")
        return 2
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    from actlab.zoo.build import get_spec
    from actlab.zoo.tokenizer import train_tokenizer

    zoo_tok = train_tokenizer(get_spec("tiny").tokenizer)
    shapes = [tuple(int(x) for x in s.split("x")) for s in args.shapes.split(",") if s]
    res: dict = {"machine": machine(), "threads": args.threads, "rows": []}
    print(f"Achieved FLOP/s ÷ measured fp32 matmul peak ({args.clock} clock); {machine()}")
    res["clock"] = args.clock
    squares = mm_peak([(1024, 1024, 1024), (2048, 2048, 2048)], reps=5, clock=clock)
    res["peak_square_gflops"] = squares
    print("  matmul peak (torch.mm, fp32): " + ", ".join(f"{k} {v:.1f}" for k, v in squares.items()) + " GFLOP/s")
    tmp = tempfile.mkdtemp(prefix="actlab_eff_")
    all_peaks = list(squares.values())
    for hidden, layers in shapes:
        kinds = {"zoo build": zoo_step(hidden, layers, zoo_tok)}
        if not args.no_ia2:
            kinds["IA2 act"] = ia2_step(hidden, layers, tmp)
        fns = {k: v[0] for k, v in kinds.items()}
        flops = {k: flops_of(f) for k, f in fns.items()}
        times = interleave(fns, reps=args.steps, warmup=1, clock=clock)
        zoo_tokens, zoo_rows = kinds["zoo build"][2], kinds["zoo build"][3]
        vocab = len(zoo_tok)
        r = int(zoo_rows)
        padded = -(-vocab // 64) * 64  # what-if: the vocabulary padded to a multiple of 64
        shape_peak = mm_peak(
            [(r, hidden, 2 * hidden), (r, hidden, vocab), (r, hidden, padded), (r, hidden, hidden)],
            reps=5,
            clock=clock,
        )
        print(
            f"    zoo step's own GEMM shapes (token slots × k × n; n = {padded}: the vocabulary padded to 64): "
            + ", ".join(f"{s} {g:.1f} GFLOP/s" for s, g in shape_peak.items())
        )
        all_peaks.extend(shape_peak.values())
        for k, f in fns.items():
            model = kinds[k][1]
            n_params = sum(p.numel() for p in model.parameters())
            achieved = flops[k] / med(times[k]) / 1e9
            row = {
                "kind": k,
                "hidden": hidden,
                "layers": layers,
                "params": n_params,
                "flops_per_step": flops[k],
                "step_s": med(times[k]),
                "step_s_range": [min(times[k]), max(times[k])],
                "achieved_gflops": achieved,
                "shape_peaks_gflops": shape_peak,
            }
            line = (
                f"  {k:10s} h{hidden} L{layers} ({n_params / 1e6:.2f}M params): {flops[k] / 1e9:.2f} GFLOP/step in "
                f"{med(times[k]) * 1e3:.1f} ms [{min(times[k]) * 1e3:.1f}–{max(times[k]) * 1e3:.1f}] → "
                f"{achieved:.1f} GFLOP/s"
            )
            if k == "zoo build":
                line += f" ({zoo_tokens:.0f} real tokens in {zoo_rows:.0f} slots per batch)"
            if args.profile:
                table, mm_share = profile_table(f)
                row["matmul_share_of_cpu_time"] = mm_share
                line += f"; matmul kernels {100 * mm_share:.0f} % of the step's CPU time\n{table}"
            print(line)
            res["rows"].append(row)
    peak = max(all_peaks)  # the best this machine reached in this run
    res["peak_gflops"] = peak
    print(f"  peak = best matmul measured in this run: {peak:.1f} GFLOP/s")
    for row in res["rows"]:
        row["fraction_of_peak"] = row["achieved_gflops"] / peak
        print(
            f"  {row['kind']:10s} h{row['hidden']} L{row['layers']}: {row['achieved_gflops']:.1f} GFLOP/s = "
            f"{100 * row['fraction_of_peak']:.1f} % of peak (goal ≥ 25 %)"
        )
    dump(args.json, res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
