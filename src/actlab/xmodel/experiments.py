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
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from actlab.core import arch
from actlab.core.errors import ActlabError
from actlab.core.io import RunDir, read_json
from actlab.core.models import short_name
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
