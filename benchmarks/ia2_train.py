"""IA2 training costs on one model, in one run: (a) act step ÷ tok step (goal ≤ 1.15, targets cached);
(b) ICL-target build with a KV cache ÷ upstream's re-forward per token at T = 8 (goal ≥ 3× faster).

    .venv/bin/python benchmarks/ia2_train.py [--model tiny] [--n 16] [--reps 20] [--T 8] [--threads 2]

(a) builds the run's targets once (cached), then times full optimizer steps (forward, backward, Adam) of a LoRA
``act`` adapter and a LoRA ``tok`` adapter (icl_outputs labels) on the same 4-example batches, interleaved, and
reports the ratio of medians. (b) times :func:`build_targets` (KV cache, batch 1 and batch 8) against
:func:`build_targets_reforward` on the same teacher prompts and checks they agree (same tokens, activations within
1e-4). Data: syn_sst2 (remap labels), prepared into a temp dir.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time

import torch

os.environ.setdefault("ACTLAB_QUIET", "1")


def _median_time(fn, reps: int) -> float:
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--n", type=int, default=16, help="train examples N (default 16)")
    ap.add_argument("--demos", type=int, default=8, help="demos per teacher prompt (default 8)")
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--T", type=int, default=8, help="T for the target-build comparison (default 8)")
    ap.add_argument("--T_train", type=int, default=1, help="T for the step-time comparison (default 1, the paper's)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from actlab.core.models import load
    from actlab.data import make_train, prepare
    from actlab.ia2 import IA2TrainConfig, losses
    from actlab.ia2 import targets as T
    from actlab.ia2.trainer import prepare as prepare_run

    tmp = tempfile.mkdtemp(prefix="ia2_bench_")
    os.environ["ACTLAB_HOME"] = os.environ.get("ACTLAB_HOME", os.path.expanduser("~/.cache/actlab"))
    prepare("syn_sst2", f"{tmp}/data", num_train_samples=200, num_val_samples=10, label_template="remap")
    make_train("syn_sst2_remap", f"{tmp}/data", num_train_examples=[args.n], num_runs=1, max_icl_demos=args.demos)
    kw = dict(
        dataset="syn_sst2_remap",
        model_id=args.model,
        data_dir=f"{tmp}/data",
        output_dir=f"{tmp}/out",
        num_train_examples=args.n,
        num_generated_tokens=args.T_train,
        cache_dir=f"{tmp}/cache",
        lora_type="qko",
        lr=1e-4,
    )

    # ---------------------------------------------------------------- (a) act step / tok step
    t0 = time.perf_counter()
    m_act, tok = load(args.model)
    pm_act, tok, items_act, tfile, hit = prepare_run(IA2TrainConfig("act", **kw), m_act, tok)
    t_build = time.perf_counter() - t0
    m_tok, _ = load(args.model)
    pm_tok, _, items_tok, _, hit2 = prepare_run(IA2TrainConfig("tok", label_type="icl_outputs", **kw), m_tok, tok)
    assert hit2, "the tok run should reuse the act run's cached targets"
    pad = tok.pad_token_id
    opts = {
        k: torch.optim.Adam([p for p in pm.parameters() if p.requires_grad], lr=1e-4)
        for k, pm in (("act", pm_act), ("tok", pm_tok))
    }
    batches = [list(range(i, i + 4)) for i in range(0, args.n - 3, 4)]
    state = {"i": 0}

    def step(kind):
        pm, items, obj = (pm_act, items_act, "act") if kind == "act" else (pm_tok, items_tok, "tok")
        b = batches[state["i"] % len(batches)]
        ls = losses.compute_losses(
            pm, [items["train"][j] for j in b], obj, pad_id=pad, site="attn_output", layers=None
        )
        ls["loss"].backward()
        opts[kind].step()
        opts[kind].zero_grad(set_to_none=True)

    pm_act.train(), pm_tok.train()
    for _ in range(3):
        step("act"), step("tok")
    t_act, t_tok = [], []
    for r in range(args.reps):
        state["i"] = r
        for kind, acc in (("act", t_act), ("tok", t_tok)):
            t1 = time.perf_counter()
            step(kind)
            acc.append(time.perf_counter() - t1)
    a, t = statistics.median(t_act), statistics.median(t_tok)

    # ---------------------------------------------------------------- (b) KV-cache targets / re-forward
    base, _ = load(args.model)
    enc = T.encode_examples(
        tok, [dict(ex) for ex in _examples(f"{tmp}/data", args.n)], args.T, max_len=base.config.max_position_embeddings
    )
    prompts = [e.teacher_ids for e in enc]
    kv1 = T.build_targets(base, tok, prompts[:2], args.T, batch_size=1)  # warm-up
    T.build_targets_reforward(base, tok, prompts[:2], args.T)
    t_kv1 = _median_time(lambda: kv1.__setitem__(0, T.build_targets(base, tok, prompts, args.T, batch_size=1)), 3)
    t_kv8 = _median_time(lambda: T.build_targets(base, tok, prompts, args.T, batch_size=8), 3)
    t_ref = _median_time(lambda: T.build_targets_reforward(base, tok, prompts, args.T), 3)
    kv = T.build_targets(base, tok, prompts, args.T, batch_size=8)
    ref = T.build_targets_reforward(base, tok, prompts, args.T)
    same_ids = all(x["ids"].tolist() == y["ids"].tolist() for x, y in zip(kv, ref, strict=True))
    max_diff = max(
        float((x["acts"] - y["acts"]).abs().max())
        for x, y in zip(kv, ref, strict=True)
        if x["acts"].shape == y["acts"].shape
    )
    lens = [len(p) for p in prompts]
    mean_k = statistics.mean(len(x["ids"]) for x in ref)

    print(
        f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"threads {args.threads}, model {args.model}"
    )
    print(f"(a) N={args.n}, batch 4, T={args.T_train}, LoRA qko r8, {args.reps} interleaved steps each")
    print(f"    act step {a * 1e3:.1f} ms, tok step {t * 1e3:.1f} ms  ->  act/tok = {a / t:.3f}  (goal <= 1.15)")
    print(f"    target build for the run (train+dev, KV cache): {t_build:.2f} s incl. model load; cache {tfile}")
    print(
        f"(b) {len(prompts)} teacher prompts ({min(lens)}-{max(lens)} tokens, {args.demos} demos), T={args.T}, "
        f"mean response {mean_k:.1f} tokens"
    )
    print(
        f"    re-forward per token {t_ref:.3f} s; KV cache batch 1 {t_kv1:.3f} s ({t_ref / t_kv1:.2f}x faster), "
        f"batch 8 {t_kv8:.3f} s ({t_ref / t_kv8:.2f}x faster)  (goal >= 3x)"
    )
    print(f"    same greedy tokens: {same_ids}; max |act difference| {max_diff:.2e}")


def _examples(data_dir: str, n: int):
    from actlab.data import load_run

    return load_run("syn_sst2_remap", n, 0, data_dir)["train"]


if __name__ == "__main__":
    main()
