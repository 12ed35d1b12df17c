"""``actlab iav evaluate``: IAV α sweep vs the base model, GenARM-style decoding and a TRL DPO model, side by side.

Per method: reward (mean ± 95 % CI over prompts, Student t; the programmatic syn_hh reward, or any HF
sequence-classification reward model), the reward difference to the base model paired by prompt (mean ± 95 % CI),
reward win rate against the base model ``P(r_m > r_base) + ½P(=)`` on the same prompts, KL to the reference (mean over
generated tokens of ``KL(π_method ‖ π_ref)``, π_ref = the original model), distinct-1/2, ms/token and memory.
Writes ``results.json``, ``table.md``, ``reward_vs_alpha.png``, ``generations/{method}.json`` and exports in the
format of the prompt set's judge (``exports/``):

* ``hh_rlhf`` / ``syn_hh`` — the GPT-4 pairwise judge of ARGS/GenARM: ``[{"prompt", "response", "result", "method"}]``
  (``result = prompt + response``);
* ``alpaca_eval`` — ``[{"instruction", "output", "generator", "dataset"}]`` (alpaca_eval's model_outputs.json);
* ``arena_hard`` — JSONL ``{"question_id", "answer_id", "model_id", "choices": [{"index": 0, "turns": [{"content"}]}],
  "tstamp"}`` (arena-hard-auto's model_answer format).
"""

from __future__ import annotations

import math
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import torch

from actlab.core.errors import ActlabError, unknown_choice
from actlab.core.lazy import callable_module
from actlab.core.stats import CI, fmt, mean_ci, paired_diff
from actlab.iav.config import ALPHAS, check_alpha

PROMPT_SETS = ("syn_hh", "hh_rlhf", "alpaca_eval", "arena_hard")
HH_TEMPLATE = "\n\nHuman: {q}\n\nAssistant:"


@dataclass
class EvalConfig:
    heads: str = "runs/iav/heads"  # IAV heads dir (save_pretrained) or a train run dir
    heads_frozen_base: str | None = None  # optional second IAV run trained with --freeze_base_head (same backbone)
    model_name_or_path: str | None = None  # backbone (default: the one the heads name)
    arm_model: str | None = None  # GenARM autoregressive reward model (dir); None: no GenARM row
    dpo_model: str | None = None  # DPO-trained model (dir); None: no DPO row
    prompt_set: str = "syn_hh"
    prompts_file: str | None = None  # local prompts (json/jsonl) for alpaca_eval / arena_hard / any set
    num_prompts: int = 300
    alphas: list[float] = field(default_factory=lambda: list(ALPHAS))
    genarm_alpha: float = 1.0
    max_new_tokens: int = 128
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    batch_size: int = 16
    reward_model: str = "programmatic"
    output_dir: str = "runs/iav_eval"
    seed: int = 0

    def __post_init__(self):
        if self.prompt_set not in PROMPT_SETS:
            raise unknown_choice("prompt set", self.prompt_set, PROMPT_SETS)
        self.alphas = [check_alpha(a) for a in self.alphas]
        if not self.alphas:
            raise ActlabError("alphas must list at least one value")
        check_alpha(self.genarm_alpha, "genarm_alpha")
        for n in ("num_prompts", "max_new_tokens", "batch_size"):
            v = getattr(self, n)
            if not isinstance(v, int) or v <= 0:
                raise ActlabError(f"{n} must be a positive integer, got {v!r}")
        if not (self.temperature > 0 and math.isfinite(self.temperature)):
            raise ActlabError(f"temperature must be > 0, got {self.temperature!r}")


# ------------------------------------------------------------------------------------------------ prompt sets
def _read_records(path: str) -> list[dict]:
    import json

    from actlab.core.io import read_json, read_jsonl

    p = Path(path)
    if not p.exists():
        raise ActlabError(f"prompts file {path} not found")
    if p.suffix == ".jsonl":
        return read_jsonl(p)
    obj = read_json(p)
    if isinstance(obj, dict):
        obj = obj.get("data") or obj.get("rows") or list(obj.values())
    if not isinstance(obj, list):
        raise ActlabError(f"{path}: expected a JSON list of records, got {type(obj).__name__}")
    return [r if isinstance(r, dict) else {"prompt": json.dumps(r)} for r in obj]


def record_prompt(rec: dict, prompt_set: str) -> dict:
    """One prompt record → ``{"id", "prompt" (HH-formatted), "question"}`` from any of the sets' schemas."""
    if "prompt" in rec and isinstance(rec["prompt"], str) and "Human:" in rec["prompt"]:
        q = rec["prompt"]
        return {"id": str(rec.get("question_id", rec.get("id", ""))), "prompt": q, "question": q}
    if "instruction" in rec:  # alpaca_eval
        q = str(rec["instruction"])
    elif "turns" in rec:  # arena-hard v0.1 question.jsonl
        t = rec["turns"][0]
        q = str(t["content"] if isinstance(t, dict) else t)
    elif "prompt" in rec:  # arena-hard v2 / plain
        q = str(rec["prompt"])
    elif "question" in rec:
        q = str(rec["question"])
    else:
        raise ActlabError(
            f"a {prompt_set} prompt record has none of instruction/turns/prompt/question "
            f"(keys: {', '.join(sorted(rec))})"
        )
    rid = str(rec.get("question_id", rec.get("uid", rec.get("id", ""))))
    return {"id": rid, "prompt": HH_TEMPLATE.format(q=q.strip()), "question": q, "dataset": rec.get("dataset")}


def load_prompts(prompt_set: str, n: int, prompts_file: str | None = None, seed: int = 0) -> list[dict]:
    if prompts_file:
        recs = _read_records(prompts_file)
    elif prompt_set == "syn_hh":
        from actlab.data.sources import load_rows as load_data_rows

        recs = load_data_rows("syn_hh", "test", n, seed)
    elif prompt_set == "hh_rlhf":
        from actlab.iav.data import load_rows

        recs = load_rows("hh_rlhf", "test", n)
    elif prompt_set == "alpaca_eval":
        from actlab.data.sources import load_rows as load_data_rows

        recs = load_data_rows(
            "tatsu-lab/alpaca_eval", "eval", config="alpaca_eval", hint="pass --prompts_file alpaca_eval.json"
        )
    else:
        raise ActlabError("arena_hard prompts: pass --prompts_file question.jsonl (from lmarena-ai/arena-hard-auto)")
    out = [record_prompt(r, prompt_set) for r in recs[:n]]
    for i, r in enumerate(out):
        r["id"] = r["id"] or str(i)
    return out


# ------------------------------------------------------------------------------------------------- metrics
def distinct_n(texts: list[str], n: int) -> float:
    grams, total = set(), 0
    for t in texts:
        w = t.split()
        g = [tuple(w[i : i + n]) for i in range(len(w) - n + 1)]
        grams.update(g)
        total += len(g)
    return len(grams) / total if total else 0.0


def win_rate(a: list[float], b: list[float]) -> float:
    """``P(a > b) + ½ P(a = b)`` over paired scores."""
    if not a:
        return float("nan")
    return sum(1.0 if x > y else 0.5 if x == y else 0.0 for x, y in zip(a, b, strict=True)) / len(a)


def mean_se(x: list[float]) -> tuple[float, float]:
    if not x:
        return float("nan"), float("nan")
    m = sum(x) / len(x)
    if len(x) < 2:
        return m, 0.0
    var = sum((v - m) ** 2 for v in x) / (len(x) - 1)
    return m, math.sqrt(var / len(x))


class Rewarder:
    """``programmatic`` (syn_hh's :func:`preference_reward` of the response) or an HF sequence-classification RM."""

    def __init__(self, name: str, device=None):
        self.name = name
        if name != "programmatic":
            from transformers import AutoModelForSequenceClassification, AutoTokenizer

            try:
                self.tok = AutoTokenizer.from_pretrained(name)
                self.rm = AutoModelForSequenceClassification.from_pretrained(name).eval()
            except (OSError, ValueError) as e:
                raise ActlabError(f"could not load reward model {name!r}: {str(e).splitlines()[0][:200]}") from None
            if device is not None:
                self.rm.to(device)

    @torch.no_grad()
    def __call__(self, prompts: list[str], responses: list[str], batch_size: int = 16) -> list[float]:
        if self.name == "programmatic":
            from actlab.data.world import preference_reward

            return [preference_reward(r) for r in responses]
        out = []
        dev = next(self.rm.parameters()).device
        for s in range(0, len(prompts), batch_size):
            enc = self.tok(
                prompts[s : s + batch_size],
                responses[s : s + batch_size],
                return_tensors="pt",
                padding=True,
                truncation=True,
                max_length=1024,
            ).to(dev)
            out += self.rm(**enc).logits[:, 0].float().cpu().tolist()
        return out


@torch.no_grad()
def mean_kl_to_ref(score_fn, ref_lm, tok, prompts: list[str], gens: list[list[int]], batch_size: int = 16) -> float:
    """Mean over generated tokens of ``KL(π_method ‖ π_ref)``; ``score_fn(ids, mask) → log-probs [B, L, V]``."""
    from actlab.core.models import pad_right

    dev = next(ref_lm.parameters()).device
    tot, cnt = 0.0, 0
    for s in range(0, len(prompts), batch_size):
        p_ids = [tok(p)["input_ids"] for p in prompts[s : s + batch_size]]
        g_ids = gens[s : s + batch_size]
        seqs = [p + g for p, g in zip(p_ids, g_ids, strict=True)]
        if not any(g_ids):
            continue
        ids, mask = pad_right(seqs, tok.pad_token_id)
        ids, mask = ids.to(dev), mask.to(dev)
        lp = score_fn(ids, mask)
        lq = torch.log_softmax(ref_lm(input_ids=ids, attention_mask=mask).logits.float(), -1)
        kl = (lp.exp() * (lp - lq)).sum(-1)  # [B, L]
        for j, (p, g) in enumerate(zip(p_ids, g_ids, strict=True)):
            if g:
                tot += float(kl[j, len(p) - 1 : len(p) - 1 + len(g)].sum())
                cnt += len(g)
    return tot / cnt if cnt else 0.0


def _param_mb(*models) -> float:
    seen, n = set(), 0
    for m in models:
        for p in m.parameters():
            if id(p) not in seen:
                seen.add(id(p))
                n += p.numel() * p.element_size()
    return n / 2**20


# ---------------------------------------------------------------------------------------------- the methods
def _methods(cfg: EvalConfig, iav, ref_lm, tok):
    """[(name, kind, alpha, generate(prompts) → ids, score_fn, models)] for every method to compare."""
    from actlab.core.models import load
    from actlab.iav.generate import GenARMStepper, IAVStepper, PlainStepper, decode

    kw = dict(
        max_new_tokens=cfg.max_new_tokens,
        do_sample=cfg.do_sample,
        temperature=cfg.temperature,
        top_p=cfg.top_p,
        batch_size=cfg.batch_size,
        seed=cfg.seed,
        return_ids=True,
        device=iav.device,
    )
    ms = [
        (
            "base",
            "base",
            0.0,
            lambda P: decode(PlainStepper(ref_lm), tok, P, **kw),
            lambda ids, m: torch.log_softmax(ref_lm(input_ids=ids, attention_mask=m).logits.float(), -1),
            (ref_lm,),
        )
    ]

    def iav_fns_for(model, a):
        def score(ids, m):
            h, _ = model.hidden(ids, m)
            return torch.log_softmax(model.final_logits(h, a), -1)

        return (lambda P: decode(IAVStepper(model, a), tok, P, **kw)), score

    for a in cfg.alphas:
        g, s = iav_fns_for(iav, a)
        ms.append((f"iav@{a:g}", "iav", a, g, s, (iav.backbone, iav.base_head, iav.align_head)))
    if cfg.heads_frozen_base:
        from actlab.iav.model import IAVModel

        fb = IAVModel.from_pretrained(_heads_path(cfg.heads_frozen_base), lm=iav.lm, tokenizer=tok)
        for a in cfg.alphas:
            g, s = iav_fns_for(fb, a)
            ms.append((f"iav-fb@{a:g}", "iav-fb", a, g, s, (fb.backbone, fb.base_head, fb.align_head)))
    if cfg.arm_model:
        arm, arm_tok = load(cfg.arm_model, device=str(iav.device))
        if len(arm_tok) != len(tok):
            raise ActlabError(f"the ARM {cfg.arm_model!r} has another vocabulary ({len(arm_tok)} vs {len(tok)})")
        a = cfg.genarm_alpha

        def genarm_score(ids, m):
            lb = torch.log_softmax(ref_lm(input_ids=ids, attention_mask=m).logits.float(), -1)
            la = torch.log_softmax(arm(input_ids=ids, attention_mask=m).logits.float(), -1)
            return torch.log_softmax(lb + a * la, -1)

        ms.append(
            (
                f"genarm@{a:g}",
                "genarm",
                a,
                lambda P: decode(GenARMStepper(ref_lm, arm, a), tok, P, **kw),
                genarm_score,
                (ref_lm, arm),
            )
        )
    if cfg.dpo_model:
        dpo, _ = load(cfg.dpo_model, device=str(iav.device))
        ms.append(
            (
                "dpo",
                "dpo",
                0.0,
                lambda P: decode(PlainStepper(dpo), tok, P, **kw),
                lambda ids, m: torch.log_softmax(dpo(input_ids=ids, attention_mask=m).logits.float(), -1),
                (dpo,),
            )
        )
    return ms


def _export(prompt_set: str, method: str, prompts: list[dict], texts: list[str], out: Path) -> Path:
    from actlab.core.io import atomic_write_json, atomic_write_jsonl

    if prompt_set == "alpaca_eval":
        return atomic_write_json(
            out / f"{method}.alpaca_eval.json",
            [
                {"instruction": p["question"], "output": t, "generator": method, "dataset": p.get("dataset") or ""}
                for p, t in zip(prompts, texts, strict=True)
            ],
        )
    if prompt_set == "arena_hard":
        now = time.time()
        return atomic_write_jsonl(
            out / f"{method}.arena_hard.jsonl",
            [
                {
                    "question_id": p["id"],
                    "answer_id": uuid.uuid5(uuid.NAMESPACE_URL, f"{method}/{p['id']}").hex,
                    "model_id": method,
                    "choices": [{"index": 0, "turns": [{"content": t}]}],
                    "tstamp": now,
                }
                for p, t in zip(prompts, texts, strict=True)
            ],
        )
    return atomic_write_json(
        out / f"{method}.hh_rlhf.json",
        [
            {"prompt": p["prompt"], "response": t, "result": p["prompt"] + " " + t.strip(), "method": method}
            for p, t in zip(prompts, texts, strict=True)
        ],
    )


def _heads_path(p: str) -> Path:
    """A heads dir, or a train run dir holding ``heads/``."""
    from actlab.iav.model import HEADS_FILE

    h = Path(p)
    if h.is_dir() and not (h / HEADS_FILE).exists() and (h / "heads" / HEADS_FILE).exists():
        h = h / "heads"
    return h


def evaluate(cfg: EvalConfig, iav=None) -> dict:
    """Run every method on the prompt set; write results, table, plot, generations and judge exports."""
    from actlab.core.io import RunDir, atomic_write_text

    prompts = load_prompts(cfg.prompt_set, cfg.num_prompts, cfg.prompts_file, cfg.seed)
    rewarder = Rewarder(cfg.reward_model)
    if iav is None:
        from actlab.iav.model import IAVModel

        iav = IAVModel.from_pretrained(_heads_path(cfg.heads), backbone=cfg.model_name_or_path)
    tok, ref_lm = iav.tokenizer, iav.lm
    run = RunDir(cfg.output_dir)
    run.write_config(cfg)
    P = [p["prompt"] for p in prompts]
    results, gens_by = {}, {}
    for name, kind, alpha, gen, score, models in _methods(cfg, iav, ref_lm, tok):
        if iav.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        ids = gen(P)
        dt = time.perf_counter() - t0
        texts = [tok.decode(g, skip_special_tokens=True) for g in ids]
        rewards = rewarder(P, texts, cfg.batch_size)
        ntok = sum(len(g) + (1 if len(g) < cfg.max_new_tokens else 0) for g in ids)
        kl = mean_kl_to_ref(score, ref_lm, tok, P, ids, cfg.batch_size)
        m, se = mean_se(rewards)
        ci = mean_ci(rewards)
        row = {
            "method": name,
            "kind": kind,
            "alpha": alpha,
            "reward": m,
            "reward_se": se,
            "reward_ci95": ci.half,
            "kl_ref": kl,
            "distinct_1": distinct_n(texts, 1),
            "distinct_2": distinct_n(texts, 2),
            "ms_per_token": 1000 * dt / max(ntok, 1),
            "mean_len": sum(map(len, ids)) / len(ids),
            "mem_params_mb": _param_mb(*models),
        }
        if iav.device.type == "cuda":
            row["mem_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
        results[name] = row
        gens_by[name] = (texts, rewards)
        from actlab.core.io import atomic_write_json

        atomic_write_json(
            run / "generations" / f"{name}.json",
            [
                {"id": p["id"], "prompt": p["prompt"], "response": t, "reward": r}
                for p, t, r in zip(prompts, texts, rewards, strict=True)
            ],
        )
        _export(cfg.prompt_set, name, prompts, texts, run.path / "exports")
    base_r = gens_by["base"][1]
    for name, row in results.items():
        row["win_rate_vs_base"] = win_rate(gens_by[name][1], base_r)
        d = paired_diff(gens_by[name][1], base_r)
        row["reward_diff_vs_base"], row["reward_diff_vs_base_ci95"] = d.mean, d.half
    summary = {
        "prompt_set": cfg.prompt_set,
        "num_prompts": len(P),
        "reward_model": cfg.reward_model,
        "methods": list(results.values()),
        "reward_rises_with_alpha": reward_trend(results),
    }
    if cfg.heads_frozen_base:
        summary["reward_rises_with_alpha_frozen_base"] = reward_trend(results, kind="iav-fb")
    run.write_json("results.json", summary)
    atomic_write_text(run / "table.md", table(results))
    plot(results, run / "reward_vs_alpha.png")
    run.mark_complete()
    return summary


def reward_trend(results: dict, kind: str = "iav") -> dict:
    """Spearman correlation of IAV reward with α, and whether the reward at the largest α beats α = 0."""
    rows = sorted((r for r in results.values() if r["kind"] == kind), key=lambda r: r["alpha"])
    if len(rows) < 2:
        return {"spearman": None, "monotone": None, "max_alpha_beats_zero": None}
    from scipy.stats import spearmanr

    a, r = [x["alpha"] for x in rows], [x["reward"] for x in rows]
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constant rewards: rho is undefined (NaN → None)
        rho = spearmanr(a, r).statistic
    return {
        "spearman": None if rho != rho else float(rho),
        "monotone": all(r[i + 1] >= r[i] for i in range(len(r) - 1)),
        "max_alpha_beats_zero": r[-1] > r[0],
    }


def _ci_cell(mean: float, half: float | None, n: int = 2, sign: bool = False) -> str:
    c = CI(mean, float("nan") if half is None else half, n)
    cell = fmt(c, 1.0, 3, sign=sign)
    return cell + (" *" if sign and c.excludes_zero() else "")


def table(results: dict) -> str:
    """Markdown table: reward mean ± 95 % CI over prompts; Δ vs base paired by prompt (* = the CI excludes 0)."""
    head = (
        "| method | α | reward (± 95 % CI) | Δ vs base (paired) | win vs base | KL to ref | distinct-1 | "
        "distinct-2 | ms/token | params MB |\n|---|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for r in results.values():
        half = r.get("reward_ci95", 1.96 * r["reward_se"])
        diff = (
            "—"
            if r["method"] == "base" or "reward_diff_vs_base" not in r
            else _ci_cell(r["reward_diff_vs_base"], r["reward_diff_vs_base_ci95"], sign=True)
        )
        lines.append(
            f"| {r['method']} | {r['alpha']:g} | {_ci_cell(r['reward'], half)} | {diff} | "
            f"{r.get('win_rate_vs_base', float('nan')):.3f} | {r['kl_ref']:.4f} | {r['distinct_1']:.3f} | "
            f"{r['distinct_2']:.3f} | {r['ms_per_token']:.2f} | {r['mem_params_mb']:.1f} |"
        )
    return head + "\n".join(lines) + "\n"


def plot(results: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from actlab.core.io import save_figure

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for kind, label in (("iav", "IAV"), ("iav-fb", "IAV, frozen base head")):
        rows = sorted((r for r in results.values() if r["kind"] == kind), key=lambda r: r["alpha"])
        if rows:
            ax.errorbar(
                [r["alpha"] for r in rows],
                [r["reward"] for r in rows],
                yerr=[r.get("reward_ci95", 1.96 * r["reward_se"]) for r in rows],
                marker="o",
                capsize=3,
                label=label,
            )
    colors = {"base": "gray", "genarm": "tab:green", "dpo": "tab:red"}
    for r in results.values():
        if r["kind"] in colors:
            ax.axhline(r["reward"], ls="--", color=colors[r["kind"]], label=r["method"])
    ax.set_xlabel("α")
    ax.set_ylabel("reward (mean, 95 % CI)")
    ax.set_title("reward vs α")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path, dpi=120)


callable_module(__name__, "evaluate")  # actlab.iav.evaluate(cfg): the family's evaluate (see actlab.iav)
