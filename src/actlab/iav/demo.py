"""``actlab iav demo``: the whole IAV story on a zoo model, offline on a CPU.

1. train IAV heads on ``syn_hh`` (polite ``chosen`` vs rude ``rejected``; corrected loss, frozen reference head),
   twice: with a trainable base head (the IAV design) and with a frozen one (``π ∝ π_ref·exp(α·a_t)``, the ablation);
2. train the baselines with TRL: a DPO model (``DPOTrainer``) and a GenARM ARM (``CPOTrainer``, sigmoid, no NLL);
3. sample on held-out ``syn_hh`` prompts: base, both IAVs at α ∈ {0, .5, 1, 1.5, 2}, GenARM (α = 1), DPO;
4. score with the programmatic preference reward; the side-by-side table; write ``reward_vs_alpha.png``;
5. all of it once per seed (training data order and init, baselines, sampled prompts and generations), then the table
   over seeds: each method's mean reward as mean ± 95 % CI over seeds, its difference to the base model and (IAV) to
   α = 0 of the same heads, paired by seed, with their CIs (``summary.md``, ``summary.json``,
   ``reward_vs_alpha.png`` with CI error bars).

Everything lands under ``output_dir/seed<s>/`` and is skipped on rerun when complete. :func:`demo` returns the
summary with its ``text`` (each seed's table, then the table over seeds), which ``actlab iav demo`` prints; the
step lines are logged at info.

``--model_id dialogs`` uses a stand-in built here on first use (about 4 minutes on one CPU thread): the zoo's ``tiny``
shape and tokenizer trained with the zoo's own builder on its hh-like dialogs only (70 % polite, 30 % rude replies, as
in the zoo corpora), for when the zoo models are not built yet; see docs/iav.md.
"""

from __future__ import annotations

import logging
from pathlib import Path

from actlab.core.errors import ActlabError

DIALOGS = "dialogs"

log = logging.getLogger(__name__)


def dialogs_model() -> Path:
    """Build (once) the dialogs-only stand-in: zoo ``tiny`` shape and tokenizer, corpus = the hh-like dialogs."""
    from actlab.core.io import actlab_home
    from actlab.zoo.build import build
    from actlab.zoo.specs import CorpusSpec, TrainSpec, ZooSpec

    final = Path(actlab_home()) / "iav" / "dialogs-model"
    if (final / "config.json").exists():
        return final
    spec = ZooSpec(
        name="iav-dialogs",
        description="tiny shape and tokenizer, hh-like dialogs only (IAV demo)",
        corpus=CorpusSpec({"dialogs": 1.0}, max_len=96),
        train=TrainSpec(steps=500, batch_size=16, warmup=30, threads=1, ckpt_every=100, eval_every=0, eval_tasks=10),
        seed=3,
    )
    log.info(f"building the dialogs stand-in model into {final} (resumable)")
    build(spec, final)
    return final


SEEDS = (0, 1, 2)


def demo(
    model_id: str = "tiny",
    output_dir: str = "runs/iav_demo",
    num_prompts: int = 100,
    max_new_tokens: int = 48,
    quick: bool = False,
    seeds=SEEDS,
) -> dict:
    """The demo once per seed into ``output_dir/seed<s>/``, then the summary over seeds (written to
    ``summary.json`` / ``summary.md``); returns the summary and its ``text``: each seed's report, then the table
    over seeds."""
    from actlab.core.io import atomic_write_json, atomic_write_text

    if quick:
        seeds = tuple(seeds)[:2]
    per, reports = {}, []
    for s in seeds:
        log.info(f"=== seed {s} ===")
        seed_dir = Path(output_dir) / f"seed{int(s)}"
        per[int(s)] = demo_seed(model_id, str(seed_dir), num_prompts, max_new_tokens, quick, int(s))
        reports.append(f"=== seed {s} ===\n{seed_report(per[int(s)], seed_dir)}")
        log.info(f"seed {s} done: {seed_dir / 'eval' / 'table.md'}")
    summary = summarize_seeds(per)
    out = Path(output_dir)
    atomic_write_json(out / "summary.json", summary)
    text = seed_table(summary)
    atomic_write_text(out / "summary.md", text)
    plot_seeds(summary, out / "reward_vs_alpha.png")
    return {**summary, "text": "\n".join([*reports, "", text, f"plot over seeds: {out / 'reward_vs_alpha.png'}"])}


def summarize_seeds(per_seed: dict[int, dict]) -> dict:
    """Per method: mean reward over seeds (mean ± 95 % CI), Δ vs base and, for IAV rows, Δ vs α = 0 of the same
    heads, each paired by seed (each seed's value is that seed's mean over its prompts)."""
    from actlab.core.stats import mean_ci, paired_diff

    seeds = sorted(per_seed)
    by_seed = {s: {r["method"]: r for r in per_seed[s]["methods"]} for s in seeds}
    names = [r["method"] for r in per_seed[seeds[0]]["methods"]]
    rows = []
    for name in names:
        first = by_seed[seeds[0]][name]
        vals = [by_seed[s].get(name, {}).get("reward") for s in seeds]
        row = {"method": name, "kind": first["kind"], "alpha": first["alpha"], "seeds": len(seeds)}
        ci = mean_ci(vals)
        row["reward"], row["reward_ci95"] = ci.mean, ci.half
        refs = [("base", "base")]
        if first["kind"] in ("iav", "iav-fb") and first["alpha"] != 0:
            refs.append(("alpha0", f"{first['kind']}@0"))
        for key, ref in refs:
            if name == ref or ref not in by_seed[seeds[0]]:
                continue
            d = paired_diff(vals, [by_seed[s].get(ref, {}).get("reward") for s in seeds])
            row[f"diff_vs_{key}"], row[f"diff_vs_{key}_ci95"] = d.mean, d.half
        row["kl_ref"] = mean_ci([by_seed[s].get(name, {}).get("kl_ref") for s in seeds]).mean
        row["win_rate_vs_base"] = mean_ci([by_seed[s].get(name, {}).get("win_rate_vs_base") for s in seeds]).mean
        rows.append(row)
    return {"seeds": seeds, "num_prompts": per_seed[seeds[0]]["num_prompts"], "methods": rows}


def seed_table(summary: dict) -> str:
    from actlab.core.stats import CI, fmt

    def cell(row, key, sign=False):
        if key not in row:
            return "—"
        c = CI(row[key], row.get(f"{key}_ci95", float("nan")), len(summary["seeds"]))
        return fmt(c, 1.0, 3, sign=sign) + (" *" if sign and c.excludes_zero() else "")

    n = len(summary["seeds"])
    lines = [
        f"Over {n} seeds ({summary['num_prompts']} prompts each): mean ± 95 % CI over seeds; Δ paired by seed "
        "(* = the CI excludes 0)",
        "",
        "| method | α | reward | Δ vs base | Δ vs α = 0 | win vs base | KL to ref |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in summary["methods"]:
        lines.append(
            f"| {r['method']} | {r['alpha']:g} | {cell(r, 'reward')} | {cell(r, 'diff_vs_base', True)} | "
            f"{cell(r, 'diff_vs_alpha0', True)} | {r['win_rate_vs_base']:.3f} | {r['kl_ref']:.4f} |"
        )
    return "\n".join(lines) + "\n"


def plot_seeds(summary: dict, path) -> Path:
    import math

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from actlab.core.io import save_figure

    def h(r):
        return r["reward_ci95"] if math.isfinite(r["reward_ci95"]) else 0.0

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for kind, label in (("iav", "IAV"), ("iav-fb", "IAV, frozen base head")):
        rows = sorted((r for r in summary["methods"] if r["kind"] == kind), key=lambda r: r["alpha"])
        if rows:
            ax.errorbar(
                [r["alpha"] for r in rows],
                [r["reward"] for r in rows],
                yerr=[h(r) for r in rows],
                marker="o",
                capsize=3,
                label=label,
            )
    colors = {"base": "gray", "genarm": "tab:green", "dpo": "tab:red"}
    for r in summary["methods"]:
        if r["kind"] in colors:
            ax.axhline(r["reward"], ls="--", color=colors[r["kind"]], label=r["method"])
            ax.axhspan(r["reward"] - h(r), r["reward"] + h(r), color=colors[r["kind"]], alpha=0.1)
    ax.set_xlabel("α")
    ax.set_ylabel("reward (mean, 95 % CI over seeds)")
    ax.set_title(f"reward vs α ({len(summary['seeds'])} seeds)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path, dpi=120)


def demo_seed(
    model_id: str = "tiny",
    output_dir: str = "runs/iav_demo",
    num_prompts: int = 100,
    max_new_tokens: int = 48,
    quick: bool = False,
    seed: int = 0,
) -> dict:
    """One seed of the demo (training, baselines, α sweep) into ``output_dir``; returns the evaluation summary."""
    from actlab import zoo
    from actlab.core.io import read_json
    from actlab.iav.baselines import train_arm, train_dpo
    from actlab.iav.config import LossConfig, TrainConfig
    from actlab.iav.data import load_rows
    from actlab.iav.evaluate import EvalConfig, evaluate
    from actlab.iav.trainer import train

    if model_id == DIALOGS:
        model_id = str(dialogs_model())
    elif not zoo.is_zoo_name(model_id) and not Path(model_id).exists():
        raise ActlabError(
            f"demo model {model_id!r} is neither a zoo name ({', '.join(zoo.ZOO_NAMES)}), {DIALOGS!r}, nor a directory"
        )
    out = Path(output_dir)
    n_train = 64 if quick else 1024
    steps = 8 if quick else 150
    base_steps = 8 if quick else 60
    if quick:
        num_prompts, max_new_tokens = min(num_prompts, 16), min(max_new_tokens, 24)
    log.info(
        f"[1/3] training IAV heads on {model_id} (syn_hh, {n_train} pairs, {steps} steps; base head trainable, "
        "then frozen)"
    )
    for sub, frozen in (("iav", False), ("iav_frozen", True)):
        cfg = TrainConfig(
            model_name_or_path=model_id,
            output_dir=str(out / sub),
            dataset="syn_hh",
            num_train_samples=n_train,
            num_val_samples=32,
            batch_size=16,
            learning_rate=5e-3,
            max_steps=steps,
            save_steps=50,
            eval_steps=50,
            seq_length=96,
            max_prompt_length=48,
            seed=seed,
            freeze_base_head=frozen,
            loss=LossConfig(loss="corrected", beta=0.1, lambda_kl=0.1, lambda_l2=0.01),
        )
        train(cfg)
    rows = load_rows("syn_hh", "train", n_train, seed)
    log.info(f"[2/3] training baselines with TRL: DPO ({base_steps} steps) and GenARM's ARM ({base_steps} steps)")
    dpo = train_dpo(
        model_id,
        rows,
        out / "dpo",
        beta=0.1,
        max_steps=base_steps,
        batch_size=16,
        learning_rate=1e-4,
        max_length=96,
        seed=seed,
    )
    arm = train_arm(
        model_id,
        rows,
        out / "arm",
        beta=0.05,
        max_steps=base_steps,
        batch_size=16,
        learning_rate=1e-4,
        max_length=96,
        seed=seed,
    )
    log.info(f"[3/3] α sweep on {num_prompts} held-out prompts (sampling, T=1, {max_new_tokens} new tokens)")
    ecfg = EvalConfig(
        heads=str(out / "iav" / "heads"),
        heads_frozen_base=str(out / "iav_frozen" / "heads"),
        arm_model=str(arm),
        dpo_model=str(dpo),
        prompt_set="syn_hh",
        num_prompts=num_prompts,
        max_new_tokens=max_new_tokens,
        do_sample=True,
        temperature=1.0,
        top_p=1.0,
        batch_size=32,
        output_dir=str(out / "eval"),
        seed=seed,
    )
    if (out / "eval" / "COMPLETE").exists():
        summary = read_json(out / "eval" / "results.json")
    else:
        summary = evaluate(ecfg)
    return summary


def seed_report(summary: dict, output_dir) -> str:
    """One seed's report: its side-by-side table (``eval/table.md``), whether reward rises with α, the plot path."""
    out = Path(output_dir)
    lines = ["", (out / "eval" / "table.md").read_text(encoding="utf-8")]
    for kind, key, label in (
        ("iav", "reward_rises_with_alpha", "IAV"),
        ("iav-fb", "reward_rises_with_alpha_frozen_base", "IAV, frozen base head"),
    ):
        t = summary.get(key)
        rows_k = [r for r in summary["methods"] if r["kind"] == kind]
        if not t or not rows_k:
            continue
        rs = ", ".join(f"α={r['alpha']:g}: {r['reward']:.3f}" for r in rows_k)
        lines.append(f"{label} reward by α: {rs}")
        lines.append(
            f"  reward rises with α: monotone={t['monotone']}, spearman={t['spearman']}, "
            f"α={rows_k[-1]['alpha']:g} beats α=0: {t['max_alpha_beats_zero']}"
        )
    lines.append(f"plot: {out / 'eval' / 'reward_vs_alpha.png'}")
    return "\n".join(lines)
