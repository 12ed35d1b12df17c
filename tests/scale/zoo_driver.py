"""``actlab zoo build`` with the test-only entry ``micro-dp`` registered (a real entry trains for minutes).

torchrun --nproc_per_node 2 tests/scale/zoo_driver.py zoo build micro-dp
"""

import sys

from actlab.zoo.specs import ZOO, CorpusSpec, ModelSpec, TrainSpec, ZooSpec
from actlab.zoo.tokenizer import TokenizerSpec

# a corpus warm-up phase of 6 documents per step, then 4: the ranks' slices are 3 + 3, then 2 + 2
MICRO = ZooSpec(
    name="micro-dp",
    description="test-only micro entry (data-parallel build)",
    corpus=CorpusSpec(
        {"icl": 0.5, "passages": 0.25, "arithmetic": 0.25},
        max_len=96,
        warmup_mix={"icl_copy": 1.0},
        warmup_steps=2,
        warmup_batch=6,
    ),
    model=ModelSpec(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
    ),
    train=TrainSpec(steps=5, batch_size=4, warmup=2, threads=1, ckpt_every=2, eval_tasks=4),
    tokenizer=TokenizerSpec(vocab_size=600, n_docs=150),
    seed=0,
)

if __name__ == "__main__":
    ZOO[MICRO.name] = MICRO
    from actlab.cli.main import main

    sys.exit(main(sys.argv[1:]))
