import random

import pytest

from actlab.core.errors import ActlabError
from actlab.data import world


def test_rows_deterministic_and_seed_dependent():
    for name in world.SYNTHETIC:
        a = world.synthetic_rows(name, "train", 20, seed=3)
        assert a == world.synthetic_rows(name, "train", 20, seed=3), name
        assert a != world.synthetic_rows(name, "train", 20, seed=4), name
        assert len(a) == 20


def test_train_test_disjoint():
    for name in world.SYNTHETIC:
        tr = {repr(r) for r in world.synthetic_rows(name, "train", 300, seed=0)}
        te = {repr(r) for r in world.synthetic_rows(name, "test", 100, seed=0)}
        assert not tr & te, name
    # people-keyed games: test people never appear in train rows, nor in the corpus's compositional examples
    tr_people = {r["person"] for r in world.synthetic_rows("syn_countries", "train", 300, 0)}
    te_people = {r["person"] for r in world.synthetic_rows("syn_countries", "test", 100, 0)}
    assert te_people and not tr_people & te_people
    rng = random.Random(0)
    corpus = " ".join(world.DOC_GENERATORS["countries"](rng) for _ in range(300))
    assert not any(f"{p} is at" in corpus for p in te_people)


def test_schemas():
    r = world.synthetic_rows("syn_sst2", "test", 50, 0)
    assert set(r[0]) == {"sentence", "label"} and {x["label"] for x in r} == {0, 1}
    for x in r:  # the class is set by its key word
        assert any(k in x["sentence"].split() for k in world.SST2_KEYS[x["label"]])
    r = world.synthetic_rows("syn_agnews", "test", 80, 0)
    assert set(r[0]) == {"text", "label"} and {x["label"] for x in r} == {0, 1, 2, 3}
    g = world.synthetic_rows("syn_gsm8k", "test", 30, 0)
    for x in g:
        assert set(x) == {"question", "answer"}
        n = int(x["answer"].split("#### ")[-1])
        assert str(n) in x["answer"].split("\n")[-2]
    for x in world.synthetic_rows("syn_squad", "test", 30, 0):
        assert set(x) == {"id", "title", "context", "question", "answers"}
        a, s = x["answers"]["text"][0], x["answers"]["answer_start"][0]
        assert x["context"][s : s + len(a)] == a
    for x in world.synthetic_rows("syn_hh", "test", 30, 0):
        assert set(x) == {"prompt", "response", "chosen", "rejected"}
        assert x["prompt"].startswith("\n\nHuman: ") and x["prompt"].endswith("\n\nAssistant:")
        assert x["response"] == x["chosen"]
        assert world.preference_reward(x["chosen"]) > 0 > world.preference_reward(x["rejected"])
    assert set(world.synthetic_rows("syn_passages", "test", 3, 0)[0]) == {"text"}
    for x in world.synthetic_rows("syn_countries", "test", 20, 0):
        assert x["skyline"] == x["prompt_a"] + " " + x["prompt_b"]
        assert world.LANDMARK_COUNTRY[x["landmark"]] == x["answer"]
    for x in world.synthetic_rows("syn_tipsheets", "test", 20, 0):
        assert f"{x['answer']} will rise." in x["prompt_a"] and x["answer"] in x["companies"]


def test_preference_reward():
    assert world.preference_reward("") == 0.0
    assert world.preference_reward("Sure, happy to help. Good luck!") > 0
    assert world.preference_reward("No, go away, idiot.") < 0


def test_bad_names():
    with pytest.raises(ActlabError, match="syn_sst2"):
        world.synthetic_rows("syn_sst3", "train", 1, 0)
    with pytest.raises(ActlabError, match="train"):
        world.synthetic_rows("syn_sst2", "dev", 1, 0)


def test_icl_episode_format():
    ep = world.icl_episode(random.Random(0))
    blocks = ep.split("\n\n")
    assert len(blocks) >= 6
    for b in blocks:
        text, label = b.split("\nLabel:")
        assert text.startswith("Text:") and label in world.LABEL_WORDS
    assert world.join_demos([("a b", "apple")], "c d") == "Text:a b\nLabel:apple\n\nText:c d\nLabel:"
