"""``actlab demo`` — the main job run by ``make demo``.

1. build the default zoo model ``tiny`` if it is missing and show whether it learns in context: accuracy on
   held-out synthetic tasks with remapped labels, with 0 vs 4 demos (and the numbers the build measured);
2. run the IA2 pipeline on it (``actlab ia2 demo``: prepare → train tok/act/tna/a2t × 3 runs → evaluate →
   plots + report.html → results table). Finished steps are skipped on a rerun.

Python: ``actlab.cli.demo.run(MainDemoConfig())``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from actlab.cli.common import Verb
from actlab.core.errors import ActlabError


@dataclass
class MainDemoConfig:
    """``actlab demo``: build the tiny model if missing and run the IA2 pipeline on it."""

    model: str = field(default="tiny", metadata={"help": "zoo model to use"})
    n_tasks: int = field(default=200, metadata={"help": "held-out tasks per demo count"})
    work_dir: str = field(default="ia2_demo", metadata={"help": "where the IA2 demo writes data/, outputs/, plots/"})
    skip_ia2: bool = field(default=False, metadata={"help": "only the ICL check (step 1)"})

    def __post_init__(self) -> None:
        from actlab.core.config import check_out_dir, check_positive
        from actlab.zoo import is_zoo_name
        from actlab.zoo.specs import ZOO_NAMES

        if not is_zoo_name(self.model):
            from actlab.core.errors import unknown_choice

            raise unknown_choice("zoo model", self.model, ZOO_NAMES)
        check_positive("n_tasks", self.n_tasks, integer=True)
        check_out_dir("--work_dir", self.work_dir)


def run(cfg: MainDemoConfig) -> int:
    import time

    from actlab.zoo import ensure_built, icl_accuracy, read_manifest

    if not isinstance(cfg, MainDemoConfig):
        raise ActlabError("run() takes a MainDemoConfig")
    t0 = time.perf_counter()
    d = ensure_built(cfg.model)
    man = read_manifest(cfg.model)
    from actlab.core.models import load

    model, tok = load(cfg.model)
    seed = 4242  # held out: differs from the build's eval seed
    acc = {k: icl_accuracy(model, tok, k, cfg.n_tasks, seed) for k in (0, 4)}
    print(f"zoo model {cfg.model!r} at {d} ({man['n_params']:,} params; build took {man['build_seconds']:.0f} s)")
    print(f"held-out remapped-label tasks (n={cfg.n_tasks}, 2- and 4-class, labels Monday..orange):")
    print(f"  0 demos: {acc[0]:.3f}   4 demos: {acc[4]:.3f}   gain: {acc[4] - acc[0]:+.3f} (target >= +0.25)")
    man_icl = man["icl_accuracy"]
    print("manifest (build-time eval): " + ", ".join(f"k={k}: {v:.2f}" for k, v in man_icl["held_out_tasks"].items()))
    for ds in ("syn_sst2_remap", "syn_agnews_remap"):
        if ds in man_icl:
            print(f"  {ds}: 0 demos {man_icl[ds]['0']:.2f}, 4 demos {man_icl[ds]['4']:.2f}")
    print(f"ICL check done in {time.perf_counter() - t0:.0f} s", flush=True)
    if cfg.skip_ia2:
        return 0
    from actlab.ia2.demo import DemoConfig, run_demo

    print(run_demo(DemoConfig(work_dir=cfg.work_dir, model_id=cfg.model), preloaded=(model, tok))["text"])
    return 0


FAMILY = Verb(
    "demo",
    "the main job: build the tiny model if missing and run the IA2 pipeline on it",
    "actlab.cli.demo:MainDemoConfig",
    run,
    api="actlab.cli.demo:run",
)
