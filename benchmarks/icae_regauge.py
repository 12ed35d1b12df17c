"""Re-gauge finished ICAE runs: evaluate their saved pretrained weights again with today's gauge, no training.

For each run (a directory with ``pretrain/config.json`` + ``pretrain/icae.safetensors``, e.g. ``actlab icae demo``'s
output directory or one ``rate<r>_seed<s>`` point of :func:`actlab.icae.demo.compression_figure`) it loads the
recorded config and weights (:func:`actlab.icae.demo.load_pretrained`) and autoencodes the held-out passages exactly
as the demo and the figure do (:func:`actlab.icae.demo.figure_run`, i.e. ``eval_ae`` with the gauge).

Before anything is written it checks that the run is the same run:

* the held-out and training texts regenerated today equal the ones the run wrote under ``data/``;
* the numbers that do not depend on BLEU's tokenisation (AE and no-slot NLL, name and attribute accuracy teacher-
  forced and greedy, the measured compression) equal the recorded ones (``demo_summary.json`` or
  ``figure_runs.json``) within ``--tol`` (default 5e-4: the 3 digits the docs print).

A run that does not reproduce stops the script (exit 1, nothing written) unless ``--force``. Otherwise each input
directory gets ``regauged.json`` (the new records, and for a figure directory its per-rate table, means and 95 % CIs
over seeds, Student t, as ``figure.json``), and the script prints one Markdown table of all the runs given, grouped
by (model, pretrain steps, rate), mean ± 95 % CI over seeds.

    OMP_NUM_THREADS=1 python benchmarks/icae_regauge.py runs/icae_demo_copy runs/figure   # dirs of runs or figures
    python benchmarks/icae_regauge.py runs/figure --json all.json --check_only            # reproduce, write nothing
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

#: recorded keys that must reproduce (they do not depend on BLEU's tokenisation)
STABLE = (
    "gauge/nll_ae",
    "gauge/nll_no_slots",
    "gauge/slot_gain_nats",
    "gauge/name_tf",
    "gauge/attr_tf",
    "gauge/name_greedy",
    "gauge/attr_greedy",
    "compression/rate",
)
STABLE_PREFIX = ("gauge/attr_tf/", "gauge/no_slots/", "gauge/majority/")  # in a demo summary


def _runs_of(d: Path) -> list[tuple[Path, dict | None]]:
    """``(run dir, recorded numbers or None)`` for a run directory or a figure directory."""
    if (d / "pretrain" / "config.json").is_file():
        rec = d / "demo_summary.json"
        if rec.is_file():
            s = json.loads(rec.read_text())
            s.setdefault("compression/rate", s.get("ae/compression_rate"))
            return [(d, s)]
        return [(d, None)]
    recorded = json.loads((d / "figure_runs.json").read_text()) if (d / "figure_runs.json").is_file() else []
    out = []
    for sub in sorted(p for p in d.glob("rate*_seed*") if (p / "pretrain" / "config.json").is_file()):
        rate, seed = (int(x) for x in sub.name[4:].split("_seed"))
        old = [r for r in recorded if r["rate"] == rate and r["seed"] == seed]
        out.append((sub, old[0] if old else None))
    if not out:
        sys.exit(f"{d}: neither a run (pretrain/config.json) nor a figure directory (rate*_seed*/pretrain)")
    return out


def _check_texts(run: Path, cfg) -> list[str]:
    from actlab.icae.data import pretrain_texts
    from actlab.icae.gauge import FLOOR_CANDIDATES

    bad = []
    for split, file, n in (
        ("test", "pretrain_val.jsonl", cfg.num_eval_samples),
        ("train", "pretrain_train.jsonl", FLOOR_CANDIDATES),
    ):
        p = run / "data" / file
        if not p.is_file():
            bad.append(f"no {p}")
            continue
        stored = [json.loads(x)["text"] for x in p.read_text().splitlines() if x.strip()][:n]
        if pretrain_texts(cfg, split, n) != stored:
            bad.append(f"{split} texts regenerated today differ from {p}")
    return bad


def _compare(old: dict, new: dict, tol: float) -> tuple[list[str], float]:
    keys = [k for k in old if k in STABLE or k.startswith(STABLE_PREFIX)]
    bad, worst = [], 0.0
    for k in keys:
        a, b = old[k], new.get(k)
        if a is None and b is None:
            continue
        if a is None or b is None or not (math.isfinite(a) and math.isfinite(b)):
            if not (a is not None and b is not None and math.isnan(a) and math.isnan(b)):
                bad.append(f"{k}: recorded {a}, now {b}")
            continue
        worst = max(worst, abs(a - b))
        if abs(a - b) > tol:
            bad.append(f"{k}: recorded {a:.6f}, now {b:.6f}")
    return bad, worst


def _fmt(mh: tuple[float, float], d: int = 3) -> str:
    m, h = mh
    return f"{m:.{d}f}" if not math.isfinite(h) else f"{m:.{d}f} ± {h:.{d}f}"


def table(records: list[dict]) -> str:
    """Markdown: per (model, steps, rate) the mean ± 95 % CI over seeds (Student t) and each seed's own numbers."""
    from actlab.icae.gauge import mean_ci

    groups: dict[tuple, list[dict]] = {}
    for r in records:
        groups.setdefault((r["model"], r["pretrain_steps"], r["rate"]), []).append(r)
    lines = [
        "| model | steps | rate (measured) | seeds | BLEU-1 (per seed) | random / best-constant floor | "
        "BLEU-1 − own floor (the higher) | slots add (nats/token) | attributes TF / greedy | "
        "name TF / greedy | verdicts |",
        "|" + "---|" * 11,
    ]
    for (model, steps, rate), rs in sorted(groups.items()):
        rs = sorted(rs, key=lambda r: r["seed"])
        g = lambda k, rs=rs: [r[k] for r in rs]  # noqa: E731
        margin = [r["ae/bleu1"] - max(r["gauge/floor_constant"], r["gauge/floor_random"]) for r in rs]
        per = ", ".join(f"{x:.3f}" for x in g("ae/bleu1"))
        per_m = ", ".join(f"{x:+.3f}" for x in margin)
        lines.append(
            f"| {model} | {steps} | {rate}× ({mean_ci(g('compression/rate'))[0]:.2f}) | "
            f"{', '.join(str(r['seed']) for r in rs)} | {_fmt(mean_ci(g('ae/bleu1')))} ({per}) | "
            f"{mean_ci(g('gauge/floor_random'))[0]:.3f} / {mean_ci(g('gauge/floor_constant'))[0]:.3f} | "
            f"{_fmt(mean_ci(margin))} ({per_m}) | {_fmt(mean_ci(g('gauge/slot_gain_nats')))} | "
            f"{mean_ci(g('gauge/attr_tf'))[0]:.3f} / {mean_ci(g('gauge/attr_greedy'))[0]:.3f} | "
            f"{mean_ci(g('gauge/name_tf'))[0]:.3f} / {mean_ci(g('gauge/name_greedy'))[0]:.3f} | "
            f"{'; '.join(r['verdict'].split(' (')[0] for r in rs)} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dirs", nargs="+", type=Path, help="run directories and/or compression-figure directories")
    ap.add_argument("--tol", type=float, default=5e-4, help="largest allowed change of a tokeniser-free number")
    ap.add_argument("--check_only", action="store_true", help="reproduce and compare, write nothing")
    ap.add_argument("--force", action="store_true", help="write even when a run does not reproduce")
    ap.add_argument("--json", type=Path, help="also write every new record to this file")
    a = ap.parse_args(argv)

    from actlab.core.io import atomic_write_json
    from actlab.icae.demo import figure_run, figure_table, load_pretrained

    todo = [(d, _runs_of(d)) for d in a.dirs]
    records, per_dir, failed = [], {}, False
    for d, runs in todo:
        per_dir[d] = []
        for run, old in runs:
            t0 = time.perf_counter()
            cfg, icae = load_pretrained(run)
            bad = _check_texts(run, cfg)
            rec = figure_run(icae, cfg)
            rec = {"run": str(run), "model": cfg.model_name, "pretrain_steps": cfg.max_steps, **rec}
            new = {**rec, **rec["gauge"]}
            cmp_bad, worst = _compare(old, new, a.tol) if old else (["no recorded numbers to compare"], float("nan"))
            bad += cmp_bad
            old_b = f"{old['ae/bleu1']:.3f}" if old else "—"
            old_f = f"{old['gauge/floor_constant']:.3f}" if old else "—"
            print(
                f"{run}: {cfg.model_name} {cfg.max_steps} steps rate {cfg.mean_compression_rate} seed {cfg.seed}: "
                f"BLEU-1 {old_b} -> {rec['ae/bleu1']:.3f}, best-constant floor {old_f} -> "
                f"{rec['gauge/floor_constant']:.3f}, random floor -> {rec['gauge/floor_random']:.3f}; "
                f"{rec['verdict']}; tokeniser-free numbers: largest change {worst:.1e} "
                f"({time.perf_counter() - t0:.0f} s)",
                flush=True,
            )
            for b in bad:
                print(f"  DOES NOT REPRODUCE: {b}", flush=True)
            failed |= bool(bad)
            records.append(rec)
            per_dir[d].append(rec)
            if bad and not a.force:
                print("stopped: a run does not reproduce; nothing written (--force writes anyway)")
                return 1
    print()
    print(table(records))
    if a.check_only:
        return 1 if failed else 0
    for d, recs in per_dir.items():
        out = {"regauged": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "runs": recs}
        if not (d / "pretrain").is_dir():
            rates = sorted({r["rate"] for r in recs})
            out.update(
                model=recs[0]["model"],
                seeds=sorted({r["seed"] for r in recs}),
                pretrain_steps=recs[0]["pretrain_steps"],
                per_rate=figure_table(recs, rates),
            )
        atomic_write_json(d / "regauged.json", out)
        print(f"wrote {d / 'regauged.json'}")
    if a.json:
        atomic_write_json(a.json, records)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
