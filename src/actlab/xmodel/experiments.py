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

C4 = ("allenai/c4", "en", "validation")  # the paper's W is trained on C4 sentences; the seed streamed this split


def c4_texts(n: int, seed: int = 0, min_chars: int = 50, max_chars: int = 512, buffer_size: int = 1000) -> list[str]:
    """``n`` texts streamed from C4 (``allenai/c4``, ``en``, validation; nothing is downloaded in full): the
    ``text`` field of documents with more than ``min_chars`` characters, cut to ``max_chars`` (the seed's filter),
    in an order shuffled by ``seed`` within a ``buffer_size``-document buffer."""
    from actlab.data.sources import hub_error, load_hub

    hint = "--texts c4: offline? use syn_passages or a .txt file"
    ds = load_hub(C4[0], C4[1], C4[2], streaming=True, hint=hint).shuffle(seed=seed, buffer_size=buffer_size)
    out = []
    try:
        for row in ds:
            text = (row.get("text") or "").strip()
            if len(text) > min_chars:
                out.append(text[:max_chars])
                if len(out) >= n:
                    break
    except (OSError, ConnectionError, ValueError) as e:  # the stream fetches as it goes
        raise hub_error(C4[0], C4[1], C4[2], e, hint=hint, verb="stream") from None
    if not out:
        raise ActlabError(f"--texts c4: no document of {C4[0]} has more than {min_chars} characters")
    return out


def load_texts(spec: str, n: int, seed: int = 0) -> list[str]:
    """Alignment texts: ``syn_passages`` (the synthetic world's passages, train split), ``c4`` (streamed,
    :func:`c4_texts`) or a .txt file (one per line)."""
    if spec == "syn_passages":
        from actlab.data.sources import load_rows

        return [r["text"] for r in load_rows("syn_passages", "train", n, seed)]
    if spec == "c4":
        return c4_texts(n, seed)
    p = Path(spec).expanduser()
    if not p.is_file():
        raise ActlabError(f"texts {spec!r}: give 'syn_passages', 'c4' or an existing .txt file with one text per line")
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


def procrustes_layers(
    pairs,
    layers: list[int],
    out_dir: str | Path | None = None,
    *,
    layers_b: list[int] | None = None,
    scale: bool = True,
    translate: bool = True,
    temperature: float = 0.07,
    fit=None,
) -> dict:
    """One Procrustes map per layer (the seed's layer list, e.g. [0, 8, 16, 24]): A's layer ``layers[i]`` → B's
    ``layers_b[i]`` (default the same index), fitted on the train rows of ``pairs``, scored on the held-out rows
    (the :func:`_map_eval` scores plus the raw debiased CKA); maps saved to ``out_dir/layer<a>-<b>/`` when given.
    Every layer must have been extracted (one line naming the extracted ones otherwise). ``fit(xa, yb)`` replaces
    the Procrustes fit by another map (``xmodel align --layers`` with ``--method``)."""
    layers_b = list(layers) if layers_b is None else list(layers_b)
    if len(layers_b) != len(layers):
        raise ActlabError(f"{len(layers)} layers of A but {len(layers_b)} of B; give one B layer per A layer")
    out = {"layers_a": list(layers), "layers_b": layers_b, "results": {}}
    for la, lb in zip(layers, layers_b):
        for side, layer, have in (("A", la, pairs.layers_a), ("B", lb, pairs.layers_b)):
            if layer not in have:
                raise ActlabError(f"layer {layer} of {side} was not extracted; extracted: {', '.join(map(str, have))}")
        xa, yb = pairs.split("train", "a", la), pairs.split("train", "b", lb)
        xt, yt = pairs.split("test", "a", la), pairs.split("test", "b", lb)
        m = fit(xa, yb) if fit is not None else A.procrustes(xa, yb, scale=scale, translate=translate)
        if out_dir is not None:
            m.save(Path(out_dir) / f"layer{la}-{lb}")
        out["results"][f"{la}-{lb}"] = {
            "layer_a": la,
            "layer_b": lb,
            "n_train": len(xa),
            "n_test": len(xt),
            "raw_cka_debiased": M.linear_cka(xt, yt, debiased=True),
            **_map_eval(m, xt, yt, temperature),
        }
    return out


def run_all(cfg: XModelConfig, out_dir: str | Path, models=None) -> dict:
    """Run every stage into ``out_dir``; ``models`` = ``((model_a, tok_a), (model_b, tok_b))`` skips loading.

    Under ``torchrun`` / ``accelerate launch`` (``WORLD_SIZE`` > 1) the extraction's shards are shared over the
    processes; then rank 0 alone runs the later stages (the single-process result) and the other ranks return
    ``{"rank": r, "pairs": dir}`` once every shard and ``pairs.json`` are written."""
    from actlab.core.distributed import start

    dist = start(cfg.device, verb="xmodel run-all")
    dist.refuse_fsdp("xmodel run-all", "its extraction trains nothing and its maps are small")
    rank, world = dist.rank, dist.world
    rd = RunDir(out_dir, lock=dist.is_main)  # rank 0 owns the run directory
    if world > 1 and rank > 0:
        pass  # rank 0 checks and writes the config
    elif rd.config_path.exists():
        old = {k: v for k, v in rd.read_config().items() if k != "_meta"}
        new = dataclasses.asdict(cfg)
        old = {**{k: None for k, v in new.items() if k not in old and v is None}, **old}  # a field added since: unset
        if old != new:
            raise ActlabError(f"{rd.path} holds a run with another config; use a new --out directory or delete it")
    else:
        rd.write_config(cfg)
    if models is None:
        from actlab.core.models import load

        dev = str(dist.device) if dist.active else cfg.device  # under a launcher: this rank's device
        models = (load(cfg.model_a, dtype=cfg.dtype, device=dev), load(cfg.model_b, dtype=cfg.dtype, device=dev))
    (ma, ta), (mb, tb) = models
    for k, model in ((cfg.k, ma), (cfg.j, mb)):
        if k is not None:
            arch.check_layer(model, k)
    for layer in cfg.procrustes_layers or []:
        for model in (ma, mb):
            arch.check_layer(model, layer)
    torch.manual_seed(cfg.seed)

    # 1. paired activations
    texts = load_texts(cfg.texts, cfg.n_texts, cfg.seed)
    if not (rd / "pairs" / "pairs.json").exists():
        extract_pairs(
            ma,
            ta,
            mb,
            tb,
            texts,
            rd / "pairs",
            pooling=cfg.pooling,
            shard_size=cfg.shard_size,
            batch_size=cfg.batch_size,
            heldout=cfg.heldout,
            seed=cfg.seed,
            names=(cfg.model_a, cfg.model_b),
        )
        dist.barrier()  # rank 0 has written pairs.json
    if world > 1 and rank > 0:
        return {"rank": rank, "pairs": str(rd / "pairs")}
    pairs = load_pairs(rd / "pairs")

    # 2. layer-by-layer CKA on held-out rows
    def cka():
        xa = [pairs.split("test", "a", la) for la in pairs.layers_a]
        yb = [pairs.split("test", "b", lb) for lb in pairs.layers_b]
        out = {"layers_a": pairs.layers_a, "layers_b": pairs.layers_b, "n_test": int(pairs.test.sum())}
        for deb, key in ((False, "linear"), (True, "debiased")):
            mat = M.cka_matrix(xa, yb, debiased=deb)
            out[key] = mat.tolist()
            M.plot_heatmap(
                mat,
                rd / f"cka_{key}.png",
                f"{key} CKA (held-out, n={out['n_test']})",
                f"B = {short_name(cfg.model_b)} layer",
                f"A = {short_name(cfg.model_a)} layer",
            )
        return out

    cka_res = _stage(rd, "cka", cka)

    # 2b. Procrustes at a list of layers (the seed's [0, 8, 16, 24]), each index on both models
    layer_res = None
    if cfg.procrustes_layers:

        def layer_list():
            ids = [arch.check_layer(ma, x) for x in cfg.procrustes_layers]
            ids_b = [arch.check_layer(mb, x) for x in cfg.procrustes_layers]
            return procrustes_layers(
                pairs, ids, rd / "maps" / "procrustes-layers", layers_b=ids_b, temperature=cfg.temperature
            )

        layer_res = _stage(rd, "procrustes_layers", layer_list)

    # 3. (k, j) grid on dev rows (train split of the task) → the communication layers
    def grid():
        dev = task_rows(cfg.task, cfg.n_dev, "train", cfg.seed) if cfg.n_dev else []
        if not dev or (cfg.k is not None and cfg.j is not None):
            return {"skipped": "k and j given" if dev else "n_dev = 0", "k": cfg.k, "j": cfg.j}
        g = grid_search(
            ma,
            ta,
            mb,
            tb,
            dev,
            cfg.task,
            range(arch.num_layers(ma)),
            range(arch.num_layers(mb)),
            cfg.f,
            max_new_tokens=cfg.max_new_tokens,
            batch_size=cfg.batch_size,
        )
        acc = torch.tensor(g["accuracy"])
        # best cell; ties go to the latest layers (the paper's choice of a late k = j)
        flat = [(float(acc[a, b]), a, b) for a in range(acc.shape[0]) for b in range(acc.shape[1])]
        _, bi, bj = max(flat)
        g.update(k=g["ks"][bi] if cfg.k is None else cfg.k, j=g["js"][bj] if cfg.j is None else cfg.j)
        M.plot_heatmap(
            acc.numpy(),
            rd / "grid.png",
            f"AC accuracy on {cfg.task} dev (f={cfg.f})",
            f"j (B = {short_name(cfg.model_b)} layer)",
            f"k (A = {short_name(cfg.model_a)} layer)",
        )
        return g

    g = _stage(rd, "grid", grid)
    n_a, n_b = arch.num_layers(ma), arch.num_layers(mb)
    k = cfg.k if cfg.k is not None else g.get("k") if g.get("k") is not None else max(0, n_a - 2)
    j = cfg.j if cfg.j is not None else g.get("j") if g.get("j") is not None else max(0, n_b - 2)
    k, j = arch.check_layer(ma, k), arch.check_layer(mb, j)

    # 4. fitted maps at (k, j)
    tc = A.TrainConfig(
        epochs=cfg.epochs,
        lr=cfg.lr,
        batch_size=cfg.train_batch_size,
        temperature=cfg.temperature,
        mse_weight=cfg.mse_weight,
        seed=cfg.seed,
    )
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
        out = {
            "k": k,
            "j": j,
            "n_train": len(xa_tr),
            "n_test": len(xa_te),
            "d_a": xa_tr.shape[1],
            "d_b": yb_tr.shape[1],
            "raw_cka_linear": M.linear_cka(xa_te, yb_te),
            "raw_cka_debiased": M.linear_cka(xa_te, yb_te, debiased=True),
            "methods": {},
        }
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
        res = evaluate(
            ma,
            ta,
            mb,
            tb,
            rows,
            cfg.task,
            k=k,
            j=j,
            f=cfg.f,
            max_new_tokens=cfg.max_new_tokens,
            message_tokens=cfg.message_tokens,
            batch_size=cfg.batch_size,
        )
        for method in cfg.ac_maps:
            if method == "identity" and arch.hidden_size(ma) != arch.hidden_size(mb):
                continue
            r = evaluate(
                ma,
                ta,
                mb,
                tb,
                rows,
                cfg.task,
                k=k,
                j=j,
                f="replace",
                W=get_map(method),
                methods=["ac"],
                max_new_tokens=cfg.max_new_tokens,
                batch_size=cfg.batch_size,
            )
            res["methods"][f"ac[{method}]"] = r["methods"]["ac"]
        return res

    comm = _stage(rd, "communicate", communicate)
    results = {"config": dataclasses.asdict(cfg), "cka": cka_res, "grid": g, "maps": maps_res, "communicate": comm}
    if layer_res is not None:
        results["procrustes_layers"] = layer_res
    (rd / "results.md").write_text(format_results(results), encoding="utf-8")
    rd.mark_complete({"k": k, "j": j})
    return results


def format_results(r: dict) -> str:
    """Markdown tables of a run-all result (CKA matrix, map scores, communication table)."""
    c, m, comm = r["cka"], r["maps"], r["communicate"]
    lines = [
        f"## {r['config']['model_a']} (A) → {r['config']['model_b']} (B)",
        "",
        f"Debiased CKA, held-out n = {c['n_test']} (rows: A layers, columns: B layers):",
        "",
        "| A \\ B | " + " | ".join(str(x) for x in c["layers_b"]) + " |",
        "|---" * (len(c["layers_b"]) + 1) + "|",
    ]
    for la, row in zip(c["layers_a"], c["debiased"]):
        lines.append(f"| {la} | " + " | ".join(f"{v:.3f}" for v in row) + " |")
    lines += [
        "",
        f"Maps A[{m['k']}] → B[{m['j']}] fitted on {m['n_train']} texts, scored on {m['n_test']} held-out "
        f"(raw debiased CKA {m['raw_cka_debiased']:.3f}):",
        "",
        "| map | R² | MSE | cosine | debiased CKA | InfoNCE | align | trainable params |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, s in m["methods"].items():
        if "skipped" in s:
            lines.append(f"| {name} | skipped: {s['skipped']} | | | | | | |")
            continue
        lines.append(
            f"| {name} | {s['r2']:.3f} | {s['mse']:.4g} | {s['cosine']:.3f} | {s['cka_debiased']:.3f} | "
            f"{s['infonce']:.3f} | {s['align']:.3f} | {s['n_trainable']} |"
        )
    lines += [
        "",
        f"Communication on {comm['task']} (n = {comm['n']}, k = {comm['k']}, j = {comm['j']}, "
        f"f = {comm['f']}; FLOPs by the paper's §3.2 accounting):",
        "",
        "| method | accuracy | FLOPs | seconds |",
        "|---|---|---|---|",
    ]
    for name, s in comm["methods"].items():
        lines.append(f"| {name} | {100 * s['accuracy']:.1f}% | {s['flops']:.3g} | {s['seconds']:.2f} |")
    if r.get("procrustes_layers"):
        lines += [
            "",
            "Procrustes per layer (A layer → B layer; held-out):",
            "",
            "| layers | R² | cosine | raw debiased CKA |",
            "|---|---|---|---|",
        ]
        for key, s in r["procrustes_layers"]["results"].items():
            lines.append(f"| {key} | {s['r2']:.3f} | {s['cosine']:.3f} | {s['raw_cka_debiased']:.3f} |")
    if "ac_over_nl_flops" in comm:
        lines += [
            "",
            f"AC / NL compute: {comm['ac_over_nl_flops']:.3f} (FLOPs), "
            f"{comm['ac_over_nl_seconds']:.3f} (measured time)",
        ]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------ several seeds
MAP_SCORES = (
    ("r2", "R²", 1.0, 3),
    ("cosine", "cosine", 1.0, 3),
    ("cka_debiased", "debiased CKA", 1.0, 3),
    ("infonce", "InfoNCE", 1.0, 2),
)


def run_seeds(cfg: XModelConfig, out_dir: str | Path, seeds=(0, 1, 2), models=None) -> dict:
    """``run_all`` once per seed into ``out_dir/seed<s>/`` (each resumable), then :func:`summarize` over seeds."""
    if models is None:
        from actlab.core.models import load

        models = (
            load(cfg.model_a, dtype=cfg.dtype, device=cfg.device),
            load(cfg.model_b, dtype=cfg.dtype, device=cfg.device),
        )
    per = {
        int(s): run_all(dataclasses.replace(cfg, seed=int(s)), Path(out_dir) / f"seed{int(s)}", models) for s in seeds
    }
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
                map_diffs[f"{m} − {ref}"] = _ci_dict(
                    paired_diff([per_seed[s]["maps"]["methods"][m]["r2"] for s in seeds], base)
                )
    comm_methods = list(per_seed[seeds[0]]["communicate"]["methods"])
    comm = {
        m: _ci_dict(mean_ci([per_seed[s]["communicate"]["methods"].get(m, {}).get("accuracy") for s in seeds]))
        for m in comm_methods
    }
    comm_diffs = {}
    refs = [r for r in ("b_alone", "nl") if r in comm_methods]
    for i, ref_m in enumerate(refs):
        base = [per_seed[s]["communicate"]["methods"][ref_m]["accuracy"] for s in seeds]
        for m in comm_methods:
            if m != ref_m and m not in refs[:i]:  # no mirrored pair (b_alone − nl after nl − b_alone)
                comm_diffs[f"{m} − {ref_m}"] = _ci_dict(
                    paired_diff(
                        [per_seed[s]["communicate"]["methods"].get(m, {}).get("accuracy") for s in seeds], base
                    )
                )
    first = per_seed[seeds[0]]
    return {
        "seeds": seeds,
        "model_a": first["config"]["model_a"],
        "model_b": first["config"]["model_b"],
        "k_j": {s: [per_seed[s]["maps"]["k"], per_seed[s]["maps"]["j"]] for s in seeds},
        "n_test_maps": first["maps"]["n_test"],
        "n_eval": first["communicate"]["n"],
        "task": first["communicate"]["task"],
        "maps": maps,
        "map_r2_diffs": map_diffs,
        "communicate": comm,
        "communicate_diffs": comm_diffs,
    }


def _f(d: dict, scale: float = 1.0, digits: int = 3, sign: bool = False) -> str:
    from actlab.core.stats import CI

    return fmt(CI(d["mean"], d["ci95"], d["n"]), scale, digits, sign=sign)


def format_summary(sm: dict) -> str:
    """Markdown tables of :func:`summarize` (mean ± 95 % CI over seeds; * = a paired CI that excludes 0)."""
    from actlab.core.stats import CI

    n = len(sm["seeds"])
    kj = ", ".join(f"seed {s}: ({k}, {j})" for s, (k, j) in sm["k_j"].items())
    lines = [
        f"## {sm['model_a']} (A) → {sm['model_b']} (B), {n} seeds (mean ± 95 % CI over seeds)",
        "",
        f"Layers (k, j) per seed: {kj}. Maps scored on {sm['n_test_maps']} held-out texts per seed.",
        "",
        "| map | " + " | ".join(h for _, h, _, _ in MAP_SCORES) + " | trainable params |",
        "|---" * (len(MAP_SCORES) + 2) + "|",
    ]
    for m, r in sm["maps"].items():
        if "skipped" in r:
            lines.append(f"| {m} | skipped: {r['skipped']} |" + " |" * len(MAP_SCORES))
            continue
        lines.append(
            f"| {m} | " + " | ".join(_f(r[key], sc, dg) for key, _, sc, dg in MAP_SCORES) + f" | {r['n_trainable']} |"
        )

    def star(d):
        return " *" if CI(d["mean"], d["ci95"], d["n"]).excludes_zero() else ""

    if sm["map_r2_diffs"]:
        lines += [
            "",
            "Held-out R², paired by seed (* = the 95 % CI excludes 0):",
            "",
            "| difference | ΔR² |",
            "|---|---|",
        ]
        lines += [f"| {k} | {_f(d, 1.0, 3, True)}{star(d)} |" for k, d in sm["map_r2_diffs"].items()]
    lines += [
        "",
        f"Communication on {sm['task']} ({sm['n_eval']} held-out rows per seed):",
        "",
        "| method | accuracy (%) |",
        "|---|---|",
    ]
    lines += [f"| {m} | {_f(d, 100.0, 1)} |" for m, d in sm["communicate"].items()]
    if sm["communicate_diffs"]:
        lines += [
            "",
            "Accuracy differences, paired by seed (points; * = the 95 % CI excludes 0):",
            "",
            "| difference | Δ accuracy |",
            "|---|---|",
        ]
        lines += [f"| {k} | {_f(d, 100.0, 1, True)}{star(d)} |" for k, d in sm["communicate_diffs"].items()]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------- the seed's experiment functions
def _device(gpu_id: int | None, device: str | None) -> str | None:
    """``gpu_id`` N → ``cuda:N`` when CUDA is available (else the default device); an explicit ``device`` wins."""
    if device is not None or gpu_id is None:
        return device
    return f"cuda:{int(gpu_id)}" if torch.cuda.is_available() else None


def _load_pair(model_a_id, model_b_id, models, device=None, dtype=None):
    if models is not None:
        return models
    from actlab.core.models import load

    ma = load(model_a_id, dtype=dtype, device=device)
    mb = ma if model_b_id == model_a_id else load(model_b_id, dtype=dtype, device=device)
    return ma, mb


def _extract(
    models,
    texts,
    n_texts,
    out,
    seed,
    heldout=0.2,
    layers_a=None,
    layers_b=None,
    pooling="last",
    batch_size=16,
    names=("A", "B"),
):
    """Paired activations in ``out/pairs`` (reused when there), or in a temporary directory removed after loading
    (``load_pairs`` concatenates the shards into memory)."""
    import tempfile

    (ma, ta), (mb, tb) = models
    rows = list(texts) if isinstance(texts, (list, tuple)) else load_texts(texts, n_texts, seed)

    def get(target: Path):
        if not (target / "pairs.json").exists():
            extract_pairs(
                ma,
                ta,
                mb,
                tb,
                rows[:n_texts],
                target,
                layers_a=layers_a,
                layers_b=layers_b,
                pooling=pooling,
                batch_size=batch_size,
                heldout=heldout,
                seed=seed,
                names=names,
            )
        return load_pairs(target)

    if out is not None:
        return get(Path(out) / "pairs")
    with tempfile.TemporaryDirectory(prefix="actlab-xmodel-pairs-") as tmp:
        return get(Path(tmp))


def _save(out, name: str, res: dict) -> dict:
    if out is not None:
        RunDir(out).write_json(name, res)
    return res


def train_learned_projection(
    model_a,
    model_b,
    tokenizer_a,
    tokenizer_b,
    dim_a: int | None = None,
    dim_b: int | None = None,
    layer_idx: int = 25,
    num_samples: int = 3072,
    learning_rate: float = 1e-3,
    num_epochs: int = 10,
    batch_size: int = 32,
    device: str | None = None,
    seed: int = 42,
    texts="syn_passages",
    layer_idx_b: int | None = None,
) -> A.LearnedProjection:
    """The paper's W (Ramesh & Li §3.1) from loaded models: final-token block outputs of A at ``layer_idx`` and of B
    at ``layer_idx_b`` (default the same) on ``num_samples`` texts, then :class:`LearnedProjection` fitted by Adam
    on (1/N)Σ‖z − W y‖² (lr, epochs and batch as the paper: 1e-3, 10, 32; N = 3072 = d_A).

    Layers are 0-based block outputs: the default 25 is HF ``hidden_states[26]``, the paper's layer 26 (the seed's
    ``layer_idx=26`` read ``hidden_states[26]``). ``texts``: ``syn_passages`` (offline; the default), ``c4`` (the seed's, streamed), a .txt file or a
    list of strings. ``device`` is where the returned map lives; the models stay where they are."""
    lb = layer_idx if layer_idx_b is None else layer_idx_b
    arch.check_layer(model_a, layer_idx)
    arch.check_layer(model_b, lb)
    rows = list(texts) if isinstance(texts, (list, tuple)) else load_texts(texts, num_samples, seed)
    rows = rows[:num_samples]
    if len(rows) < 2:
        raise ActlabError(f"training a projection needs at least 2 texts, got {len(rows)}")
    from actlab.xmodel.extract import pooled_activations

    xa = pooled_activations(model_a, tokenizer_a, rows, [layer_idx], "last", batch_size)[0]
    yb = pooled_activations(model_b, tokenizer_b, rows, [lb], "last", batch_size)[0]
    for name, want, got in (("dim_a", dim_a, xa.shape[1]), ("dim_b", dim_b, yb.shape[1])):
        if want is not None and int(want) != got:
            raise ActlabError(f"{name} = {want} but the model's width is {got}")
    tc = A.TrainConfig(epochs=num_epochs, lr=learning_rate, batch_size=batch_size, seed=seed)
    m = A.learned_projection(xa, yb, tc)
    m.cfg.info = {**(m.cfg.info or {}), "layer_a": layer_idx, "layer_b": lb, "n": len(rows)}
    return m.to(device) if device else m


def run_procrustes_experiment(
    model_a_id: str = "tiny",
    model_b_id: str = "tiny-b",
    layers=(0, 8, 16, 24),
    *,
    texts="syn_passages",
    n_texts: int = 512,
    heldout: float = 0.2,
    pooling: str = "last",
    scale: bool = True,
    translate: bool = True,
    seed: int = 0,
    out=None,
    device: str | None = None,
    dtype: str | None = None,
    models=None,
) -> dict:
    """Procrustes A → B at each of ``layers`` (the seed's [0, 8, 16, 24], same index on both models): paired
    activations of the texts, one map per layer fitted on the train rows, held-out R² / MSE / cosine / CKA
    (:func:`procrustes_layers`). ``out``: a directory for the pairs, the maps and ``procrustes.json``."""
    models = _load_pair(model_a_id, model_b_id, models, device, dtype)
    (ma, _), (mb, _) = models
    ids_a = [arch.check_layer(ma, x) for x in layers]
    ids_b = [arch.check_layer(mb, x) for x in layers]
    pairs = _extract(
        models,
        texts,
        n_texts,
        out,
        seed,
        heldout,
        sorted(set(ids_a)),
        sorted(set(ids_b)),
        pooling,
        names=(model_a_id, model_b_id),
    )
    res = procrustes_layers(
        pairs,
        ids_a,
        None if out is None else Path(out) / "maps" / "procrustes",
        layers_b=ids_b,
        scale=scale,
        translate=translate,
    )
    res["config"] = {
        "model_a": model_a_id,
        "model_b": model_b_id,
        "layers": list(layers),
        "n_texts": n_texts,
        "pooling": pooling,
        "seed": seed,
    }
    return _save(out, "procrustes.json", res)


def _adapter_experiment(
    kind: str,
    model_a_id,
    model_b_id,
    gpu_id=None,
    *,
    layer_a: int = -2,
    layer_b: int | None = None,
    rank: int = 32,
    texts="syn_passages",
    n_texts: int = 512,
    heldout: float = 0.2,
    epochs: int = 10,
    lr: float = 1e-3,
    batch_size: int = 32,
    temperature: float = 0.07,
    mse_weight: float = 1.0,
    seed: int = 0,
    out=None,
    device: str | None = None,
    dtype: str | None = None,
    models=None,
) -> dict:
    models = _load_pair(model_a_id, model_b_id, models, _device(gpu_id, device), dtype)
    (ma, _), (mb, _) = models
    la = arch.check_layer(ma, layer_a)
    lb = arch.check_layer(mb, layer_a if layer_b is None else layer_b)
    pairs = _extract(models, texts, n_texts, out, seed, heldout, [la], [lb], names=(model_a_id, model_b_id))
    xa, yb = pairs.split("train", "a", la), pairs.split("train", "b", lb)
    xt, yt = pairs.split("test", "a", la), pairs.split("test", "b", lb)
    tc = A.TrainConfig(
        epochs=epochs, lr=lr, batch_size=batch_size, temperature=temperature, mse_weight=mse_weight, seed=seed
    )
    m = A.train_adapter(kind, xa, yb, tc, rank=rank)
    if out is not None:
        m.save(Path(out) / "maps" / kind)
    res = {
        "adapter": kind,
        "layer_a": la,
        "layer_b": lb,
        "n_train": len(xa),
        "n_test": len(xt),
        "raw_cka_debiased": M.linear_cka(xt, yt, debiased=True),
        **_map_eval(m, xt, yt, temperature),
        "config": {
            "model_a": model_a_id,
            "model_b": model_b_id,
            "rank": rank if kind == "lora" else None,
            "n_texts": n_texts,
            "seed": seed,
        },
    }
    res["map"] = m
    _save(out, f"{kind}_adapter.json", {k: v for k, v in res.items() if k != "map"})
    return res


def run_lora_adapter_experiment(
    model_a_id: str = "tiny", model_b_id: str = "tiny-b", gpu_id: int | None = None, **kw
) -> dict:
    """A :class:`LoRAAdapter` (rank 32: a frozen Procrustes base + rank-32 update + bias) trained with InfoNCE +
    MSE on paired last-token activations; held-out scores, and the fitted map under ``"map"``. ``gpu_id`` N runs
    on ``cuda:N`` when CUDA is available. Keywords: ``layer_a`` (default -2), ``layer_b``, ``rank``, ``texts``,
    ``n_texts``, ``epochs``, ``lr``, ``batch_size``, ``temperature``, ``mse_weight``, ``seed``, ``out``,
    ``models``."""
    return _adapter_experiment("lora", model_a_id, model_b_id, gpu_id, **kw)


def run_linear_adapter_experiment(
    model_a_id: str = "tiny", model_b_id: str = "tiny-b", gpu_id: int | None = None, **kw
) -> dict:
    """A full-rank :class:`LinearAdapter` (no bias), trained and scored as :func:`run_lora_adapter_experiment`."""
    return _adapter_experiment("linear", model_a_id, model_b_id, gpu_id, **kw)


def run_affine_adapter_experiment(
    model_a_id: str = "tiny", model_b_id: str = "tiny-b", gpu_id: int | None = None, **kw
) -> dict:
    """An :class:`AffineAdapter` (linear + bias), trained and scored as :func:`run_lora_adapter_experiment`."""
    return _adapter_experiment("affine", model_a_id, model_b_id, gpu_id, **kw)


def run_activation_communication_experiment(
    model_a_id: str = "tiny",
    model_b_id: str = "tiny-b",
    *,
    task: str = "syn_countries",
    n_eval: int = 100,
    k: int = -2,
    j: int | None = None,
    f: str = "replace",
    layers=None,
    similarity_texts="syn_passages",
    n_similarity: int = 32,
    projection: bool | None = None,
    projection_texts="syn_passages",
    n_projection: int = 3072,
    epochs: int = 10,
    max_new_tokens: int = 4,
    similarity_tokens: int = 8,
    message_tokens: int = 16,
    batch_size: int = 16,
    seed: int = 0,
    out=None,
    device: str | None = None,
    dtype: str | None = None,
    models=None,
) -> dict:
    """Activation communication A → B (Ramesh & Li): ``{"layers": text similarity per layer,
    "task_evaluation": B alone / A alone / skyline / NL / AC on ``task``, "config"}``.

    * ``layers`` (default every index both models have): :func:`actlab.xmodel.communicate.text_similarity` on
      ``n_similarity`` held-out texts (test split of ``syn_passages``, or a file / list).
    * ``projection`` (default: when the widths differ): the paper's W (:func:`train_learned_projection` on
      ``n_projection`` texts) at every similarity layer and at (k, j), applied to A's state before injection;
      ``False`` uses the paper's footnote-1 slicing.
    * The task evaluation at (k, j) (default j = k), f = ``f``, ``n_eval`` held-out rows."""
    from actlab.xmodel.communicate import evaluate, task_rows, text_similarity

    models = _load_pair(model_a_id, model_b_id, models, device, dtype)
    (ma, ta), (mb, tb) = models
    k = arch.check_layer(ma, k)
    j = arch.check_layer(mb, k if j is None else j)
    if layers is None:
        layers = list(range(min(arch.num_layers(ma), arch.num_layers(mb))))
    lay_a = [arch.check_layer(ma, x) for x in layers]
    lay_b = [arch.check_layer(mb, x) for x in layers]
    if projection is None:
        projection = arch.hidden_size(ma) != arch.hidden_size(mb)
    maps = {}
    if projection:
        for la, lb in {*zip(lay_a, lay_b), (k, j)}:
            maps[(la, lb)] = train_learned_projection(
                ma,
                mb,
                ta,
                tb,
                layer_idx=la,
                layer_idx_b=lb,
                num_samples=n_projection,
                num_epochs=epochs,
                seed=seed,
                texts=projection_texts,
            )
    if isinstance(similarity_texts, (list, tuple)):
        sim_texts = list(similarity_texts)[:n_similarity]
    elif similarity_texts == "syn_passages":
        from actlab.data.sources import load_rows

        sim_texts = [r["text"] for r in load_rows("syn_passages", "test", n_similarity, seed)]
    else:
        sim_texts = load_texts(similarity_texts, n_similarity, seed)
    sim = text_similarity(
        ma,
        ta,
        mb,
        tb,
        sim_texts,
        lay_a,
        lay_b,
        maps=maps,
        f=f,
        max_new_tokens=similarity_tokens,
        batch_size=batch_size,
    )
    rows = task_rows(task, n_eval, "test", seed)
    ev = evaluate(
        ma,
        ta,
        mb,
        tb,
        rows,
        task,
        k=k,
        j=j,
        f=f,
        W=maps.get((k, j)),
        max_new_tokens=max_new_tokens,
        message_tokens=message_tokens,
        batch_size=batch_size,
    )
    res = {
        "layers": sim["layers"],
        "text_similarity": {kk: v for kk, v in sim.items() if kk != "layers"},
        "task_evaluation": ev,
        "config": {
            "model_a": model_a_id,
            "model_b": model_b_id,
            "task": task,
            "k": k,
            "j": j,
            "f": f,
            "projection": bool(projection),
            "n_similarity": len(sim_texts),
            "seed": seed,
        },
    }
    if out is not None:
        for (la, lb), m in maps.items():
            m.save(Path(out) / "maps" / f"learned-{la}-{lb}")
    return _save(out, "activation_communication.json", res)
