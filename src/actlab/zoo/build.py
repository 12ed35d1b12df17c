"""Build, cache, validate and describe zoo models.

Layout under ``$ACTLAB_HOME/models/``::

    tiny/                    the finished model (appears by one atomic rename)
      config.json  model.safetensors  generation_config.json     (save_pretrained)
      tokenizer.json  tokenizer_config.json  chat_template.jinja  (tokenizer.save_pretrained)
      manifest.json          spec (corpus, model, training, tokenizer), seed, versions, timings, ICL accuracies,
                             sha256 of the weights (checked on every load)
    tiny.partial/            an unfinished build: spec.json + checkpoint.safetensors (weights, optimizer,
                             scheduler, RNG, step: one atomic file); rerunning the build resumes from it
    tiny.lock                held (flock) by the process building ``tiny``, with its pid; another process that
                             needs the model waits for it, then uses its result

A build with a non-default ``seed`` lives in ``<name>-seed<S>/``.

``actlab zoo build`` under ``accelerate launch`` / ``torchrun`` (``ensure_built(..., dist=start())``) trains data
parallel with the spec's own global batch (:mod:`actlab.zoo.train`): the recipe and its result stay those of one
process (up to float noise), only faster. Rank 0 holds the lock, decides whether to build, evaluates, and writes the
checkpoints, the manifest (with ``world_size``) and the final directory; the others train their slices and wait.
A model loaded implicitly (``load("tiny")`` inside another verb) is built by one process, the others wait on its
lock.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import os
import shutil
import time
from pathlib import Path

import torch

from actlab.core.distributed import Dist
from actlab.core.errors import ActlabError, unknown_choice
from actlab.core.io import DirLock, actlab_home, atomic_write_json, env_info, read_json, umask_modes
from actlab.zoo.specs import ZOO, ZOO_NAMES, ZooSpec

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
FORMAT = 1
REQUIRED = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", MANIFEST)
EVAL_KS = (0, 1, 2, 4, 8)
EVAL_TASKS = 200
EVAL_SEED = 1000
#: IA2's remap mapping (ia2.md §5: 0 apple, 1 Friday, 2 banana, 3 Saturday, ...), used for the registry-format eval.
REMAP_MAPPING = ("apple", "Friday", "banana", "Saturday", "Thursday", "Sunday", "Wednesday", "Monday")


class StaleZooCache(ActlabError):
    """A cached zoo model that is intact but was built from another version of its spec (``ensure_built`` rebuilds
    it; ``validate`` / ``read_manifest`` raise this)."""


def is_zoo_name(name: str) -> bool:
    return name in ZOO


def get_spec(name: str, seed: int | None = None) -> ZooSpec:
    if name not in ZOO:
        raise unknown_choice("zoo model", name, ZOO_NAMES)
    spec = ZOO[name]
    if seed is not None and seed != spec.seed:
        spec = dataclasses.replace(spec, seed=int(seed))
    return spec


def model_dir(name: str, seed: int | None = None) -> Path:
    """Where zoo model ``name`` lives (built or not)."""
    spec = get_spec(name, seed)
    sub = name if spec.seed == ZOO[name].seed else f"{name}-seed{spec.seed}"
    return actlab_home() / "models" / sub


def _partial_dir(final: Path) -> Path:
    return final.with_name(final.name + ".partial")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _rebuild_hint(name: str, seed: int | None) -> str:
    s = "" if seed is None or seed == ZOO[name].seed else f" --seed {seed}"
    return f"rebuild with `actlab zoo build {name}{s} --force`"


def validate(name: str, seed: int | None = None) -> Path:
    """Check a built model's files; raise a one-line ActlabError (naming what is wrong and how to fix it) if bad."""
    d = model_dir(name, seed)
    hint = _rebuild_hint(name, seed)
    if not d.is_dir():
        raise ActlabError(f"zoo model {name!r} is not built at {d}; build it with `actlab zoo build {name}`")
    missing = [f for f in REQUIRED if not (d / f).is_file()]
    if missing:
        raise ActlabError(f"zoo cache {d} is corrupt (missing {', '.join(missing)}); {hint}")
    try:
        man = read_json(d / MANIFEST)
        ok = isinstance(man, dict) and man.get("format") == FORMAT and "weights_sha256" in man
    except Exception:  # noqa: BLE001 - any unreadable manifest is corruption
        ok = False
    if not ok:
        raise ActlabError(f"zoo cache {d} is corrupt (unreadable or outdated {MANIFEST}); {hint}")
    if _sha256(d / "model.safetensors") != man["weights_sha256"]:
        raise ActlabError(f"zoo cache {d} is corrupt (model.safetensors does not match its manifest); {hint}")
    if man.get("spec_identity") != get_spec(name, seed).identity():
        again = hint.replace("rebuild with ", "").replace(" --force", "")
        raise StaleZooCache(
            f"zoo cache {d} is stale (built from another version of the {name!r} spec); it is rebuilt "
            f"on its next load, or now with {again}"
        )
    return d


def read_manifest(name: str, seed: int | None = None) -> dict:
    """The manifest of built zoo model ``name`` (ActlabError if not built or corrupt)."""
    return read_json(validate(name, seed) / MANIFEST)


def is_built(name: str, seed: int | None = None) -> bool:
    try:
        validate(name, seed)
        return True
    except ActlabError:
        return False


def ensure_built(name: str, force: bool = False, seed: int | None = None, dist: Dist | None = None) -> Path:
    """The directory of zoo model ``name``, building it first if it is missing (or if ``force``).

    A cached directory that exists but is corrupt raises ActlabError telling how to rebuild (it is not silently
    rebuilt: a half-deleted cache usually means something else is wrong). An intact cache built from an older
    version of the spec (stale) is rebuilt, with a note, and replaced only once the new build is complete.
    ``from_pretrained(dir)`` loads it. ``dist``: every process of a launch calls this together and they build it
    data parallel (rank 0 decides and writes).
    """
    if dist is not None and dist.active:
        return _ensure_built_together(name, force, seed, dist)
    spec = get_spec(name, seed)
    d = model_dir(name, seed)
    if not force and d.exists():
        try:
            return validate(name, seed)
        except StaleZooCache:
            pass
    with _build_lock(d):  # another process may be building the same model: wait for it, then reuse its result
        stale = False
        if not force and d.exists():
            try:
                return validate(name, seed)
            except StaleZooCache:
                stale = True
        if stale:
            log.info("zoo model %r at %s was built from an older version of its spec: rebuilding it", name, d)
        build(spec, d, force=force or stale)
    return validate(name, seed)


def _needs_build(name: str, seed: int | None, force: bool) -> bool:
    """True: build (``force`` or missing), "stale": rebuild, False: the cache is good (corrupt: ActlabError)."""
    d = model_dir(name, seed)
    if force or not d.exists():
        return True
    try:
        validate(name, seed)
        return False
    except StaleZooCache:
        log.info("zoo model %r at %s was built from an older version of its spec: rebuilding it", name, d)
        return True


def _ensure_built_together(name: str, force: bool, seed: int | None, dist: Dist) -> Path:
    """:func:`ensure_built` by every process of a launch: rank 0 takes the lock and decides, all of them train."""
    spec, d = get_spec(name, seed), model_dir(name, seed)
    with contextlib.ExitStack() as held:
        need = False
        if dist.is_main:  # a failure here (a corrupt cache) ends the launch
            held.enter_context(_build_lock(d))  # another launch building it: wait, then reuse its result
            need = _needs_build(name, seed, force)
        if dist.broadcast(need):
            _build(spec, d, True, None, dist)
    dist.barrier()
    return validate(name, seed)


@contextlib.contextmanager
def _build_lock(final: Path):
    """Hold ``<name>.lock`` next to the model directory (the build renames its ``.partial`` dir into place, so the
    lock cannot live inside it); a second process waits for the first, saying whom it waits for."""

    def waiting(holder: str) -> None:
        log.info("zoo model %r is being built by %s: waiting for it", final.name, holder)

    lock = DirLock.acquire(
        final.parent, lock_file=final.with_name(final.name + ".lock"), blocking=True, what="zoo model", on_wait=waiting
    )
    try:
        yield
    finally:
        lock.release()


def build_threads(spec: ZooSpec) -> int:
    """Torch threads for a build: ``$ACTLAB_ZOO_THREADS`` if set, else the spec's (2). Weights are reproducible for a
    given thread count; on a crowded machine 1 thread is far faster than 2 (no barrier waits)."""
    env = os.environ.get("ACTLAB_ZOO_THREADS", "").strip()
    if env:
        if not env.isdigit() or int(env) < 1:
            raise ActlabError(f"ACTLAB_ZOO_THREADS must be a positive integer, got {env!r}")
        return int(env)
    return spec.train.threads


@contextlib.contextmanager
def _threads(n: int):
    old = torch.get_num_threads()
    if n > 0:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def evaluate_icl(model, tok, ks=EVAL_KS, n_tasks: int = EVAL_TASKS, seed: int = EVAL_SEED) -> dict:
    """Manifest's ICL numbers: random held-out tasks (2- and 4-class) and syn_sst2/syn_agnews with remapped labels."""
    from actlab.data.world import join_demos, synthetic_rows
    from actlab.zoo.evaluate import icl_accuracy, score_choices

    out: dict = {"held_out_tasks": {str(k): round(icl_accuracy(model, tok, k, n_tasks, seed), 4) for k in ks}}
    for ds, col, nc in (("syn_sst2", "sentence", 2), ("syn_agnews", "text", 4)):
        train = synthetic_rows(ds, "train", 400, seed)
        test = synthetic_rows(ds, "test", n_tasks, seed)
        labels = list(REMAP_MAPPING[:nc])
        accs = {}
        for k in (0, 4):
            prompts = []
            for i, row in enumerate(test):
                demos = [(train[(i * 7 + j * 13) % len(train)][col], labels[train[(i * 7 + j * 13) % len(train)]["label"]])
                         for j in range(k)]  # fmt: skip
                prompts.append(join_demos(demos, row[col]))
            pred = score_choices(model, tok, prompts, [labels] * len(prompts))
            accs[str(k)] = round(sum(int(p == r["label"]) for p, r in zip(pred, test)) / len(test), 4)
        out[f"{ds}_remap"] = accs
    return out


def build(spec: ZooSpec, final: Path, force: bool = False, stop_after: int | None = None) -> Path | None:
    """Build ``spec`` into ``final`` (resuming ``final.partial`` if it holds a checkpoint of the same spec)."""
    with _build_lock(final):  # also when called directly (ensure_built holds it already: shared)
        return _build(spec, final, force, stop_after)


def _build(spec: ZooSpec, final: Path, force: bool, stop_after: int | None, dist: Dist | None = None) -> Path | None:
    from actlab.zoo.tokenizer import train_tokenizer
    from actlab.zoo.train import train

    dist = dist or Dist()
    part = _partial_dir(final)
    want = spec.identity()
    threads = build_threads(spec)
    if dist.is_main:
        if part.exists():
            try:
                same = read_json(part / "spec.json") == want
            except Exception:  # noqa: BLE001
                same = False
            if not same:
                shutil.rmtree(part)
        part.mkdir(parents=True, exist_ok=True)
        for tmp in part.glob(".*.tmp"):  # a write cut by a kill (we hold the build lock: nobody else writes here)
            tmp.unlink()
        atomic_write_json(part / "spec.json", want)
    dist.barrier()  # the others read the checkpoint rank 0 kept
    t0 = time.perf_counter()
    say = log.info if dist.is_main else (lambda *a: None)
    with _threads(threads):
        tok = train_tokenizer(spec.tokenizer)
        ev = None
        if spec.train.eval_every:
            from actlab.zoo.evaluate import icl_accuracy

            def ev(m, step):
                return {f"icl_k{k}": icl_accuracy(m, tok, k, 60, EVAL_SEED + 1) for k in (0, 4)}

        say(
            f"building zoo model {spec.name!r} into {final} (resumable: {part})"
            + (f" on {dist.world} processes" if dist.active else "")
        )
        model, info = train(spec, tok, part, ev, stop_after=stop_after, dist=dist)
        if model is None:
            return None
        if not dist.is_main:
            dist.barrier()  # rank 0 evaluates and writes the model directory
            return final
        t_train = time.perf_counter() - t0
        icl = evaluate_icl(model, tok, n_tasks=spec.train.eval_tasks)
        from actlab.zoo.evaluate import run_gates

        gates = run_gates(spec.name, model, tok)  # e.g. tiny-copy's copy probe; raises if the model fails it
    model.save_pretrained(part)
    tok.save_pretrained(part)
    umask_modes(part.iterdir())  # safetensors writes 0600
    n_params = sum(p.numel() for p in model.parameters())
    manifest = {
        "format": FORMAT,
        "name": spec.name,
        "description": spec.description,
        "seed": spec.seed,
        "spec": spec.to_dict(),
        "spec_identity": want,
        "architecture": "LlamaForCausalLM",
        "n_params": n_params,
        "vocab_size": len(tok),
        "threads": threads,
        "world_size": dist.world,
        "train": info,
        "build_seconds": round(time.perf_counter() - t0, 1),
        "build_seconds_before_eval": round(t_train, 1),
        "icl_accuracy": icl,
        "icl_eval": {
            "n_tasks": spec.train.eval_tasks,
            "seed": EVAL_SEED,
            "labels": "IA2 remap words, fresh mapping per task",
        },  # fmt: skip
        **gates,
        "determinism": "same seed + same thread count + same torch build -> same corpus, tokenizer and weights "
        "(several processes: the one-process weights up to float noise)",
        "weights_sha256": _sha256(part / "model.safetensors"),
        **{k: v for k, v in env_info().items() if k in ("versions", "python", "platform", "time", "git_sha")},
    }
    atomic_write_json(part / MANIFEST, manifest)
    for f in ("checkpoint.safetensors", "checkpoint.json", "spec.json", ".lock"):
        (part / f).unlink(missing_ok=True)
    if final.exists():  # --force: swap the new build in, then drop the old one
        old = final.with_name(final.name + f".old-{os.getpid()}")
        os.replace(final, old)
        os.replace(part, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(part, final)
    say(f"built {spec.name!r} in {manifest['build_seconds']:.0f} s: {final}")
    dist.barrier()
    return final
