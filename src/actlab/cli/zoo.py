"""``actlab zoo build NAME [--force] [--seed S]`` and ``actlab zoo list`` — the embedded model zoo.

    actlab zoo list
    actlab zoo build tiny            # ~6-8 min on 2 CPU cores, then cached under $ACTLAB_HOME/models/tiny
    actlab zoo build tiny --force    # rebuild (e.g. after a corrupt cache)

Python: ``actlab.cli.zoo.build(ZooBuildConfig("tiny"))``, ``actlab.cli.zoo.list_models(ZooListConfig())``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from actlab.cli.common import Family, Verb, print_table
from actlab.core.config import nonneg_int
from actlab.core.errors import ActlabError


@dataclass
class ZooBuildConfig:
    """``actlab zoo build``: train zoo model NAME offline into ``$ACTLAB_HOME/models/NAME``."""

    name: str = field(
        metadata={"positional": True, "metavar": "NAME", "help": "zoo model name (see `actlab zoo list`)"}
    )
    force: bool = field(
        default=False, metadata={"help": "rebuild even if a (possibly corrupt) build exists", "flag": True}
    )
    seed: int | None = field(
        default=None, metadata={"help": "training seed (default: the entry's own seed)", "argtype": nonneg_int}
    )

    def __post_init__(self) -> None:
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0):
            raise ActlabError(f"--seed must be a non-negative integer, got {self.seed!r}")
        from actlab.zoo.build import get_spec

        get_spec(self.name, self.seed)  # unknown name -> one line


@dataclass
class ZooListConfig:
    """``actlab zoo list``: the zoo's models with their build state and manifest numbers (no options)."""


def build(cfg: ZooBuildConfig) -> dict:
    """Build (or validate) zoo model ``cfg.name``; returns ``{"dir", "manifest", "built": bool}``."""
    from actlab.zoo.build import ensure_built, read_manifest, validate

    if not cfg.force:
        try:
            d = validate(cfg.name, cfg.seed)
            return {"dir": d, "manifest": read_manifest(cfg.name, cfg.seed), "built": False}
        except ActlabError as e:
            if "corrupt" in str(e):
                raise
    from actlab.core.distributed import start

    dist = start(verb="zoo build")  # launched: data parallel
    dist.refuse_fsdp("zoo build", "a zoo model is small; nothing to shard")
    d = ensure_built(cfg.name, force=cfg.force, seed=cfg.seed, dist=dist)
    return {"dir": d, "manifest": read_manifest(cfg.name, cfg.seed), "built": True}


def _build(cfg: ZooBuildConfig) -> int:
    out = build(cfg)
    if not out["built"]:
        print(f"{cfg.name}: already built at {out['dir']} (use --force to rebuild)")
        return 0
    man = out["manifest"]
    icl = man["icl_accuracy"]["held_out_tasks"]
    print(
        f"{cfg.name}: {out['dir']} ({man['n_params']:,} params, built in {man['build_seconds']:.0f} s); "
        f"ICL accuracy by demos: " + ", ".join(f"k={k}: {v:.2f}" for k, v in icl.items())
    )
    return 0


def list_models(cfg: ZooListConfig | None = None) -> list[tuple[str, ...]]:
    """Rows ``(name, built, params, icl k=0/1/2/4/8, build s, path)`` for every zoo model."""
    from actlab.core.io import read_json
    from actlab.zoo.build import model_dir, read_manifest
    from actlab.zoo.specs import ZOO

    rows = [("name", "built", "params", "icl k=0/1/2/4/8", "build s", "path")]
    for name in ZOO:
        d = model_dir(name)
        try:
            man = read_manifest(name)
            icl = man["icl_accuracy"]["held_out_tasks"]
            rows.append((name, "yes", f"{man['n_params']:,}", "/".join(f"{icl[k]:.2f}" for k in sorted(icl, key=int)),
                         f"{man['build_seconds']:.0f}", str(d)))  # fmt: skip
        except ActlabError as e:
            state = "CORRUPT" if "corrupt" in str(e) else "STALE" if "stale" in str(e) else "no"
            ck = d.with_name(d.name + ".partial") / "checkpoint.json"
            if state == "no" and ck.is_file():
                try:
                    state = f"partial (step {read_json(ck)['step']}/{ZOO[name].train.steps})"
                except Exception:  # noqa: BLE001 - a checkpoint being written right now
                    state = "partial"
            rows.append((name, state, "-", "-", "-", str(d)))
    return rows


def _list(cfg: ZooListConfig) -> int:
    from actlab.zoo.specs import ZOO

    print_table(list_models(cfg))
    for name, spec in ZOO.items():
        print(f"  {name}: {spec.description}")
    return 0


FAMILY = Family(
    "zoo",
    "embedded tiny models, trained offline on a synthetic world: build, list",
    [
        Verb(
            "build",
            "build (train) a zoo model, or resume an interrupted build",
            "actlab.cli.zoo:ZooBuildConfig",
            _build,
            api="actlab.cli.zoo:build",
            multiprocess=True,
            description="Train zoo model NAME offline into $ACTLAB_HOME/models/NAME (a resumable NAME.partial "
            "checkpoint dir while it runs). Does nothing if already built.",
        ),
        Verb(
            "list",
            "list zoo models: built?, path, params, measured ICL accuracies",
            "actlab.cli.zoo:ZooListConfig",
            _list,
            api="actlab.cli.zoo:list_models",
            config_path=False,
        ),
    ],
)
