"""The embedded model zoo: tiny Llama causal LMs that actlab trains for itself, offline, on a synthetic world.

>>> from actlab.zoo import ensure_built
>>> d = ensure_built("tiny")          # doctest: +SKIP  (builds once, ~6-8 min on 2 cores; cached afterwards)
>>> AutoModelForCausalLM.from_pretrained(d); AutoTokenizer.from_pretrained(d)   # doctest: +SKIP

See docs/zoo.md.
"""

from __future__ import annotations

from actlab.zoo.build import ensure_built, is_built, is_zoo_name, model_dir, read_manifest, validate
from actlab.zoo.evaluate import icl_accuracy
from actlab.zoo.specs import DEFAULT, ZOO, ZOO_NAMES

__all__ = [
    "DEFAULT",
    "ZOO",
    "ZOO_NAMES",
    "ensure_built",
    "icl_accuracy",
    "is_built",
    "is_zoo_name",
    "model_dir",
    "read_manifest",
    "validate",
]
