"""The zoo corpus curriculum: copy-task warm-up phase, then the main mixture; and the matching lr schedule."""

import pytest

from actlab.core.errors import ActlabError
from actlab.core.testing import micro_tokenizer
from actlab.data.world import KEY_WORDS, LABEL_WORDS, icl_copy
from actlab.zoo.corpus import batch, check_mix
from actlab.zoo.specs import ZOO, CorpusSpec, TrainSpec, ZooSpec
from actlab.zoo.train import _lr_lambda

SPEC = CorpusSpec({"passages": 1.0}, max_len=96, warmup_mix={"icl_copy": 1.0}, warmup_steps=5, warmup_batch=7)


def test_icl_copy_is_the_copy_task():
    import random

    doc = icl_copy(random.Random(0))
    pairs = doc.split("\nLabel:")
    keys = [p.split()[-1] for p in pairs[:-1]]
    labels = [p.split()[0] for p in pairs[1:]]
    assert len(keys) == len(labels) == 8 and doc.startswith(" ")
    assert set(keys) <= set(KEY_WORDS) and set(labels) <= set(LABEL_WORDS)
    mapping = {}
    for k, lab in zip(keys, labels):  # one label per key, distinct labels across keys
        assert mapping.setdefault(k, lab) == lab
    assert len(set(mapping.values())) == len(mapping)


def test_phases_switch_mix_and_batch_size():
    tok = micro_tokenizer()
    assert SPEC.phase(4, 3)[:3] == ("warmup", {"icl_copy": 1.0}, 7) and SPEC.phase(5, 3)[0] == "main"
    assert SPEC.phase(5, 3)[3] == 0  # main-phase step counter restarts, so the main stream matches a spec without it
    b0, b5 = batch(tok, SPEC, 0, 4, 3), batch(tok, SPEC, 0, 5, 3)
    assert b0["input_ids"].shape[0] == 7 and b5["input_ids"].shape[0] == 3
    main_only = CorpusSpec({"passages": 1.0}, max_len=96)
    assert batch(tok, main_only, 0, 0, 3)["input_ids"].equal(b5["input_ids"])
    assert batch(tok, SPEC, 0, 4, 3)["input_ids"].equal(b0["input_ids"])  # a pure function of (spec, seed, step)


def test_lr_constant_through_warmup_phase_then_cosine():
    spec = ZooSpec(name="x", description="", corpus=SPEC, train=TrainSpec(steps=25, warmup=2))
    f = _lr_lambda(spec)
    assert f(0) == pytest.approx(0.5) and f(1) == pytest.approx(1.0)
    assert f(3) == f(4) == 1.0  # flat while the copy-task phase lasts
    assert 1.0 > f(10) > f(20) > f(24) >= 0.05
    plain = ZooSpec(
        name="y", description="", corpus=CorpusSpec({"passages": 1.0}), train=TrainSpec(steps=25, warmup=2)
    )
    assert _lr_lambda(plain)(3) < 1.0  # without a warm-up phase the cosine starts right after the lr warm-up


def test_unknown_warmup_generator_is_named():
    with pytest.raises(ActlabError, match="nope"):
        check_mix(CorpusSpec({"passages": 1.0}, warmup_mix={"nope": 1.0}, warmup_steps=2, warmup_batch=2))


def test_icl_models_use_the_copy_warmup():
    c = ZOO["tiny"].corpus
    assert c.warmup_mix == {"icl_copy": 1.0} and 0 < c.warmup_steps < ZOO["tiny"].train.steps


def test_tiny_b_is_a_world_text_partner_of_tiny():
    """xmodel's pair: same tokenizer (shared vocabulary), another width (128 → 96) and seed, and a corpus of the
    Lewis games' world text (no ICL, no copy warm-up) so that B can answer the games given both prompts."""
    a, b = ZOO["tiny"], ZOO["tiny-b"]
    assert b.tokenizer == a.tokenizer
    assert (
        (b.model.hidden_size, b.model.num_hidden_layers) == (96, 3) != (a.model.hidden_size, a.model.num_hidden_layers)
    )
    assert b.seed != a.seed
    assert not b.corpus.warmup_mix and "icl" not in b.corpus.mix and "icl_copy" not in b.corpus.mix
    assert {"countries", "tipsheets", "facts", "passages"} <= set(b.corpus.mix)
    check_mix(b.corpus)
