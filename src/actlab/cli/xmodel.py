"""``actlab xmodel extract | align | communicate | run-all | demo`` — cross-model alignment and activation
communication (Ramesh & Li, ICML 2025).

    actlab xmodel extract --model_a tiny --model_b tiny-b --n_texts 512 --out runs/xm/pairs
    actlab xmodel align --pairs runs/xm/pairs --method procrustes --layer_a 2 --layer_b 1 --out runs/xm/maps/procrustes
    actlab xmodel communicate --model_a tiny --model_b tiny-b --task syn_countries --k 2 --j 1 --f replace
    actlab xmodel run-all --model_a tiny --model_b tiny-b --out runs/xm       (resumable)
    actlab xmodel demo                                                          (tiny → tiny-b)

Flags come from :mod:`actlab.xmodel.config`; list flags take space- or comma-separated values.
Multi-process extraction: ``torchrun --nproc_per_node 2 -m actlab.cli.main xmodel extract|run-all ...`` (run-all
shares the extraction over the processes, then rank 0 runs the rest).
"""

from __future__ import annotations

from actlab.cli.common import Family, Verb


def _extract(cfg) -> int:
    from actlab.xmodel.verbs import extract

    out = extract(cfg)
    print(f"paired activations of the texts ({cfg.texts}, at most {cfg.n_texts}) in {out}")
    return 0


def _align(cfg) -> int:
    from actlab.xmodel.verbs import align

    s = align(cfg)
    if "results" in s:
        for key, r in s["results"].items():
            print(
                f"{cfg.method} A[{r['layer_a']}] → B[{r['layer_b']}]: held-out R² {r['r2']:.4f}, MSE {r['mse']:.4g}, "
                f"cosine {r['cosine']:.4f}, raw debiased CKA {r['raw_cka_debiased']:.4f}; saved to "
                f"{cfg.out}/layer{key}"
            )
        return 0
    print(
        f"{cfg.method} A[{s['layer_a']}] → B[{s['layer_b']}]: held-out R² {s['r2']:.4f}, MSE {s['mse']:.4g}, "
        f"cosine {s['cosine']:.4f}; saved to {cfg.out}"
    )
    return 0


def _communicate(cfg) -> int:
    from actlab.xmodel.verbs import communicate

    res = communicate(cfg)
    for name, s in res["methods"].items():
        print(f"{name:8s} accuracy {100 * s['accuracy']:5.1f}%   FLOPs {s['flops']:.3g}   {s['seconds']:.2f} s")
    for r in res.get("text_similarity", {}).get("layers", {}).values():
        print(
            f"text similarity A[{r['layer_a']}] → B[{r['layer_b']}]: word F1 {r['f1']:.3f} ± {r['f1_ci95']:.3f} "
            f"(shuffled sender {r['f1_shuffled']:.3f} ± {r['f1_shuffled_ci95']:.3f}), exact {r['exact']:.2f}"
        )
    if "grid" in res:
        print(
            "grid (rows k, columns j):\n" + "\n".join(" ".join(f"{v:.2f}" for v in r) for r in res["grid"]["accuracy"])
        )
    return 0


def _run_all(cfg) -> int:
    from actlab.xmodel.experiments import format_results
    from actlab.xmodel.verbs import run_all

    res = run_all(cfg)
    if "cka" in res:  # under torchrun, ranks > 0 only share the extraction
        print(format_results(res))
    return 0


def _demo(cfg) -> int:
    from actlab.core.io import actlab_home
    from actlab.xmodel.verbs import demo

    print(demo(cfg))
    print(f"(run directory: {cfg.out or actlab_home() / 'runs' / 'xmodel-demo'}; heatmaps cka_debiased.png, grid.png)")
    return 0


FAMILY = Family(
    "xmodel",
    "cross-model alignment (CKA, Procrustes, adapters) and activation communication: "
    "extract, align, communicate, run-all, demo",
    [
        Verb(
            "extract",
            "paired activations of models A and B on the same texts (safetensors shards)",
            "actlab.xmodel.config:ExtractConfig",
            _extract,
            api="actlab.xmodel.verbs:extract",
            multiprocess=True,
            description="Run A and B on the same texts; store per-layer last-token / mean-pooled / token-aligned "
            "activations as shards with a held-out split (resumable).",
        ),
        Verb(
            "align",
            "fit a map A→B on extracted pairs; save it and its held-out scores",
            "actlab.xmodel.config:AlignConfig",
            _align,
            api="actlab.xmodel.verbs:align",
            multiprocess=True,
            description="Fit identity / procrustes / ridge / learned (the paper's W) / linear / affine / lora on the "
            "train rows of a pairs directory; score on the held-out rows.",
        ),
        Verb(
            "communicate",
            "activation communication A→B vs B alone / A alone / skyline / NL",
            "actlab.xmodel.config:CommunicateConfig",
            _communicate,
            api="actlab.xmodel.verbs:communicate",
        ),
        Verb(
            "run-all",
            "extraction + CKA + (k, j) grid + maps + communication (resumable)",
            "actlab.xmodel.config:RunAllConfig",
            _run_all,
            api="actlab.xmodel.verbs:run_all",
            multiprocess=True,
        ),
        Verb(
            "demo",
            "the pipeline on tiny → tiny-b, printed as tables",
            "actlab.xmodel.config:XModelDemoConfig",
            _demo,
            api="actlab.xmodel.verbs:demo",
            description="run-all on the zoo pair tiny (A) → tiny-b (B) with demo sizes; prints the CKA heatmap, "
            "held-out R² of every map and the communication table with compute.",
        ),
    ],
)
