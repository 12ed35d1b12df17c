"""Forward time with capture of one site at the last position ÷ plain forward time (goal ≤ 1.10).

    .venv/bin/python benchmarks/capture.py [--model tiny] [--batch 16] [--seq 128] [--reps 30]

Runs plain and captured forwards interleaved (so machine noise hits both alike) and reports the ratio of medians.
Also checks the captured activation equals the model's own hidden state (block_output at layer L = hidden_states[L+1]).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from actlab.core import arch
from actlab.core.capture import capture
from actlab.core.models import load, model_inputs, pad_left


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--site", default="attn_output")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model, tok = load(args.model)
    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(args.seq // 2, args.seq + 1, (args.batch,), generator=g).tolist()
    seqs = [torch.randint(10, len(tok), (n,), generator=g).tolist() for n in lengths]
    ids, mask = pad_left(seqs, tok.pad_token_id)
    batch = model_inputs(model, {"input_ids": ids, "attention_mask": mask})
    layer = arch.num_layers(model) // 2

    # correctness: capture at block_output equals the model's own hidden state
    with torch.no_grad(), capture(model, "block_output", layers=layer, positions=-1) as cap:
        hs = model(**batch, output_hidden_states=True).hidden_states
    assert torch.equal(cap[layer], hs[layer + 1][:, -1]), "capture differs from hidden_states"

    def plain():
        with torch.no_grad():
            model(**batch)

    def captured():
        with torch.no_grad(), capture(model, args.site, layers=layer, positions=-1):
            model(**batch)

    for _ in range(3):
        plain(), captured()
    t_plain, t_cap = [], []
    for _ in range(args.reps):
        for fn, acc in ((plain, t_plain), (captured, t_cap)):
            t0 = time.perf_counter()
            fn()
            acc.append(time.perf_counter() - t0)
    mp, mc = statistics.median(t_plain), statistics.median(t_cap)
    print(
        f"model={args.model} batch={args.batch} seq<={args.seq} site={args.site} layer={layer} "
        f"threads={args.threads} reps={args.reps} ({platform.processor() or platform.machine()})"
    )
    print(f"plain forward    median {mp * 1e3:8.2f} ms")
    print(f"with capture     median {mc * 1e3:8.2f} ms")
    print(f"ratio capture/plain = {mc / mp:.3f}  (goal <= 1.10)   correctness: capture == hidden_states OK")


if __name__ == "__main__":
    main()
