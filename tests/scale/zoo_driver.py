"""``actlab zoo build`` with the test-only entry ``micro-dp`` registered (a real entry trains for minutes).

torchrun --nproc_per_node 2 tests/scale/zoo_driver.py zoo build micro-dp
"""

import dataclasses
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script: the repo root, for tests.*

from tests.core.kill_driver import zoo_spec  # noqa: E402  (the kill tests' micro entry)

_BASE = zoo_spec()
# a corpus warm-up phase of 6 documents per step, then 4: the ranks' slices are 3 + 3, then 2 + 2
MICRO = dataclasses.replace(
    _BASE,
    name="micro-dp",
    description="test-only micro entry (data-parallel build)",
    corpus=dataclasses.replace(_BASE.corpus, warmup_steps=2),
    train=dataclasses.replace(_BASE.train, steps=5),
)

if __name__ == "__main__":
    from actlab.zoo.specs import ZOO

    ZOO[MICRO.name] = MICRO
    from actlab.cli.main import main

    sys.exit(main(sys.argv[1:]))
