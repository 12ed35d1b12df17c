"""The cross-model verbs as Python functions of their config dataclass (:mod:`actlab.xmodel.config`).

from actlab.xmodel.config import AlignConfig
from actlab.xmodel.verbs import align
scores = align(AlignConfig(pairs="runs/xm/pairs", layer_a=2, layer_b=1, out="runs/xm/maps/procrustes"))
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from actlab.xmodel.config import AlignConfig, CommunicateConfig, ExtractConfig, RunAllConfig, XModelDemoConfig


def extract(cfg: ExtractConfig) -> Path:
    """Write paired activations of A and B; returns the pairs directory."""
    from actlab.core.distributed import start
    from actlab.core.models import load
    from actlab.xmodel.experiments import load_texts
    from actlab.xmodel.extract import extract_pairs

    dist = start(verb="xmodel extract")  # under a launcher: this rank's device (cuda:LOCAL_RANK or cpu)
    dist.refuse_fsdp("xmodel extract", "extraction trains nothing; each rank reads its own shards")
    texts = load_texts(cfg.texts, cfg.n_texts, cfg.seed)
    dev = str(dist.device) if dist.active else None
    ma, ta = load(cfg.model_a, device=dev)
    mb, tb = load(cfg.model_b, device=dev)
    return extract_pairs(
        ma,
        ta,
        mb,
        tb,
        texts,
        cfg.out,
        layers_a=cfg.layers_a,
        layers_b=cfg.layers_b,
        pooling=cfg.pooling,
        shard_size=cfg.shard_size,
        batch_size=cfg.batch_size,
        heldout=cfg.heldout,
        seed=cfg.seed,
        names=(cfg.model_a, cfg.model_b),
        overwrite=cfg.overwrite,
    )


def _resolve_layer(flag: str, layer: int, layers: list[int], where) -> int:
    """A layer of the pairs directory (negative indices count from the last extracted layer)."""
    from actlab.core.errors import ActlabError

    resolved = layers[layer] if -len(layers) <= layer < 0 else layer
    if resolved not in layers:
        raise ActlabError(
            f"{flag} {layer} was not extracted in {where}; valid: "
            f"{', '.join(map(str, layers))} (or -1..-{len(layers)})"
        )
    return resolved


def align(cfg: AlignConfig) -> dict:
    """Fit and save the map; returns its held-out scores (also in ``{out}/scores.json``). With ``layers``: one map
    per layer in ``{out}/layer<a>-<b>/`` and ``{"layers_a", "layers_b", "results": {"<a>-<b>": scores}}``.

    Under ``accelerate launch`` / ``torchrun`` every rank loads the pairs; the trained maps fit data-parallel, the
    closed-form ones on rank 0 (:mod:`actlab.xmodel.align`); rank 0 alone writes ``out``."""
    from actlab.core.distributed import start
    from actlab.core.io import atomic_write_json
    from actlab.xmodel.align import TrainConfig, fit_map
    from actlab.xmodel.experiments import _map_eval, procrustes_layers
    from actlab.xmodel.extract import load_pairs

    dist = start(verb="xmodel align")
    dist.refuse_fsdp("xmodel align", "its maps are small; nothing to shard")
    pairs = load_pairs(cfg.pairs)
    tc = TrainConfig(
        epochs=cfg.epochs, lr=cfg.lr, batch_size=cfg.batch_size, temperature=cfg.temperature, mse_weight=cfg.mse_weight
    )

    def fit(xa, yb):
        return fit_map(
            cfg.method,
            xa,
            yb,
            scale=not cfg.no_scale,
            translate=not cfg.no_translate,
            lam=cfg.ridge_lambda,
            train=tc,
            rank=cfg.rank,
            dist=dist,
        )

    if cfg.layers is not None:
        la = [_resolve_layer("--layers", x, pairs.layers_a, cfg.pairs) for x in cfg.layers]
        lb = [_resolve_layer("--layers", x, pairs.layers_b, cfg.pairs) for x in cfg.layers]
    else:
        la = _resolve_layer("--layer_a", cfg.layer_a, pairs.layers_a, cfg.pairs)
        lb = _resolve_layer("--layer_b", cfg.layer_b, pairs.layers_b, cfg.pairs)
    from actlab.core.io import DirLock

    # inputs checked: one process (rank 0) writes a map directory
    lock = DirLock.acquire(cfg.out, what="map directory") if dist.is_main else None
    try:
        if cfg.layers is not None:
            scores = procrustes_layers(
                pairs, la, cfg.out if dist.is_main else None, layers_b=lb, temperature=cfg.temperature, fit=fit
            )
            scores["method"] = cfg.method
        else:
            m = fit(pairs.split("train", "a", la), pairs.split("train", "b", lb))
            if dist.is_main:
                m.save(cfg.out)
            scores = {
                "layer_a": la,
                "layer_b": lb,
                **_map_eval(m, pairs.split("test", "a", la), pairs.split("test", "b", lb), cfg.temperature),
            }
        if dist.is_main:
            atomic_write_json(f"{cfg.out}/scores.json", {**scores, "world_size": dist.world})
    finally:
        if lock is not None:
            lock.release()
    dist.barrier()  # the others return once the map and its scores are written
    return scores


def communicate(cfg: CommunicateConfig) -> dict:
    """Activation communication A→B vs B alone / A alone / skyline / NL; returns the results (and writes
    ``{out}/communicate.json`` when ``out`` is set)."""
    from actlab.core.io import atomic_write_json
    from actlab.core.models import load
    from actlab.xmodel.align import load_map
    from actlab.xmodel.communicate import METHODS, evaluate, grid_search, task_rows
    from actlab.xmodel.metrics import plot_heatmap

    methods = cfg.methods or list(METHODS)
    W = load_map(cfg.map) if cfg.map else None
    rows = task_rows(cfg.task, cfg.n, cfg.split)
    ma, ta = load(cfg.model_a)
    mb, tb = (ma, ta) if cfg.model_b == cfg.model_a else load(cfg.model_b)
    if cfg.similarity_layers:  # checked before anything runs
        from actlab.core import arch

        sim_a = [arch.check_layer(ma, x) for x in cfg.similarity_layers]
        sim_b = [arch.check_layer(mb, x) for x in cfg.similarity_layers]
    res = evaluate(
        ma,
        ta,
        mb,
        tb,
        rows,
        cfg.task,
        k=cfg.k,
        j=cfg.j,
        f=cfg.f,
        W=W,
        methods=methods,
        max_new_tokens=cfg.max_new_tokens,
        message_tokens=cfg.message_tokens,
        batch_size=cfg.batch_size,
    )
    if cfg.grid:
        from actlab.core import arch

        g = grid_search(
            ma,
            ta,
            mb,
            tb,
            rows,
            cfg.task,
            range(arch.num_layers(ma)),
            range(arch.num_layers(mb)),
            cfg.f,
            W=W,
            max_new_tokens=cfg.max_new_tokens,
            batch_size=cfg.batch_size,
        )
        res["grid"] = g
        if cfg.out:
            plot_heatmap(g["accuracy"], f"{cfg.out}/grid.png", f"AC accuracy, {cfg.task}", "j (B)", "k (A)")
    if cfg.similarity_layers:
        from actlab.data.sources import load_rows
        from actlab.xmodel.communicate import text_similarity

        maps = {(arch.check_layer(ma, cfg.k), arch.check_layer(mb, cfg.j)): W} if W is not None else None
        texts = [r["text"] for r in load_rows("syn_passages", "test", cfg.n_similarity, 0)]
        res["text_similarity"] = text_similarity(
            ma,
            ta,
            mb,
            tb,
            texts,
            sim_a,
            sim_b,
            maps=maps,
            f=cfg.f,
            max_new_tokens=cfg.similarity_tokens,
            batch_size=cfg.batch_size,
        )
    if cfg.out:
        atomic_write_json(f"{cfg.out}/communicate.json", res)
    return res


def run_all(cfg: RunAllConfig) -> dict:
    from actlab.xmodel.experiments import run_all as _run_all

    return _run_all(cfg.xmodel, cfg.out)


def demo(cfg: XModelDemoConfig) -> str:
    """The demo's markdown tables (its run directory: ``cfg.out`` or ``$ACTLAB_HOME/runs/xmodel-demo``)."""
    from actlab.core.io import actlab_home
    from actlab.xmodel.demo import run_demo

    out = cfg.out or str(actlab_home() / "runs" / "xmodel-demo")
    return run_demo(dataclasses.replace(cfg.xmodel), out, cfg.seeds)
