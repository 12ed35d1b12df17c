"""Cross-model benchmarks (docs/benchmarks.md, "Cross-model").

1. Debiased linear CKA at n = 4096, d = 1024: our estimator (feature-space form, float64) vs a straightforward
   O(n²) reference (Gram matrices + Song et al.'s unbiased HSIC, float64): time and value.
2. AC vs NL compute on the demo task (syn_countries, tiny → tiny-b): the paper's §3.2 FLOPs and measured wall time.
   The zoo models are used when built; otherwise random-init models with the zoo's exact configs and tokenizer
   (same compute, meaningless accuracy — the script says which).

    .venv/bin/python benchmarks/xmodel.py [--n 4096 --d 1024] [--n_eval 100] [--threads 1] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch


def bench_cka(n: int, d: int, seed: int = 0) -> dict:
    from actlab.xmodel.metrics import cka_features, cka_gram

    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g)
    Y = X[:, : d // 2] @ torch.randn(d // 2, d, generator=g) / (d // 2) ** 0.5 + 2.0 * torch.randn(n, d, generator=g)
    Y = Y + 50.0  # a large shared offset, as residual streams have
    t0 = time.perf_counter()
    ours = cka_features(X, Y, debiased=True)
    t_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    ref = cka_gram(X.double(), Y.double(), debiased=True)
    t_ref = time.perf_counter() - t0
    return {
        "n": n,
        "d": d,
        "ours": ours,
        "reference_gram_float64": ref,
        "abs_diff": abs(ours - ref),
        "seconds_ours": round(t_ours, 3),
        "seconds_reference": round(t_ref, 3),
        "speedup": round(t_ref / t_ours, 2),
    }


def _models(name_a: str, name_b: str):
    from actlab.zoo.build import is_built, is_zoo_name

    if not (is_zoo_name(name_a) and is_zoo_name(name_b)) or (is_built(name_a) and is_built(name_b)):
        from actlab.core.models import load

        return load(name_a), load(name_b), "trained models"
    from actlab.core.models import prepare_tokenizer
    from actlab.zoo.specs import ZOO
    from actlab.zoo.tokenizer import train_tokenizer
    from actlab.zoo.train import make_model

    out = []
    for name in (name_a, name_b):
        spec = ZOO[name]
        tok = prepare_tokenizer(train_tokenizer(spec.tokenizer))
        torch.manual_seed(spec.seed)
        m = make_model(spec, tok).eval()
        prepare_tokenizer(tok, m)
        out.append((m, tok))
    return out[0], out[1], "random-init models with the zoo configs (zoo not built: compute only)"


def bench_ac_nl(name_a: str, name_b: str, n_eval: int, k: int, j: int, repeats: int = 3) -> dict:
    from actlab.xmodel.communicate import evaluate, task_rows
    from actlab.xmodel.demo import DEMO

    (ma, ta), (mb, tb), kind = _models(name_a, name_b)
    rows = task_rows(DEMO["task"], n_eval, "test")
    evaluate(ma, ta, mb, tb, rows[:4], DEMO["task"], k=k, j=j, methods=["nl", "ac"])  # warm-up
    runs = [
        evaluate(
            ma,
            ta,
            mb,
            tb,
            rows,
            DEMO["task"],
            k=k,
            j=j,
            max_new_tokens=DEMO["max_new_tokens"],
            message_tokens=DEMO["message_tokens"],
            methods=["b_alone", "skyline", "nl", "ac"],
        )
        for _ in range(repeats)
    ]
    r = runs[0]
    for m in r["methods"]:  # median wall time over the repeats
        r["methods"][m]["seconds"] = statistics.median(x["methods"][m]["seconds"] for x in runs)
    r["ac_over_nl_seconds"] = r["methods"]["ac"]["seconds"] / r["methods"]["nl"]["seconds"]
    return {
        "models": f"{name_a} → {name_b}",
        "kind": kind,
        "repeats": repeats,
        "task": DEMO["task"],
        "n": n_eval,
        "k": k,
        "j": j,
        "P_a": r["P_a"],
        "P_b": r["P_b"],
        "T": r["T"],
        "M": r["methods"]["nl"].get("M"),
        "flops": {m: s["flops"] for m, s in r["methods"].items()},
        "seconds": {m: s["seconds"] for m, s in r["methods"].items()},
        "accuracy": {m: s["accuracy"] for m, s in r["methods"].items()},
        "ac_over_nl_flops": r["ac_over_nl_flops"],
        "ac_over_nl_seconds": r["ac_over_nl_seconds"],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=4096)
    p.add_argument("--d", type=int, default=1024)
    p.add_argument("--model_a", default="tiny")
    p.add_argument("--model_b", default="tiny-b")
    p.add_argument("--k", type=int, default=2)
    p.add_argument("--j", type=int, default=1)
    p.add_argument("--n_eval", type=int, default=100)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--skip", choices=["cka", "ac"], default=None)
    p.add_argument("--out", default=None)
    args = p.parse_args()
    os.environ.setdefault("ACTLAB_QUIET", "1")
    torch.set_num_threads(args.threads)
    res: dict = {"threads": args.threads}
    if args.skip != "cka":
        res["cka"] = bench_cka(args.n, args.d)
        print(json.dumps(res["cka"], indent=1), flush=True)
    if args.skip != "ac":
        res["ac_vs_nl"] = bench_ac_nl(args.model_a, args.model_b, args.n_eval, args.k, args.j)
        print(json.dumps(res["ac_vs_nl"], indent=1), flush=True)
    if args.out:
        from actlab.core.io import atomic_write_json

        atomic_write_json(args.out, res)


if __name__ == "__main__":
    main()
