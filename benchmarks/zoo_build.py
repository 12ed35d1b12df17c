"""Zoo build time: measure a zoo entry's training step and extrapolate the full build to an idle 2-core machine.

The dev machine is shared, so a full build's wall time says little. This script times, in one process and
interleaved, (a) the reference step of feasibility.md §4 (tiny Llama 4L/h128, batch 16×128, fwd+bwd+AdamW: 104 ms
on an idle 2-core machine with 2 threads) and (b) the zoo entry's own training step as the build runs it (its
label-weighted loss, gradient clipping, AdamW) on its real batches — steps from each phase of its curriculum (the
copy-task warm-up and the main mixture have different batch shapes), weighted by the phase's length. The ratio gives
the entry's step time on the idle machine; the build estimate adds tokenizer training and the ICL evals, timed the
same way (scaled by the same contention factor).

    .venv/bin/python benchmarks/zoo_build.py --name tiny --steps 30
"""

from __future__ import annotations

import argparse
import time

import torch

# feasibility.md §4 on an idle machine: 104 ms with 2 threads (19.7 K tok/s); with 1 thread ~14 K tok/s -> 146 ms
REF_MS_IDLE = {1: 146.0, 2: 104.0}


def _ref_step_fn():
    from transformers import AutoModelForCausalLM, LlamaConfig

    cfg = LlamaConfig(vocab_size=512, hidden_size=128, intermediate_size=256, num_hidden_layers=4,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512)  # fmt: skip
    m = AutoModelForCausalLM.from_config(cfg)
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3)
    x = torch.randint(0, 512, (16, 128))

    def step():
        loss = m(input_ids=x, labels=x).loss
        opt.zero_grad()
        loss.backward()
        opt.step()

    return step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--name", default="tiny")
    ap.add_argument("--steps", type=int, default=30, help="timed steps of each kind (interleaved in rounds of 5)")
    ap.add_argument("--threads", type=int, default=2, choices=(1, 2))
    ap.add_argument(
        "--eval_tasks",
        type=int,
        default=40,
        help="time the final eval on this many tasks and scale linearly to the spec's eval_tasks (default 40)",
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from actlab.zoo.build import evaluate_icl, get_spec
    from actlab.zoo.corpus import batch
    from actlab.zoo.tokenizer import label_scaffold_ids, train_tokenizer
    from actlab.zoo.train import _loss, make_model

    spec = get_spec(args.name)
    t0 = time.perf_counter()
    tok = train_tokenizer(spec.tokenizer)
    t_tok = time.perf_counter() - t0
    model = make_model(spec, tok)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=spec.train.lr, betas=(0.9, 0.95))
    scaffold = torch.tensor(label_scaffold_ids(tok))
    ref = _ref_step_fn()
    for _ in range(3):  # warm-up
        ref()
    # the curriculum's phases: (first step, number of steps); the warm-up phase only if the spec has one
    warm = min(spec.corpus.warmup_steps, spec.train.steps) if spec.corpus.warmup_mix else 0
    phases = {k: v for k, v in {"warm-up": (0, warm), "main": (warm, spec.train.steps - warm)}.items() if v[1] > 0}
    t_ref = 0.0
    t_zoo = dict.fromkeys(phases, 0.0)
    n_tok = dict.fromkeys(phases, 0)
    n_zoo = dict.fromkeys(phases, 0)
    for r in range(0, args.steps, 5):
        t = time.perf_counter()
        for _ in range(5):
            ref()
        t_ref += time.perf_counter() - t
        for name, (first, length) in phases.items():
            t = time.perf_counter()
            for s in range(first + r % length, first + r % length + 5):
                b = batch(tok, spec.corpus, spec.seed, s, spec.train.batch_size)
                loss = _loss(model, b, scaffold, spec.train.label_loss_weight)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), spec.train.grad_clip)
                opt.step()
                n_tok[name] += int(b["attention_mask"].sum())
                n_zoo[name] += 1
            t_zoo[name] += time.perf_counter() - t
    n = (args.steps + 4) // 5 * 5
    ref_ms = 1000 * t_ref / n
    zoo_ms = {k: 1000 * t_zoo[k] / n_zoo[k] for k in phases}
    ref_idle = REF_MS_IDLE[args.threads]
    factor = ref_ms / ref_idle  # > 1: this machine is slower than the idle reference
    t = time.perf_counter()
    model.eval()
    evaluate_icl(model, tok, n_tasks=args.eval_tasks)
    t_eval = (time.perf_counter() - t) * spec.train.eval_tasks / args.eval_tasks
    if spec.train.eval_every:  # quick checks during training: 60 tasks x k=0,4 each time
        t_eval += (spec.train.steps // spec.train.eval_every) * t_eval * (60 * 2) / (spec.train.eval_tasks * 9)
    t_train = sum(phases[k][1] * zoo_ms[k] / 1000 for k in phases)
    est = (t_train + t_eval + t_tok) / factor
    steps = " + ".join(
        f"{phases[k][1]} × {zoo_ms[k]:.0f} ms ({zoo_ms[k] / factor:.0f} idle; {n_tok[k] / t_zoo[k]:,.0f} tok/s)"
        for k in phases
    )
    print(
        f"| {time.strftime('%Y-%m-%d')} | {args.name} | {args.threads} | {ref_ms:.0f} ms (idle: {ref_idle:.0f}) "
        f"| {factor:.2f}x | {steps} | {t_eval:.0f} s | **{est / 60:.1f} min** |"
    )


if __name__ == "__main__":
    main()
