"""IA2 in low-data settings on tiny: does IA2 priming (IA2→SFT) beat SFT alone? (docs/ia2.md, "Looking for the
paper's effect").

    .venv/bin/python benchmarks/ia2_lowdata.py                        # every setting, runs 0-4, 1 thread
    .venv/bin/python benchmarks/ia2_lowdata.py --settings wide8 --runs 5-14
    .venv/bin/python benchmarks/ia2_lowdata.py --settings sst2_n4 --runs 0-4 --lr 3e-3

Each setting is the IA2 demo's pipeline (``actlab.ia2.demo.run_demo``: tok / act / tna / a2t, LoRA r8 on q,k,o,
≤ 50 epochs, patience 5, ground-truth labels, ≤ 7 ICL demos, 200 eval examples) with its own dataset and N, in
``{--work_root}/{setting}[_lr{lr}]``; finished runs are reused, so asking for more runs only trains the new ones.
Printed per setting, over the selected runs: accuracy and ECE (mean ± sample sd), each method minus SFT paired by
run (mean, sd, t, wins), and accuracy on eval queries whose key word is / is not among the run's N training keys
(for syn_* classification sets, whose class is set by the text's last word).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import statistics as st
from pathlib import Path

import torch

#: setting -> (dataset, N). Defined before any of them was run (docs/ia2.md lists the order of events).
SETTINGS = {
    "sst2_n8": ("syn_sst2_remap", 8),  # the demo's default
    "sst2_n4": ("syn_sst2_remap", 4),  # the paper's Table 1 N
    "agnews_n8": ("syn_agnews_remap", 8),
    "wide8": ("syn_sst2_wide_remap", 8),  # 6 keys per class: 8 examples leave keys unseen
    "wide16": ("syn_sst2_wide_remap", 16),
    "landmarks8": ("syn_landmarks", 8),  # tiny's one real prior (landmark -> country), country-name labels
    "landmarks16": ("syn_landmarks", 16),
}
METHODS = ("icl", "tok", "act", "tna", "a2t")
NAMES = {"icl": "ICL (base+demos)", "tok": "SFT", "act": "IA2", "tna": "IA2+SFT", "a2t": "IA2→SFT"}


def _key(ex: dict) -> str:
    return ex["prompt"].split("\n")[0].split()[-1]


def _sd(x: list[float]) -> float:
    return st.stdev(x) if len(x) > 1 else 0.0


def collect(work_dir: str, dataset: str, N: int, lr: float, runs: list[int]) -> dict:
    """Per method and run: accuracy, ECE, accuracy on seen-key and unseen-key eval queries."""
    pool = json.loads((Path(work_dir) / "data" / dataset / "main.json").read_text())
    ev = pool["val_examples"]
    out: dict[str, dict[int, dict]] = {}
    for f in glob.glob(f"{work_dir}/outputs/evaluations/*_uncertainty/{dataset}/*.json"):
        if "_base_without_icl_" in f:
            continue
        doc = json.loads(Path(f).read_text())
        c = doc["config"]
        run = c.get("run_idx")
        lr_f = c.get("trained", {}).get("lr") if c["model_type"] != "base" else lr
        if run not in runs or c.get("num_train_examples") != N or lr_f != lr:
            continue
        m = "icl" if c["model_type"] == "base" else c["model_type"]
        part = "with_icl" if m == "icl" else "without_icl"
        preds = doc["predictions"][part]
        run_file = json.loads((Path(work_dir) / "data" / dataset / "train" / f"{N}_{run}.json").read_text())
        seen = {_key(e) for e in run_file["train"]["examples"]}
        s = [p["correct"] for p, e in zip(preds, ev) if _key(e) in seen]
        u = [p["correct"] for p, e in zip(preds, ev) if _key(e) not in seen]
        out.setdefault(m, {})[run] = {
            "acc": 100 * doc[part]["top1_accuracy"],
            "ece": doc[part]["ece"],
            "acc_seen": 100 * sum(s) / len(s) if s else float("nan"),
            "acc_unseen": 100 * sum(u) / len(u) if u else float("nan"),
            "unseen_frac": len(u) / len(preds),
        }
    return out


def summarize(res: dict, runs: list[int]) -> tuple[list[str], dict]:
    """Per method mean ± 95 % CI over runs; each method − SFT paired by run with its 95 % CI (actlab.core.stats)."""
    from actlab.core.stats import fmt, mean_ci, paired_diff

    lines, summary = [], {}
    lines.append("  mean ± 95 % CI over runs (Student t); differences paired by run, * = the CI excludes 0")
    for m in METHODS:
        if m not in res:
            continue
        rr = [res[m][r] for r in runs if r in res[m]]
        acc, ece = [x["acc"] for x in rr], [x["ece"] for x in rr]
        seen = [x["acc_seen"] for x in rr if x["acc_seen"] == x["acc_seen"]]
        unseen = [x["acc_unseen"] for x in rr if x["acc_unseen"] == x["acc_unseen"]]
        ca, ce = mean_ci(acc), mean_ci(ece)
        summary[m] = {
            "n": len(rr),
            "acc": st.mean(acc),
            "acc_sd": _sd(acc),
            "acc_ci95": ca.half,
            "ece": st.mean(ece),
            "ece_sd": _sd(ece),
            "ece_ci95": ce.half,
            "acc_seen_key": st.mean(seen) if seen else None,
            "acc_unseen_key": st.mean(unseen) if unseen else None,
        }
        lines.append(
            f"  {NAMES[m]:17s} acc {fmt(ca):>12s}   ECE {fmt(ce, digits=3):>13s}"
            f"   seen-key acc {st.mean(seen) if seen else float('nan'):5.1f}"
            f"   unseen-key acc {st.mean(unseen) if unseen else float('nan'):5.1f}   (n={len(rr)})"
        )
    if "tok" in res:
        for m in ("act", "tna", "a2t", "icl"):
            if m not in res:
                continue
            both = [r for r in runs if r in res[m] and r in res["tok"]]
            d = [res[m][r]["acc"] - res["tok"][r]["acc"] for r in both]
            de = [res[m][r]["ece"] - res["tok"][r]["ece"] for r in both]
            if len(d) < 2:
                continue
            t = st.mean(d) / (_sd(d) / len(d) ** 0.5) if _sd(d) > 0 else float("nan")
            dd, dde = paired_diff(d, [0.0] * len(d)), paired_diff(de, [0.0] * len(de))
            summary[f"{m}-tok"] = {
                "acc_diff": st.mean(d),
                "acc_diff_ci95": dd.half,
                "sd": _sd(d),
                "t": t,
                "wins": sum(x > 0 for x in d),
                "n": len(d),
                "ece_diff": st.mean(de),
                "ece_diff_ci95": dde.half,
                "ece_lower": sum(x < 0 for x in de),
            }
            lines.append(
                f"  {NAMES[m]} − SFT (paired): acc {fmt(dd, sign=True)}{' *' if dd.excludes_zero() else ''} "
                f"(t {t:+.2f}, higher in {sum(x > 0 for x in d)}/{len(d)} runs)   ECE "
                f"{fmt(dde, digits=3, sign=True)} (lower in "
                f"{sum(x < 0 for x in de)}/{len(d)})"
            )
    return lines, summary


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    ap.add_argument("--runs", default="0-4", help="run indices, 'a-b' inclusive (runs 0..b are trained)")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--work_root", default="ia2_demo/lowdata")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", help="also write the summaries to this JSON file")
    args = ap.parse_args(argv)
    os.environ.setdefault("ACTLAB_QUIET", "1")
    torch.set_num_threads(args.threads)
    lo, hi = map(int, args.runs.split("-")) if "-" in args.runs else (int(args.runs), int(args.runs))

    from actlab.core.logs import setup_logging
    from actlab.core.models import load
    from actlab.ia2.demo import DemoConfig, run_demo

    setup_logging()  # the demo's step lines on stderr, as under the CLI
    model, tok = load("tiny")
    report, lines_all = {}, []
    for name in args.settings:
        dataset, N = SETTINGS[name]
        wd = str(Path(args.work_root) / (name if args.lr == 1e-3 else f"{name}_lr{args.lr:g}"))
        out = run_demo(
            DemoConfig(work_dir=wd, dataset=dataset, N=N, num_runs=hi + 1, lr=args.lr), preloaded=(model, tok)
        )
        runs = list(range(lo, hi + 1))
        lines, summary = summarize(collect(wd, dataset, N, args.lr, runs), runs)
        head = f"{name}: {dataset}, N={N}, lr {args.lr:g}, runs {lo}-{hi} ({out['seconds']:.0f} s)"
        lines_all += [head, *lines]
        report[name] = {"dataset": dataset, "N": N, "lr": args.lr, "runs": runs, "summary": summary}
    print("\n" + "\n".join(lines_all))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
