"""``actlab xmodel run-all``: extraction → CKA heatmaps → (k, j) grid → fitted maps → communication table.

Each stage writes its JSON into the run directory and is skipped when that file exists, so a killed run resumes
where it stopped (extraction also resumes per shard; fitted maps are reloaded from ``maps/<method>/``).

Run directory::

    pairs/                     shard-*.safetensors + pairs.json (paired last-token activations, held-out split)
    cka.json  cka_linear.png  cka_debiased.png         layer-by-layer CKA on held-out rows
    grid.json grid.png                                 AC accuracy over (k, j) on dev rows (train split)
    maps/<method>/map.safetensors + map.json           every fitted map
    maps.json                                          held-out R² / MSE / cosine / CKA / align / uniform / InfoNCE
    communicate.json                                   B alone, A alone, skyline, NL, AC (+ AC through maps)
    results.md  COMPLETE

:func:`run_seeds` repeats ``run_all`` for several seeds (texts, held-out split, eval rows and adapter init all change
with the seed) into ``seed<s>/`` and writes ``summary.json`` + ``summary.md``: every map score and communication
accuracy as mean ± 95 % CI over seeds, and method-vs-method paired differences (same seed) with their CI.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from actlab.core import arch
from actlab.core.errors import ActlabError
from actlab.core.io import RunDir, read_json
from actlab.core.models import short_name
from actlab.core.stats import fmt, mean_ci, paired_diff
from actlab.xmodel import align as A
from actlab.xmodel import metrics as M
from actlab.xmodel.communicate import evaluate, grid_search, task_rows
from actlab.xmodel.config import XModelConfig
from actlab.xmodel.extract import extract_pairs, load_pairs


def load_texts(spec: str, n: int, seed: int = 0) -> list[str]:
    """Alignment texts: ``syn_passages`` (the zoo world's passages, train split) or a .txt file (one per line)."""
    if spec == "syn_passages":
        from actlab.zoo.world import synthetic_rows

        return [r["text"] for r in synthetic_rows("syn_passages", "train", n, seed)]
    p = Path(spec).expanduser()
    if not p.is_file():
        raise ActlabError(f"texts {spec!r}: give 'syn_passages' or an existing .txt file with one text per line")
    lines = [x.strip() for x in p.read_text(encoding="utf-8").splitlines() if x.strip()]
    if not lines:
        raise ActlabError(f"texts file {p} has no non-empty lines")
    return lines[:n]


def _stage(rd: RunDir, name: str, fn):
    path = rd / f"{name}.json"
    if path.exists():
        return read_json(path)
    out = fn()
    rd.write_json(f"{name}.json", out)
    return out


def _map_eval(m: A.LinearMap, xa_te, yb_te, temperature: float) -> dict:
    pred = m(xa_te)
    out = M.regression_scores(pred, yb_te)
    out["cka_linear"] = M.linear_cka(pred, yb_te)
    out["cka_debiased"] = M.linear_cka(pred, yb_te, debiased=True)
    out["align"] = M.align_loss(pred, yb_te)
    out["uniform_mapped"] = M.uniform_loss(pred)
    out["uniform_b"] = M.uniform_loss(yb_te)
    out["infonce"] = M.info_nce(pred, yb_te, temperature)
    out["n_trainable"] = m.n_trainable
    out["info"] = m.cfg.info
    return out


def run_all(cfg: XModelConfig, out_dir: str | Path, models=None) -> dict:
    """Run every stage into ``out_dir``; ``models`` = ``((model_a, tok_a), (model_b, tok_b))`` skips loading."""
    rd = RunDir(out_dir)
    if rd.config_path.exists():
        old = {k: v for k, v in rd.read_config().items() if k != "_meta"}
        if old != dataclasses.asdict(cfg):
            raise ActlabError(f"{rd.path} holds a run with another config; use a new --out directory or delete it")
    else:
        rd.write_config(cfg)
    if models is None:
        from actlab.core.models import load

        models = (load(cfg.model_a, dtype=cfg.dtype, device=cfg.device),
                  load(cfg.model_b, dtype=cfg.dtype, device=cfg.device))
    (ma, ta), (mb, tb) = models
    for k, model in ((cfg.k, ma), (cfg.j, mb)):
        if k is not None:
            arch.check_layer(model, k)
    torch.manual_seed(cfg.seed)

    # 1. paired activations
    texts = load_texts(cfg.texts, cfg.n_texts, cfg.seed)
    if not (rd / "pairs" / "pairs.json").exists():
        extract_pairs(ma, ta, mb, tb, texts, rd / "pairs", pooling=cfg.pooling, shard_size=cfg.shard_size,
                      batch_size=cfg.batch_size, heldout=cfg.heldout, seed=cfg.seed, names=(cfg.model_a, cfg.model_b))
    pairs = load_pairs(rd / "pairs")

    # 2. layer-by-layer CKA on held-out rows
    def cka():
        xa = [pairs.split("test", "a", la) for la in pairs.layers_a]
        yb = [pairs.split("test", "b", lb) for lb in pairs.layers_b]
        out = {"layers_a": pairs.layers_a, "layers_b": pairs.layers_b, "n_test": int(pairs.test.sum())}
        for deb, key in ((False, "linear"), (True, "debiased")):
            mat = M.cka_matrix(xa, yb, debiased=deb)
            out[key] = mat.tolist()
            M.plot_heatmap(mat, rd / f"cka_{key}.png", f"{key} CKA (held-out, n={out['n_test']})",
                           f"B = {short_name(cfg.model_b)} layer", f"A = {short_name(cfg.model_a)} layer")
        return out

    cka_res = _stage(rd, "cka", cka)

    # 3. (k, j) grid on dev rows (train split of the task) → the communication layers
    def grid():
        dev = task_rows(cfg.task, cfg.n_dev, "train", cfg.seed) if cfg.n_dev else []
        if not dev or (cfg.k is not None and cfg.j is not None):
            return {"skipped": "k and j given" if dev else "n_dev = 0", "k": cfg.k, "j": cfg.j}
        g = grid_search(ma, ta, mb, tb, dev, cfg.task, range(arch.num_layers(ma)), range(arch.num_layers(mb)),
                        cfg.f, max_new_tokens=cfg.max_new_tokens, batch_size=cfg.batch_size)
        acc = torch.tensor(g["accuracy"])
        # best cell; ties go to the latest layers (the paper's choice of a late k = j)
        flat = [(float(acc[a, b]), a, b) for a in range(acc.shape[0]) for b in range(acc.shape[1])]
        _, bi, bj = max(flat)
        g.update(k=g["ks"][bi] if cfg.k is None else cfg.k, j=g["js"][bj] if cfg.j is None else cfg.j)
        M.plot_heatmap(acc.numpy(), rd / "grid.png", f"AC accuracy on {cfg.task} dev (f={cfg.f})",
                       f"j (B = {short_name(cfg.model_b)} layer)", f"k (A = {short_name(cfg.model_a)} layer)")
        return g

    g = _stage(rd, "grid", grid)
    n_a, n_b = arch.num_layers(ma), arch.num_layers(mb)
    k = cfg.k if cfg.k is not None else g.get("k") if g.get("k") is not None else max(0, n_a - 2)
    j = cfg.j if cfg.j is not None else g.get("j") if g.get("j") is not None else max(0, n_b - 2)
    k, j = arch.check_layer(ma, k), arch.check_layer(mb, j)

    # 4. fitted maps at (k, j)
    tc = A.TrainConfig(epochs=cfg.epochs, lr=cfg.lr, batch_size=cfg.train_batch_size, temperature=cfg.temperature,
                       mse_weight=cfg.mse_weight, seed=cfg.seed)
    xa_tr, yb_tr = pairs.split("train", "a", k), pairs.split("train", "b", j)
    xa_te, yb_te = pairs.split("test", "a", k), pairs.split("test", "b", j)
    fitted: dict[str, A.LinearMap] = {}

    def get_map(method: str) -> A.LinearMap:
        if method not in fitted:
            d = rd / "maps" / method
            if (d / A.CONFIG_FILE).exists():
                fitted[method] = A.load_map(d)
            else:
                fitted[method] = A.fit_map(method, xa_tr, yb_tr, lam=cfg.ridge_lambda, train=tc, rank=cfg.rank)
                fitted[method].save(d)
        return fitted[method]

    def maps():
        out = {"k": k, "j": j, "n_train": len(xa_tr), "n_test": len(xa_te), "d_a": xa_tr.shape[1],
               "d_b": yb_tr.shape[1], "raw_cka_linear": M.linear_cka(xa_te, yb_te),
               "raw_cka_debiased": M.linear_cka(xa_te, yb_te, debiased=True), "methods": {}}
        for method in cfg.methods:
            if method == "identity" and xa_tr.shape[1] != yb_tr.shape[1]:
                out["methods"][method] = {"skipped": f"widths differ ({xa_tr.shape[1]} vs {yb_tr.shape[1]})"}
                continue
            out["methods"][method] = _map_eval(get_map(method), xa_te, yb_te, cfg.temperature)
        return out

    maps_res = _stage(rd, "maps", maps)

    # 5. communication on held-out task rows
    def communicate():
        rows = task_rows(cfg.task, cfg.n_eval, "test", cfg.seed)
        res = evaluate(ma, ta, mb, tb, rows, cfg.task, k=k, j=j, f=cfg.f, max_new_tokens=cfg.max_new_tokens,
                       message_tokens=cfg.message_tokens, batch_size=cfg.batch_size)
        for method in cfg.ac_maps:
            if method == "identity" and arch.hidden_size(ma) != arch.hidden_size(mb):
                continue
            r = evaluate(ma, ta, mb, tb, rows, cfg.task, k=k, j=j, f="replace", W=get_map(method), methods=["ac"],
                         max_new_tokens=cfg.max_new_tokens, batch_size=cfg.batch_size)
            res["methods"][f"ac[{method}]"] = r["methods"]["ac"]
        return res

    comm = _stage(rd, "communicate", communicate)
    results = {"config": dataclasses.asdict(cfg), "cka": cka_res, "grid": g, "maps": maps_res, "communicate": comm}
    (rd / "results.md").write_text(format_results(results), encoding="utf-8")
    rd.mark_complete({"k": k, "j": j})
    return results


def format_results(r: dict) -> str:
    """Markdown tables of a run-all result (CKA matrix, map scores, communication table)."""
    c, m, comm = r["cka"], r["maps"], r["communicate"]
    lines = [f"## {r['config']['model_a']} (A) → {r['config']['model_b']} (B)", "",
             f"Debiased CKA, held-out n = {c['n_test']} (rows: A layers, columns: B layers):", "",
             "| A \\ B | " + " | ".join(str(x) for x in c["layers_b"]) + " |",
             "|---" * (len(c["layers_b"]) + 1) + "|"]
    for la, row in zip(c["layers_a"], c["debiased"]):
        lines.append(f"| {la} | " + " | ".join(f"{v:.3f}" for v in row) + " |")
    lines += ["", f"Maps A[{m['k']}] → B[{m['j']}] fitted on {m['n_train']} texts, scored on {m['n_test']} held-out "
              f"(raw debiased CKA {m['raw_cka_debiased']:.3f}):", "",
              "| map | R² | MSE | cosine | debiased CKA | InfoNCE | align | trainable params |", "|---|---|---|---|---|---|---|---|"]
    for name, s in m["methods"].items():
        if "skipped" in s:
            lines.append(f"| {name} | skipped: {s['skipped']} | | | | | | |")
            continue
        lines.append(f"| {name} | {s['r2']:.3f} | {s['mse']:.4g} | {s['cosine']:.3f} | {s['cka_debiased']:.3f} | "
                     f"{s['infonce']:.3f} | {s['align']:.3f} | {s['n_trainable']} |")
    lines += ["", f"Communication on {comm['task']} (n = {comm['n']}, k = {comm['k']}, j = {comm['j']}, "
              f"f = {comm['f']}; FLOPs by the paper's §3.2 accounting):", "",
              "| method | accuracy | FLOPs | seconds |", "|---|---|---|---|"]
    for name, s in comm["methods"].items():
        lines.append(f"| {name} | {100 * s['accuracy']:.1f}% | {s['flops']:.3g} | {s['seconds']:.2f} |")
    if "ac_over_nl_flops" in comm:
        lines += ["", f"AC / NL compute: {comm['ac_over_nl_flops']:.3f} (FLOPs), "
                  f"{comm['ac_over_nl_seconds']:.3f} (measured time)"]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------ several seeds
MAP_SCORES = (("r2", "R²", 1.0, 3), ("cosine", "cosine", 1.0, 3), ("cka_debiased", "debiased CKA", 1.0, 3),
              ("infonce", "InfoNCE", 1.0, 2))


def run_seeds(cfg: XModelConfig, out_dir: str | Path, seeds=(0, 1, 2), models=None) -> dict:
    """``run_all`` once per seed into ``out_dir/seed<s>/`` (each resumable), then :func:`summarize` over seeds."""
    if models is None:
        from actlab.core.models import load

        models = (load(cfg.model_a, dtype=cfg.dtype, device=cfg.device),
                  load(cfg.model_b, dtype=cfg.dtype, device=cfg.device))
    per = {int(s): run_all(dataclasses.replace(cfg, seed=int(s)), Path(out_dir) / f"seed{int(s)}", models)
           for s in seeds}
    summary = summarize(per)
    rd = RunDir(out_dir)
    rd.write_json("summary.json", summary)
    (rd / "summary.md").write_text(format_summary(summary), encoding="utf-8")
    return summary


def _ci_dict(ci) -> dict:
    return {"mean": ci.mean, "ci95": ci.half, "n": ci.n}


def summarize(per_seed: dict[int, dict]) -> dict:
    """Mean ± 95 % CI over seeds of each map score and each communication accuracy, plus paired differences:
    every map's R² vs the paper's ``learned`` W, every communication method vs ``b_alone`` and vs ``nl``."""
    seeds = sorted(per_seed)
    maps: dict[str, dict] = {}
    methods = [m for m in per_seed[seeds[0]]["maps"]["methods"]]
    for m in methods:
        rows = [per_seed[s]["maps"]["methods"].get(m, {}) for s in seeds]
        if any("skipped" in r or not r for r in rows):
            maps[m] = {"skipped": next((r.get("skipped") for r in rows if "skipped" in r), "missing")}
            continue
        maps[m] = {key: _ci_dict(mean_ci([r[key] for r in rows])) for key, *_ in MAP_SCORES}
        maps[m]["n_trainable"] = rows[0]["n_trainable"]
    ref = "learned" if "learned" in maps and "skipped" not in maps["learned"] else None
    map_diffs = {}
    if ref:
        base = [per_seed[s]["maps"]["methods"][ref]["r2"] for s in seeds]
        for m in methods:
            if m != ref and "skipped" not in maps[m]:
                map_diffs[f"{m} − {ref}"] = _ci_dict(paired_diff(
                    [per_seed[s]["maps"]["methods"][m]["r2"] for s in seeds], base))
    comm_methods = list(per_seed[seeds[0]]["communicate"]["methods"])
    comm = {m: _ci_dict(mean_ci([per_seed[s]["communicate"]["methods"].get(m, {}).get("accuracy") for s in seeds]))
            for m in comm_methods}
    comm_diffs = {}
    refs = [r for r in ("b_alone", "nl") if r in comm_methods]
    for i, ref_m in enumerate(refs):
        base = [per_seed[s]["communicate"]["methods"][ref_m]["accuracy"] for s in seeds]
        for m in comm_methods:
            if m != ref_m and m not in refs[:i]:  # no mirrored pair (b_alone − nl after nl − b_alone)
                comm_diffs[f"{m} − {ref_m}"] = _ci_dict(paired_diff(
                    [per_seed[s]["communicate"]["methods"].get(m, {}).get("accuracy") for s in seeds], base))
    first = per_seed[seeds[0]]
    return {"seeds": seeds, "model_a": first["config"]["model_a"], "model_b": first["config"]["model_b"],
            "k_j": {s: [per_seed[s]["maps"]["k"], per_seed[s]["maps"]["j"]] for s in seeds},
            "n_test_maps": first["maps"]["n_test"], "n_eval": first["communicate"]["n"],
            "task": first["communicate"]["task"], "maps": maps, "map_r2_diffs": map_diffs,
            "communicate": comm, "communicate_diffs": comm_diffs}


def _f(d: dict, scale: float = 1.0, digits: int = 3, sign: bool = False) -> str:
    from actlab.core.stats import CI

    return fmt(CI(d["mean"], d["ci95"], d["n"]), scale, digits, sign=sign)


def format_summary(sm: dict) -> str:
    """Markdown tables of :func:`summarize` (mean ± 95 % CI over seeds; * = a paired CI that excludes 0)."""
    from actlab.core.stats import CI

    n = len(sm["seeds"])
    kj = ", ".join(f"seed {s}: ({k}, {j})" for s, (k, j) in sm["k_j"].items())
    lines = [f"## {sm['model_a']} (A) → {sm['model_b']} (B), {n} seeds (mean ± 95 % CI over seeds)", "",
             f"Layers (k, j) per seed: {kj}. Maps scored on {sm['n_test_maps']} held-out texts per seed.", "",
             "| map | " + " | ".join(h for _, h, _, _ in MAP_SCORES) + " | trainable params |",
             "|---" * (len(MAP_SCORES) + 2) + "|"]
    for m, r in sm["maps"].items():
        if "skipped" in r:
            lines.append(f"| {m} | skipped: {r['skipped']} |" + " |" * len(MAP_SCORES))
            continue
        lines.append(f"| {m} | " + " | ".join(_f(r[key], sc, dg) for key, _, sc, dg in MAP_SCORES)
                     + f" | {r['n_trainable']} |")

    def star(d):
        return " *" if CI(d["mean"], d["ci95"], d["n"]).excludes_zero() else ""

    if sm["map_r2_diffs"]:
        lines += ["", "Held-out R², paired by seed (* = the 95 % CI excludes 0):", "", "| difference | ΔR² |",
                  "|---|---|"]
        lines += [f"| {k} | {_f(d, 1.0, 3, True)}{star(d)} |" for k, d in sm["map_r2_diffs"].items()]
    lines += ["", f"Communication on {sm['task']} ({sm['n_eval']} held-out rows per seed):", "",
              "| method | accuracy (%) |", "|---|---|"]
    lines += [f"| {m} | {_f(d, 100.0, 1)} |" for m, d in sm["communicate"].items()]
    if sm["communicate_diffs"]:
        lines += ["", "Accuracy differences, paired by seed (points; * = the 95 % CI excludes 0):", "",
                  "| difference | Δ accuracy |", "|---|---|"]
        lines += [f"| {k} | {_f(d, 100.0, 1, True)}{star(d)} |" for k, d in sm["communicate_diffs"].items()]
    return "\n".join(lines) + "\n"
