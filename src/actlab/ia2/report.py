"""``report.html``: one self-contained page per experiment with the result table and the plots side by side."""

from __future__ import annotations

import html
import time
from collections.abc import Sequence
from pathlib import Path

from actlab.core.io import atomic_write_text

_CSS = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:1em 0}
td,th{border:1px solid #ccc;padding:4px 10px;text-align:right}
th{background:#f3f3f3} td:first-child,th:first-child{text-align:left}
.plots{display:flex;flex-wrap:wrap;gap:12px} .plots figure{margin:0} .plots img{max-width:560px;border:1px solid #eee}
.note{color:#666;font-size:90%}
"""


def table_html(rows: Sequence[dict]) -> str:
    from actlab.ia2.plots import METRIC_COLUMNS, fmt_cell

    head = "".join(
        f"<th>{html.escape(h)}</th>"
        for h in ["Method", "N", "runs", *[c[1] for c in METRIC_COLUMNS], "chosen hyperparameters"]
    )
    body = []
    for r in rows:
        hp = r.get("hp") or {}
        hp_s = ", ".join(f"{k}={v}" for k, v in hp.items() if v not in ("None", None))
        cells = [
            html.escape(r["name"]),
            "—" if r["N"] is None else str(r["N"]),
            str(r["runs"]),
            *[fmt_cell(r[key], scale) for key, _, scale in METRIC_COLUMNS],
            html.escape(hp_s),
        ]
        body.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def paired_html(rows: Sequence[dict]) -> str:
    from actlab.ia2.plots import fmt_cell

    if not rows:
        return '<p class="note">No method pair shares runs.</p>'
    head = "".join(f"<th>{h}</th>" for h in ("Method", "vs", "N", "runs", "Δ accuracy (points)"))
    body = "".join(
        "<tr>"
        + "".join(
            f"<td>{html.escape(c)}</td>"
            for c in (
                r["name"],
                r["vs"],
                str(r["N"]),
                str(r["runs"]),
                fmt_cell(r["diff"], 100.0, sign=True) + (" *" if r["diff"].excludes_zero() else ""),
            )
        )
        + "</tr>"
        for r in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def write_report(exp, out_dir: str | Path, pngs: Sequence[Path]) -> Path:
    """Write ``out_dir/report.html`` (PNG paths relative to it) and return its path."""
    from actlab.ia2.plots import paired_rows, summary_rows

    out_dir = Path(out_dir)
    rows = summary_rows(exp)
    figs = "".join(
        f'<figure><img src="{html.escape(Path(p).name)}" alt="{html.escape(Path(p).stem)}">'
        f"<figcaption>{html.escape(Path(p).stem)}</figcaption></figure>"
        for p in pngs
    )
    title = (
        f"IA2 — {exp.model}: trained on {exp.trained_dataset}, evaluated on {exp.eval_dataset}, "
        f"ICL demos from {exp.icl_source} (≤{exp.icl_max_demos})"
    )
    ood = " (out of distribution)" if exp.icl_source != exp.eval_dataset else ""
    doc = f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{_CSS}</style></head><body>
<h1>{html.escape(title)}{ood}</h1>
<p class="note">Mean ± 95 % confidence interval over runs (Student t; one run: no interval). Differences between
methods are paired by run (same training examples and demo pool): mean ± 95 % CI of the per-run difference, * where
the interval excludes 0. Trained models are scored <b>without</b> demos; "ICL" is the base model with
min(demos, N−1) demos drawn from each run's remaining pool. Per method and N, the hyperparameters with the best mean
without-ICL accuracy are shown (the official selection rule, which selects on the eval set). ECE: 15 equal-count bins,
confidence = top-1 probability renormalised over the top-10. Mode: {"uncertainty" if exp.uncertainty else "standard"}.
Generated {time.strftime("%Y-%m-%d %H:%M:%S")}.</p>
<h2>Results</h2>
{table_html(rows)}
<h2>Paired differences</h2>
{paired_html(paired_rows(exp))}
<h2>Plots</h2>
<div class="plots">{figs}</div>
</body></html>
"""
    path = out_dir / "report.html"
    atomic_write_text(path, doc)
    return path
