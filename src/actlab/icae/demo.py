"""``actlab icae demo``: pretrain ICAE briefly on the zoo model, autoencode held-out passages at 4× compression
(BLEU-1 with the gauge of :mod:`actlab.icae.gauge`; ``actlab icae demo`` prints it as a table), fine-tune on synthetic SQuAD and compare
QA EM/F1 and speed with the full-context ``SimpleLLM``.

Everything is offline: the zoo's ``syn_passages`` and ``syn_squad`` (test people never appear in training).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

from actlab.core.io import atomic_write_json
from actlab.icae.config import ICAEConfig

log = logging.getLogger(__name__)

#: the demo's defaults (configs/icae/demo_config.yaml holds the same values)
DEMO_DEFAULTS = dict(model_name="tiny", output_dir="runs/icae_demo", fixed_mem_size=32, mean_compression_rate=4,
                     use_position_identifiers=True, lora_r=32, lora_alpha=64, lora_target_modules="all-linear", learning_rate=1e-3, max_steps=600,
                     demo_finetune_steps=300, per_device_train_batch_size=16, warmup_steps=30, lm_ratio=0.2,
                     num_train_samples=4000, num_eval_samples=64, batch_size=16, max_new_tokens=128,
                     logging_steps=25, save_steps=100, threads=0)  # fmt: skip


def run_demo(cfg: ICAEConfig | None = None, quick: bool = False) -> dict:
    from actlab.icae.data import prepare_pretrain
    from actlab.icae.infer import eval_ae, eval_qa
    from actlab.icae.model import SimpleLLM
    from actlab.icae.trainer import build_model, finetune, pretrain

    cfg = cfg or ICAEConfig.from_dict(DEMO_DEFAULTS)
    if quick:
        cfg = dataclasses.replace(
            cfg,
            max_steps=min(cfg.max_steps, 20),
            demo_finetune_steps=min(cfg.demo_finetune_steps, 10),
            num_eval_samples=min(cfg.num_eval_samples, 8),
        )
    out = Path(cfg.output_dir)
    t0 = time.perf_counter()
    prepare_pretrain(cfg)
    icae = build_model(dataclasses.replace(cfg, model_type="icae"))
    pre = pretrain(cfg, icae)
    if pre.get("skipped"):
        icae.load(pre["weights"])
    t_pre = time.perf_counter() - t0
    ae_rows, ae = eval_ae(icae, dataclasses.replace(cfg, task="ae"))
    log.info(
        f"icae demo: autoencoding BLEU-1 {ae['ae/bleu1']:.3f} at {ae.get('compression/rate', float('nan')):.2f}x "
        f"({ae.get('gauge/verdict', '')}); fine-tuning on QA"
    )
    ft_cfg = dataclasses.replace(
        cfg,
        task="qa",
        max_steps=cfg.demo_finetune_steps,
        warmup_steps=min(cfg.warmup_steps, cfg.demo_finetune_steps // 5),
    )
    ft = finetune(ft_cfg, icae)
    if ft.get("skipped"):
        icae.load(ft["weights"])
    qa_cfg = dataclasses.replace(cfg, task="qa", max_new_tokens=16)
    qa_rows, qa = eval_qa(icae, qa_cfg)
    llm_rows, llm = eval_qa(SimpleLLM.from_icae(icae), dataclasses.replace(qa_cfg, model_type="llm"))
    summary = {
        "model": cfg.model_name, "compression": f"{cfg.mean_compression_rate}x (m={cfg.fixed_mem_size}, adaptive)",
        "epl": cfg.use_position_identifiers, "pretrain_steps": cfg.max_steps, "finetune_steps": cfg.demo_finetune_steps,
        "ae/bleu1": ae["ae/bleu1"], "ae/exact": ae["ae/exact"], "ae/compression_rate": ae.get("compression/rate"),
        **{k: v for k, v in ae.items() if k.startswith("gauge/")},
        "examples_ae": [{"reference": r["reference"], "prediction": r["prediction"]} for r in ae_rows[:2]],
        "qa/icae_em": qa["qa/em"], "qa/icae_f1": qa["qa/f1"], "qa/llm_em": llm["qa/em"], "qa/llm_f1": llm["qa/f1"],
        "qa/icae_compression_rate": qa.get("compression/rate"),
        "time/icae_ttft_s": qa["time/ttft_s"], "time/icae_compress_s": qa["time/compress_s"],
        "time/llm_ttft_s": llm["time/ttft_s"], "time/total_s": time.perf_counter() - t0, "time/pretrain_s": t_pre,
        "pretrain_final_loss": pre.get("train/loss"), "finetune_final_loss": ft.get("train/loss"),
        "examples_qa": [{"q": r["question"], "gold": r["answers"], "icae": r["prediction"], "llm": s["prediction"]}
                        for r, s in list(zip(qa_rows, llm_rows))[:3]],
    }  # fmt: skip
    atomic_write_json(out / "demo_summary.json", summary)
    return summary


# ------------------------------------------------------------------------------------------------ the figure
FIGURE_KEYS = ("ae/bleu1", "gauge/floor_random", "gauge/floor_constant", "gauge/nll_ae", "gauge/nll_no_slots",
               "gauge/slot_gain_nats", "gauge/name_tf", "gauge/attr_tf", "gauge/name_greedy", "gauge/attr_greedy",
               "compression/rate")  # fmt: skip
LENGTH_BINS = ((0, 50), (50, 65), (65, 10_000))  # passage tokens


def compression_figure(cfg: ICAEConfig, rates=(1, 2, 4, 8), seeds=(0, 1), out_dir: str | None = None) -> dict:
    """The paper's figure on one base: AE quality vs compression rate and vs passage length, over seeds.

    Per (rate, seed) a fresh ICAE is pretrained with ``cfg`` (only ``mean_compression_rate`` and ``seed`` change)
    and autoencodes the held-out passages with the gauge. Returns (and writes ``figure.json`` under ``out_dir``)
    per rate the mean and 95 % CI over seeds (Student t) of :data:`FIGURE_KEYS`, and per length bin the BLEU-1.
    """
    from actlab.icae.data import prepare_pretrain
    from actlab.icae.trainer import build_model, pretrain

    out = Path(out_dir or cfg.output_dir)
    runs: list[dict] = []
    for rate in rates:
        for seed in seeds:
            c = dataclasses.replace(
                cfg, mean_compression_rate=rate, seed=seed, task="ae", output_dir=str(out / f"rate{rate}_seed{seed}")
            )
            prepare_pretrain(c)
            icae = build_model(dataclasses.replace(c, model_type="icae"))
            pre = pretrain(c, icae)
            if pre.get("skipped"):
                icae.load(pre["weights"])
            runs.append(figure_run(icae, c))
            atomic_write_json(out / "figure_runs.json", runs)
    table = figure_table(runs, rates)
    result = {
        "model": cfg.model_name,
        "seeds": list(seeds),
        "pretrain_steps": cfg.max_steps,
        "per_rate": table,
        "runs": runs,
    }
    atomic_write_json(out / "figure.json", result)
    return result


def figure_run(icae, cfg: ICAEConfig) -> dict:
    """One point of the figure: autoencode ``cfg``'s held-out passages with the gauge (:func:`~actlab.icae.infer.
    eval_ae`) and keep :data:`FIGURE_KEYS`, the verdict, the BLEU-1 CI over texts, the BLEU-1 per length bin and
    (under ``"gauge"``) every ``gauge/*`` key of the evaluation."""
    from actlab.icae.infer import eval_ae

    rows, s = eval_ae(icae, dataclasses.replace(cfg, task="ae"))
    n_tok = [len(icae.tok(r["reference"], add_special_tokens=False)["input_ids"]) for r in rows]
    by_len = {f"{a}-{b}": [r["bleu1"] for r, n in zip(rows, n_tok) if a <= n < b] for a, b in LENGTH_BINS}
    return {
        "rate": cfg.mean_compression_rate,
        "seed": cfg.seed,
        **{k: s.get(k) for k in FIGURE_KEYS},
        "gauge/bleu1_ci95": s.get("gauge/bleu1_ci95"),
        "verdict": s["gauge/verdict"],
        "bleu1_by_length": {k: (sum(v) / len(v) if v else None, len(v)) for k, v in by_len.items()},
        "gauge": {k: v for k, v in s.items() if k.startswith("gauge/")},
    }


def figure_table(runs: list[dict], rates) -> dict:
    """Per rate, the mean and 95 % CI over the runs (seeds) of :data:`FIGURE_KEYS` and of each length bin's BLEU-1
    (Student t, :func:`actlab.icae.gauge.mean_ci`)."""
    from actlab.icae.gauge import mean_ci

    table = {}
    for rate in rates:
        mine = [r for r in runs if r["rate"] == rate]
        row = {k: mean_ci([r[k] for r in mine if r.get(k) is not None]) for k in FIGURE_KEYS}
        for a, b in LENGTH_BINS:
            key = f"{a}-{b}"
            row[f"bleu1_len_{key}"] = mean_ci(
                [r["bleu1_by_length"][key][0] for r in mine if r["bleu1_by_length"][key][0] is not None]
            )
        table[str(rate)] = row
    return table


_TRAIN_ONLY = (
    "save_steps",
    "logging_steps",
    "warmup_steps",
    "max_grad_norm",
    "weight_decay",
    "learning_rate",
    "per_device_train_batch_size",
    "demo_finetune_steps",
    "lm_ratio",
)


def load_pretrained(run_dir: str | Path):
    """``(cfg, icae)`` of a finished ICAE run directory (one holding ``pretrain/config.json`` and
    ``pretrain/icae.safetensors``): the recorded config (fields this version no longer has are dropped, with a
    warning) and the model with its saved pretrained weights, ready to evaluate again without training."""
    import json

    from actlab.core.errors import ActlabError
    from actlab.icae.trainer import build_model

    run = Path(run_dir)
    conf, weights = run / "pretrain" / "config.json", run / "pretrain" / "icae.safetensors"
    for p in (conf, weights):
        if not p.is_file():
            raise ActlabError(f"run_dir {run}: no {p.relative_to(run)} (not a finished ICAE pretraining run)")
    d = json.loads(conf.read_text())
    names = {f.name for f in dataclasses.fields(ICAEConfig)}
    dropped = sorted(k for k in d if k not in names and k != "_meta")
    if dropped:
        log.warning("%s: recorded fields unknown to this version, ignored: %s", conf, ", ".join(dropped))
    d = {k: v for k, v in d.items() if k in names}
    defaults = {f.name: f.default for f in dataclasses.fields(ICAEConfig)}
    for _ in _TRAIN_ONLY:
        try:
            cfg = ICAEConfig.from_dict(d, source=str(conf))
            break
        except ActlabError as e:  # a training-only value today's checks refuse (e.g. save_steps: 0) -> its default
            bad = [k for k in _TRAIN_ONLY if f"--{k} " in str(e) and d.get(k) != defaults[k]]
            if not bad:
                raise
            log.warning(
                "%s: %s; %s is only used in training, evaluated with its default %s", conf, e, bad[0], defaults[bad[0]]
            )
            d[bad[0]] = defaults[bad[0]]
    else:
        cfg = ICAEConfig.from_dict(d, source=str(conf))
    cfg = dataclasses.replace(cfg, output_dir=str(run), checkpoint_path=None, task="ae")
    icae = build_model(dataclasses.replace(cfg, model_type="icae"))
    icae.load(weights)
    return cfg, icae
