"""``actlab xmodel extract | align | communicate | run-all | demo`` — cross-model alignment and activation
communication (Ramesh & Li, ICML 2025).

    actlab xmodel extract --model_a tiny --model_b tiny-b --n_texts 512 --out runs/xm/pairs
    actlab xmodel align --pairs runs/xm/pairs --method procrustes --layer_a 2 --layer_b 1 --out runs/xm/maps/procrustes
    actlab xmodel communicate --model_a tiny --model_b tiny-b --task syn_countries --k 2 --j 1 --f replace
    actlab xmodel run-all --model_a tiny --model_b tiny-b --out runs/xm       (resumable)
    actlab xmodel demo                                                          (tiny → tiny-b)

Multi-process extraction: ``torchrun --nproc_per_node 2 -m actlab.cli.main xmodel extract ...``.
"""

from __future__ import annotations

import argparse
import dataclasses

from actlab.cli.common import family_parser, positive_int


def _int_list(s: str) -> list[int]:
    try:
        return [int(x) for x in s.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be comma-separated integers, got {s!r}") from None


def _str_list(s: str) -> list[str]:
    return [x.strip() for x in s.split(",") if x.strip()]


def _config_flags(p, skip=()) -> None:
    from actlab.xmodel.config import XModelConfig

    for f in dataclasses.fields(XModelConfig):
        if f.name in skip:
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        if isinstance(default, bool):
            p.add_argument(f"--{f.name}", action="store_true", default=default)
        elif isinstance(default, list):
            p.add_argument(f"--{f.name}", type=_str_list, default=None, help=f"comma-separated (default {','.join(default)})")
        elif f.name in ("k", "j"):
            p.add_argument(f"--{f.name}", type=int, default=None,
                           help="0-based block index (default: best of the dev grid)")
        elif f.name in ("dtype", "device"):
            p.add_argument(f"--{f.name}", default=None)
        else:
            p.add_argument(f"--{f.name}", type=type(default), default=None, help=f"(default {default})")


def _overrides(args, skip=()) -> dict:
    from actlab.xmodel.config import XModelConfig

    return {f.name: getattr(args, f.name) for f in dataclasses.fields(XModelConfig)
            if f.name not in skip and getattr(args, f.name, None) is not None}


def register(sub) -> None:
    verbs = family_parser(sub, "xmodel", "cross-model alignment (CKA, Procrustes, adapters) and activation "
                                         "communication: extract, align, communicate, run-all, demo")

    p = verbs.add_parser("extract", help="paired activations of models A and B on the same texts (safetensors shards)",
                         description="Run A and B on the same texts; store per-layer last-token / mean-pooled / "
                                     "token-aligned activations as shards with a held-out split (resumable).")
    p.add_argument("--model_a", required=True)
    p.add_argument("--model_b", required=True)
    p.add_argument("--texts", default="syn_passages", help="syn_passages or a .txt file, one text per line")
    p.add_argument("--n_texts", type=positive_int, default=512)
    p.add_argument("--pooling", choices=["last", "mean", "tokens"], default="last")
    p.add_argument("--layers_a", type=_int_list, default=None, help="comma-separated (default all)")
    p.add_argument("--layers_b", type=_int_list, default=None, help="comma-separated (default all)")
    p.add_argument("--heldout", type=float, default=0.2)
    p.add_argument("--shard_size", type=positive_int, default=256)
    p.add_argument("--batch_size", type=positive_int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="output directory")
    p.set_defaults(func=_extract)

    p = verbs.add_parser("align", help="fit a map A→B on extracted pairs; save it and its held-out scores",
                         description="Fit identity / procrustes / ridge / learned (the paper's W) / linear / affine / "
                                     "lora on the train rows of a pairs directory; score on the held-out rows.")
    p.add_argument("--pairs", required=True, help="a directory written by `actlab xmodel extract`")
    p.add_argument("--method", choices=["identity", "procrustes", "ridge", "learned", "linear", "affine", "lora"],
                   default="procrustes")
    p.add_argument("--layer_a", type=int, required=True)
    p.add_argument("--layer_b", type=int, required=True)
    p.add_argument("--no_scale", action="store_true", help="procrustes without isotropic scale")
    p.add_argument("--no_translate", action="store_true", help="procrustes without translation")
    p.add_argument("--ridge_lambda", type=float, default=1e-2)
    p.add_argument("--epochs", type=positive_int, default=10)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--batch_size", type=positive_int, default=32)
    p.add_argument("--temperature", type=float, default=0.07)
    p.add_argument("--mse_weight", type=float, default=1.0)
    p.add_argument("--rank", type=positive_int, default=8)
    p.add_argument("--out", required=True, help="directory for map.safetensors + map.json + scores.json")
    p.set_defaults(func=_align)

    p = verbs.add_parser("communicate", help="activation communication A→B vs B alone / A alone / skyline / NL",
                         description="A's layer-k last-token activation is written into B's layer-j last prompt "
                                     "token on the prefill pass only (f: replace/sum/mean), optionally through a map.")
    p.add_argument("--model_a", required=True)
    p.add_argument("--model_b", required=True)
    p.add_argument("--task", choices=["syn_countries", "syn_tipsheets", "syn_gsm8k", "syn_squad", "gsm8k", "squad"],
                   default="syn_countries")
    p.add_argument("--n", type=positive_int, default=100)
    p.add_argument("--split", choices=["train", "test"], default="test")
    p.add_argument("--k", type=int, default=-2, help="A's layer (0-based block output; default -2)")
    p.add_argument("--j", type=int, default=-2, help="B's layer (0-based block output; default -2)")
    p.add_argument("--f", choices=["replace", "sum", "mean"], default="replace")
    p.add_argument("--map", default=None, help="a map directory (from align / run-all) applied to A's activation")
    p.add_argument("--methods", type=_str_list, default=None, help="subset of b_alone,a_alone,skyline,nl,ac")
    p.add_argument("--grid", action="store_true", help="also search all (k, j) and write grid.png")
    p.add_argument("--max_new_tokens", type=positive_int, default=4)
    p.add_argument("--message_tokens", type=positive_int, default=16)
    p.add_argument("--batch_size", type=positive_int, default=16)
    p.add_argument("--out", default=None, help="directory for communicate.json (and grid.json/png)")
    p.set_defaults(func=_communicate)

    p = verbs.add_parser("run-all", help="extraction + CKA + (k, j) grid + maps + communication (resumable)",
                         description="Everything, into --out; rerun to resume after a kill.")
    _config_flags(p)
    p.add_argument("--out", required=True)
    p.set_defaults(func=_run_all)

    p = verbs.add_parser("demo", help="the pipeline on tiny → tiny-b, printed as tables",
                         description="run-all on the zoo pair tiny (A) → tiny-b (B) with demo sizes; prints the CKA "
                                     "heatmap, held-out R² of every map and the communication table with compute.")
    _config_flags(p)
    p.add_argument("--out", default=None, help="run directory (default $ACTLAB_HOME/runs/xmodel-demo)")
    p.set_defaults(func=_demo)


def _extract(args) -> int:
    from actlab.core.models import load
    from actlab.xmodel.config import check_pair
    from actlab.xmodel.experiments import load_texts
    from actlab.xmodel.extract import extract_pairs

    check_pair(args.model_a, args.model_b)
    if not 0.0 <= args.heldout < 1.0:
        from actlab.core.errors import ActlabError

        raise ActlabError(f"heldout must be in [0, 1), got {args.heldout}")
    texts = load_texts(args.texts, args.n_texts, args.seed)
    ma, ta = load(args.model_a)
    mb, tb = load(args.model_b)
    out = extract_pairs(ma, ta, mb, tb, texts, args.out, layers_a=args.layers_a, layers_b=args.layers_b,
                        pooling=args.pooling, shard_size=args.shard_size, batch_size=args.batch_size,
                        heldout=args.heldout, seed=args.seed, names=(args.model_a, args.model_b))
    print(f"paired activations of {len(texts)} texts in {out}")
    return 0


def _align(args) -> int:
    from actlab.core.io import atomic_write_json
    from actlab.xmodel.align import TrainConfig, fit_map
    from actlab.xmodel.experiments import _map_eval
    from actlab.xmodel.extract import load_pairs

    pairs = load_pairs(args.pairs)
    # negative indices count from the last extracted layer
    la = pairs.layers_a[args.layer_a] if -len(pairs.layers_a) <= args.layer_a < 0 else args.layer_a
    lb = pairs.layers_b[args.layer_b] if -len(pairs.layers_b) <= args.layer_b < 0 else args.layer_b
    xa, yb = pairs.split("train", "a", la), pairs.split("train", "b", lb)
    tc = TrainConfig(epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, temperature=args.temperature,
                     mse_weight=args.mse_weight)
    m = fit_map(args.method, xa, yb, scale=not args.no_scale, translate=not args.no_translate,
                lam=args.ridge_lambda, train=tc, rank=args.rank)
    m.save(args.out)
    scores = _map_eval(m, pairs.split("test", "a", la), pairs.split("test", "b", lb), args.temperature)
    atomic_write_json(f"{args.out}/scores.json", {"layer_a": la, "layer_b": lb, **scores})
    print(f"{args.method} A[{la}] → B[{lb}]: held-out R² {scores['r2']:.4f}, MSE {scores['mse']:.4g}, "
          f"cosine {scores['cosine']:.4f}; saved to {args.out}")
    return 0


def _communicate(args) -> int:
    from actlab.core.io import atomic_write_json
    from actlab.core.models import load
    from actlab.xmodel.align import load_map
    from actlab.xmodel.communicate import METHODS, evaluate, grid_search, task_rows
    from actlab.xmodel.metrics import plot_heatmap

    methods = args.methods or list(METHODS)
    from actlab.core.errors import check_choice

    for m in methods:
        check_choice("method", m, METHODS)
    W = load_map(args.map) if args.map else None
    rows = task_rows(args.task, args.n, args.split)
    ma, ta = load(args.model_a)
    mb, tb = (ma, ta) if args.model_b == args.model_a else load(args.model_b)
    res = evaluate(ma, ta, mb, tb, rows, args.task, k=args.k, j=args.j, f=args.f, W=W, methods=methods,
                   max_new_tokens=args.max_new_tokens, message_tokens=args.message_tokens, batch_size=args.batch_size)
    for name, s in res["methods"].items():
        print(f"{name:8s} accuracy {100 * s['accuracy']:5.1f}%   FLOPs {s['flops']:.3g}   {s['seconds']:.2f} s")
    if args.grid:
        from actlab.core import arch

        g = grid_search(ma, ta, mb, tb, rows, args.task, range(arch.num_layers(ma)), range(arch.num_layers(mb)),
                        args.f, W=W, max_new_tokens=args.max_new_tokens, batch_size=args.batch_size)
        res["grid"] = g
        if args.out:
            plot_heatmap(g["accuracy"], f"{args.out}/grid.png", f"AC accuracy, {args.task}", "j (B)", "k (A)")
        print("grid (rows k, columns j):\n" + "\n".join(" ".join(f"{v:.2f}" for v in r) for r in g["accuracy"]))
    if args.out:
        atomic_write_json(f"{args.out}/communicate.json", res)
    return 0


def _run_all(args) -> int:
    from actlab.xmodel.config import XModelConfig
    from actlab.xmodel.experiments import format_results, run_all

    cfg = XModelConfig(**_overrides(args))
    print(format_results(run_all(cfg, args.out)))
    return 0


def _demo(args) -> int:
    from actlab.core.io import actlab_home
    from actlab.xmodel.demo import demo

    kw = _overrides(args)
    out = args.out or str(actlab_home() / "runs" / "xmodel-demo")
    print(demo(out, **kw))
    print(f"(run directory: {out}; heatmaps cka_debiased.png, grid.png)")
    return 0
