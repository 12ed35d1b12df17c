"""``actlab icae infer``: tasks ``ae``, ``qa``, ``repoqa``, ``trajectories`` for ICAE or SimpleLLM.

Writes ``<predictions_dir>/<task>_<model_type>.jsonl`` (one row per example) and
``<metrics_dir>/<task>_<model_type>.metrics.jsonl`` (the summary row; trajectories add per-turn and per-trajectory
rows; ``metrics_dir`` defaults to ``predictions_dir``).
Timing keys: ``time/compress_s``, ``time/ttft_s`` (prefill of the decoder, after compression), ``time/decode_tok_s``,
``mem/peak_mb`` (CUDA peak allocated; on CPU the process's peak RSS).
"""

from __future__ import annotations

import copy
import time
from collections import defaultdict
from pathlib import Path

import torch

from actlab.core.errors import ActlabError
from actlab.core.io import atomic_write_jsonl
from actlab.icae import metrics as M
from actlab.icae.config import ICAEConfig
from actlab.icae.model import ICAE, SimpleLLM


def predictions_dir(cfg: ICAEConfig) -> Path:
    return Path(cfg.predictions_dir) if cfg.predictions_dir else Path(cfg.output_dir) / "predictions"


def metrics_dir(cfg: ICAEConfig) -> Path:
    """``metrics_dir``, else next to the predictions (the seed's layout: ``data/metrics`` beside ``data/predictions``)."""
    return Path(cfg.metrics_dir) if cfg.metrics_dir else predictions_dir(cfg)


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def clean_answer(text: str) -> str:
    return text.strip().split("\n")[0].strip()


def timing_summary(t: dict) -> dict:
    out = {
        "time/compress_s": t.get("compress_s", 0.0),
        "time/ttft_s": t.get("ttft_s", 0.0),
        "time/decode_s": t.get("decode_s", 0.0),
        "time/decode_tok_s": t.get("decode_tokens", 0) / t["decode_s"] if t.get("decode_s") else float("nan"),
    }
    if t.get("memory_slots"):
        out["compression/rate"] = t["context_tokens"] / t["memory_slots"]
    return out


def _gen(model, contexts, prompts, special, max_new, timings):
    if isinstance(model, ICAE):
        return model.generate(contexts, prompts, special=special, max_new_tokens=max_new, timings=timings)
    return model.generate(contexts, prompts, max_new_tokens=max_new, timings=timings)


# -------------------------------------------------------------------------------------------------------- tasks
def eval_ae(model, cfg: ICAEConfig, texts: list[str] | None = None) -> tuple[list[dict], dict]:
    """Autoencode held-out passages; BLEU-1 in [0, 1] (ICAE only: a full-context model just copies)."""
    if not isinstance(model, ICAE) or not cfg.do_compress:
        raise ActlabError("task ae needs model_type: icae with do_compress: true (SimpleLLM has nothing to decode)")
    if texts is None:
        from actlab.icae.data import pretrain_texts

        texts = pretrain_texts(cfg, "test", cfg.num_eval_samples)
    rows, t = [], {}
    for i in range(0, len(texts), cfg.batch_size):
        chunk = texts[i : i + cfg.batch_size]
        n_max = max(len(model.tok(x, add_special_tokens=False)["input_ids"]) for x in chunk)
        preds = model.generate(chunk, None, special="AE", max_new_tokens=min(cfg.max_new_tokens, n_max + 8), timings=t)
        for ref, p in zip(chunk, preds):
            rows.append(
                {"reference": ref, "prediction": p, "bleu1": M.bleu1(p, ref), "exact": float(p.strip() == ref.strip())}
            )
    summary = {
        "ae/bleu1": M.mean([r["bleu1"] for r in rows]),
        "ae/exact": M.mean([r["exact"] for r in rows]),
        **timing_summary(t),
    }
    summary.update(ae_gauge_for(model, cfg, [r["reference"] for r in rows], [r["prediction"] for r in rows]))
    return rows, summary


def ae_gauge_for(model, cfg: ICAEConfig, refs: list[str], preds: list[str]) -> dict:
    """The honest gauge (:mod:`actlab.icae.gauge`) of an AE evaluation: floors from ``cfg``'s training texts.

    Candidates: the first training texts; the best constant is selected on ``syn_passages`` test rows of another
    seed (never the evaluation references), or for a hub set on training texts outside the candidate pool.
    """
    from actlab.icae import gauge
    from actlab.icae.data import pretrain_texts

    nc, ns = gauge.FLOOR_CANDIDATES, gauge.SELECT_REFS
    synthetic = cfg.pretrain_dataset == "syn_passages"
    train = pretrain_texts(cfg, "train", nc if synthetic else nc + ns)
    if synthetic:
        from actlab.data.sources import load_rows

        ref_set = set(refs)
        select = [r["text"] for r in load_rows("syn_passages", "test", ns, cfg.seed + 1) if r["text"] not in ref_set]
    else:
        select = train[nc:] or None
        train = train[:nc]
    return gauge.ae_gauge(model, refs, preds, train, select, synthetic, cfg.batch_size)


def eval_qa(model, cfg: ICAEConfig, rows: list[dict] | None = None) -> tuple[list[dict], dict]:
    """SQuAD EM / F1 (official, ×100) and BLEU-1 (×100); questions on one context reuse its [prefix+slots] KV."""
    from actlab.icae.data import qa_prompt, squad_rows

    rows = rows if rows is not None else squad_rows(cfg, "test", cfg.num_eval_samples)
    by_ctx: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(rows):
        by_ctx[r["context"]].append(i)
    preds: dict[int, str] = {}
    t: dict = {}
    singles = [i for idx in by_ctx.values() if len(idx) == 1 for i in idx]
    for ctx, idx in by_ctx.items():
        if len(idx) > 1 and isinstance(model, ICAE) and cfg.do_compress:
            out = model.generate_shared(ctx, [qa_prompt(rows[i]) for i in idx], "FT", cfg.max_new_tokens, t)
            preds.update(dict(zip(idx, out)))
        elif len(idx) > 1:
            singles += idx
    for s in range(0, len(singles), cfg.batch_size):
        idx = singles[s : s + cfg.batch_size]
        out = _gen(
            model, [rows[i]["context"] for i in idx], [qa_prompt(rows[i]) for i in idx], "FT", cfg.max_new_tokens, t
        )
        preds.update(dict(zip(idx, out)))
    out_rows = []
    for i, r in enumerate(rows):
        p = clean_answer(preds[i])
        golds = list(r["answers"]["text"])
        sc = M.squad_scores(p, golds)
        out_rows.append(
            {
                "id": r.get("id", i),
                "question": r["question"],
                "answers": golds,
                "prediction": p,
                "em": sc["em"],
                "f1": sc["f1"],
                "bleu1": M.bleu1(p, golds[0] if golds else ""),
            }
        )
    summary = {
        "qa/em": 100 * M.mean([r["em"] for r in out_rows]),
        "qa/f1": 100 * M.mean([r["f1"] for r in out_rows]),
        "qa/bleu1": 100 * M.mean([r["bleu1"] for r in out_rows]),
        **timing_summary(t),
    }
    return out_rows, summary


def eval_repoqa(model, cfg: ICAEConfig, tasks: list[dict] | None = None, threshold: float = 0.8):
    from actlab.icae.data import repoqa_prompt, repoqa_tasks

    tasks = tasks if tasks is not None else repoqa_tasks(cfg, "test", cfg.num_eval_samples)
    rows, t = [], {}
    for s in range(0, len(tasks), cfg.batch_size):
        chunk = tasks[s : s + cfg.batch_size]
        out = _gen(
            model, [x["context"] for x in chunk], [repoqa_prompt(x) for x in chunk], "FT", cfg.max_new_tokens, t
        )
        for task, p in zip(chunk, out):
            p = p.strip()
            ok, sim = M.repoqa_pass(p, task["gold"], task["needles"], threshold)
            rows.append(
                {
                    "description": task["description"],
                    "gold": task["gold"],
                    "prediction": p,
                    "similarity": sim,
                    "pass": float(ok),
                    "bleu1": M.bleu1(p, task["gold"]),
                }
            )
    summary = {
        "repoqa/similarity": M.mean([r["similarity"] for r in rows]),
        f"repoqa/pass@{threshold}": M.mean([r["pass"] for r in rows]),
        "repoqa/bleu1": M.mean([r["bleu1"] for r in rows]),
        **timing_summary(t),
    }
    return rows, summary


@torch.no_grad()
def eval_trajectories(model, cfg: ICAEConfig, trajs: list[list[dict]] | None = None):
    """Turn-by-turn with a running KV cache: each message is prefilled once (O(new) per turn, not O(history)).

    Per assistant turn: teacher-forced token accuracy / EM / BLEU-1 and autoregressive (greedy, len(ref) tokens)
    accuracy / EM; per trajectory: EM of all turns, compression rate (original / decoder tokens).
    """
    from transformers import DynamicCache

    from actlab.icae.data import trajectories
    from actlab.icae.trainer import chunk_embeds, trajectory_chunks

    trajs = trajs if trajs is not None else trajectories(cfg, "test", cfg.num_eval_samples)
    compress = isinstance(model, ICAE) and cfg.do_compress
    dec = model._decoder()
    turn_rows, traj_rows = [], []
    t_all: dict = {}
    bos = model.tok.bos_token_id
    for ti, msgs in enumerate(trajs):
        chunks = trajectory_chunks(model, msgs, compress=compress)  # type: ignore[arg-type]
        cache = DynamicCache()
        n_ctx = 0
        state = {"last": None}
        orig_tokens = dec_tokens = 0

        def prefill(emb, pids, _cache=cache, _state=state):
            nonlocal n_ctx
            mask = torch.ones((1, n_ctx + emb.shape[0]), dtype=torch.long, device=emb.device)
            with model._decoder_ctx():
                res = dec(
                    inputs_embeds=emb[None],
                    attention_mask=mask,
                    position_ids=pids[None].to(emb.device),
                    past_key_values=_cache,
                    use_cache=True,
                )
            n_ctx += emb.shape[0]
            _state["last"] = res.logits[0, -1, : model.vocab]
            return res.logits[0, :, : model.vocab]

        pos = 0
        if bos is not None:
            prefill(model.token_embeds(torch.tensor([bos])), torch.tensor([0]))
        turn = 0
        for ch in chunks:
            if ch["kind"] != "target":
                t0 = time.perf_counter()
                e, p, pos = chunk_embeds(model, ch, pos)  # type: ignore[arg-type]
                t_c = time.perf_counter() - t0
                t0 = time.perf_counter()
                prefill(e, p)
                t_all.setdefault("compress_s", 0.0)
                t_all["compress_s"] += t_c if ch["kind"] == "mem" else 0.0
                t_all["prefill_s"] = t_all.get("prefill_s", 0.0) + time.perf_counter() - t0
                orig_tokens += len(ch["ids"])
                dec_tokens += e.shape[0]
                continue
            ref = ch["ids"]
            # autoregressive: greedy len(ref) tokens from a copy of the running cache
            ar_cache = copy.deepcopy(cache)
            nxt = int(state["last"].argmax())
            ar = [nxt]
            mask_n = n_ctx
            t0 = time.perf_counter()
            for j in range(1, len(ref)):
                mask_n += 1
                with model._decoder_ctx():
                    r = dec(
                        inputs_embeds=model.token_embeds(torch.tensor([[nxt]])),
                        attention_mask=torch.ones((1, mask_n), dtype=torch.long, device=model.device),
                        position_ids=torch.tensor([[pos + j]], device=model.device),
                        past_key_values=ar_cache,
                        use_cache=True,
                    )
                nxt = int(r.logits[0, -1, : model.vocab].argmax())
                ar.append(nxt)
            t_all["decode_s"] = t_all.get("decode_s", 0.0) + time.perf_counter() - t0
            t_all["decode_tokens"] = t_all.get("decode_tokens", 0) + len(ref) - 1
            # teacher forced: the reference turn enters the history (one prefill gives all its predictions)
            first = int(state["last"].argmax())
            t0 = time.perf_counter()
            logits = prefill(model.token_embeds(torch.tensor(ref)), torch.arange(pos + 1, pos + 1 + len(ref)))
            t_all["forward_s"] = t_all.get("forward_s", 0.0) + time.perf_counter() - t0
            tf = [first] + logits[:-1].argmax(-1).tolist()
            pos += len(ref)
            orig_tokens += len(ref)
            dec_tokens += len(ref)
            ref_text, tf_text = model.tok.decode(ref), model.tok.decode(tf)
            turn_rows.append(
                {
                    "trajectory": ti,
                    "turn": turn,
                    "tf/acc": M.token_accuracy(tf, ref),
                    "tf/em": float(tf == ref),
                    "tf/bleu1": M.bleu1(tf_text, ref_text),
                    "ar/acc": M.token_accuracy(ar, ref),
                    "ar/em": float(ar == ref),
                    "reference": ref_text,
                    "prediction_ar": model.tok.decode(ar),
                }
            )
            turn += 1
        mine = [r for r in turn_rows if r["trajectory"] == ti]
        traj_rows.append(
            {
                "trajectory": ti,
                "turns": len(mine),
                "tf/em": float(all(r["tf/em"] for r in mine)),
                "ar/em": float(all(r["ar/em"] for r in mine)),
                "tf/acc": M.mean([r["tf/acc"] for r in mine]),
                "original_tokens": orig_tokens,
                "decoder_tokens": dec_tokens,
                "compression/rate": orig_tokens / max(1, dec_tokens),
            }
        )
    summary = {k: M.mean([r[k] for r in turn_rows]) for k in ("tf/acc", "tf/em", "tf/bleu1", "ar/acc", "ar/em")}
    summary = {f"traj/turn_{k}": v for k, v in summary.items()}
    summary["traj/trajectory_tf_em"] = M.mean([r["tf/em"] for r in traj_rows])
    summary["traj/trajectory_ar_em"] = M.mean([r["ar/em"] for r in traj_rows])
    tot_o, tot_d = sum(r["original_tokens"] for r in traj_rows), sum(r["decoder_tokens"] for r in traj_rows)
    summary["compression/rate"] = tot_o / max(1, tot_d)
    summary.update({"time/compress_s": t_all.get("compress_s", 0.0), "time/prefill_s": t_all.get("prefill_s", 0.0),
                    "time/forward_s": t_all.get("forward_s", 0.0),
                    "time/decode_tok_s": t_all.get("decode_tokens", 0) / t_all["decode_s"] if t_all.get("decode_s")
                    else float("nan")})  # fmt: skip
    return turn_rows, summary, traj_rows


# ------------------------------------------------------------------------------------------------------- entry
def run_infer(cfg: ICAEConfig, model=None) -> dict:
    """Run ``cfg.task`` and write predictions + metrics JSONL; returns the summary."""
    from actlab.icae.trainer import build_model

    model = model if model is not None else build_model(cfg)
    dev = model.device
    reset_peak(dev)
    extra: list[dict] = []
    if cfg.task == "ae":
        rows, summary = eval_ae(model, cfg)
    elif cfg.task == "qa":
        rows, summary = eval_qa(model, cfg)
    elif cfg.task == "repoqa":
        rows, summary = eval_repoqa(model, cfg)
    elif cfg.task == "trajectories":
        rows, summary, extra = eval_trajectories(model, cfg)
    else:  # pragma: no cover - the config validates task
        raise ActlabError(f"unknown task {cfg.task!r}")
    summary["mem/peak_mb"] = peak_mb(dev)
    kind = cfg.model_type if not isinstance(model, SimpleLLM) else "llm"
    summary = {"task": cfg.task, "model_type": kind, "n": len(rows), **summary}
    out = predictions_dir(cfg)
    atomic_write_jsonl(out / f"{cfg.task}_{kind}.jsonl", rows)
    atomic_write_jsonl(metrics_dir(cfg) / f"{cfg.task}_{kind}.metrics.jsonl", [summary, *extra])
    return summary
