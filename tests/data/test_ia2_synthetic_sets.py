"""The synthetic sets added for the IA2 demo's low-data question: syn_sst2_wide and syn_landmarks."""

import json

import pytest

from actlab.core.errors import ActlabError
from actlab.data import load_pool, make_train, prepare, world
from actlab.data.registry import LANDMARK_COUNTRIES, get_dataset


def _key(prompt: str) -> str:
    return prompt.split("\n")[0].split()[-1]


def test_sst2_wide_has_six_disjoint_keys_per_class_from_the_zoo_vocabulary():
    neg, pos = world.SST2_WIDE_KEYS
    assert len(neg) == len(pos) == 6 and not set(neg) & set(pos)
    assert set(neg) | set(pos) <= set(world.KEY_WORDS)  # words tiny's tokenizer has (fused with "\nLabel:")
    assert set(world.SST2_KEYS[0]) <= set(neg) and set(world.SST2_KEYS[1]) <= set(pos)  # a superset of syn_sst2's


def test_sst2_wide_rows_carry_their_class_key_last_and_use_every_key():
    rows = world.synthetic_rows("syn_sst2_wide", "train", 400, seed=0)
    assert {r["label"] for r in rows} == {0, 1}
    for r in rows:
        assert r["sentence"].split()[-1] in world.SST2_WIDE_KEYS[r["label"]]
    assert {r["sentence"].split()[-1] for r in rows} == set(world.SST2_WIDE_KEYS[0] + world.SST2_WIDE_KEYS[1])


def test_sst2_wide_remap_formats_like_syn_sst2_remap():
    row = {"sentence": "the film was superb", "label": 1}
    ex = get_dataset("syn_sst2_wide_remap").format_example(row)
    assert ex == get_dataset("syn_sst2_remap").format_example(row)
    assert ex == {"prompt": "Text:the film was superb\nLabel:", "answer": "Friday", "label": 1, "gold": "Friday"}


def test_landmarks_labels_are_the_countries_of_the_world_in_order():
    assert tuple(LANDMARK_COUNTRIES) == world.LANDMARK_LABELS == tuple(world.COUNTRIES)
    spec = get_dataset("syn_landmarks")
    assert spec.labels == list(LANDMARK_COUNTRIES) and spec.task_type == "single_token"


def test_landmarks_rows_are_the_countries_game_facts_with_the_right_country():
    rows = world.synthetic_rows("syn_landmarks", "train", 300, seed=0)
    spec = get_dataset("syn_landmarks")
    seen = set()
    for r in rows:
        person, rest = r["text"].split(" is at the ")
        assert person in world.PERSONS and rest.endswith(".")
        landmark = rest[:-1]
        assert world.LANDMARK_COUNTRY[landmark] == LANDMARK_COUNTRIES[r["label"]]
        ex = spec.format_example(r)
        assert ex["prompt"] == f"Text:{r['text']}\nLabel:" and ex["answer"] == world.LANDMARK_COUNTRY[landmark]
        seen.add(r["label"])
    assert len(seen) == 12


def test_landmarks_test_people_never_appear_in_train_rows():
    person = lambda r: r["text"].split(" is at")[0]  # noqa: E731
    tr = {person(r) for r in world.synthetic_rows("syn_landmarks", "train", 300, 0)}
    te = {person(r) for r in world.synthetic_rows("syn_landmarks", "test", 200, 0)}
    assert te and not tr & te
    # the same person split as the Countries game (whose train people are the corpus's people)
    assert not te & {r["person"] for r in world.synthetic_rows("syn_countries", "train", 300, 0)}


def test_landmarks_is_not_remappable():
    with pytest.raises(ActlabError, match="remap"):
        get_dataset("syn_landmarks").with_remap()


@pytest.mark.parametrize("name", ["syn_sst2_wide", "syn_landmarks"])
def test_prepare_is_deterministic_disjoint_and_cuts_runs(tmp_path, name):
    label_template = "remap" if name == "syn_sst2_wide" else None
    full = name + ("_remap" if label_template else "")
    p = prepare(name, str(tmp_path / "a"), num_train_samples=120, num_val_samples=40, label_template=label_template)
    q = prepare(name, str(tmp_path / "b"), num_train_samples=120, num_val_samples=40, label_template=label_template)
    assert p.read_bytes() == q.read_bytes()
    train, val = load_pool(full, str(tmp_path / "a"), "train"), load_pool(full, str(tmp_path / "a"), "val")
    assert len(train) == 120 and len(val) == 40
    assert not {e["prompt"] for e in train} & {e["prompt"] for e in val}
    spec = get_dataset(full)
    assert all(e["answer"] in spec.labels and e["gold"] == spec.labels[e["label"]] for e in train + val)
    make_train(full, str(tmp_path / "a"), num_train_examples=[4], num_runs=2)
    run = json.loads((tmp_path / "a" / full / "train" / "4_1.json").read_text())
    assert len(run["train"]["examples"]) == 4 and len(run["dev"]["examples"]) == 2


def test_adding_the_sets_left_the_corpus_generators_alone():
    # the zoo corpus draws only from DOC_GENERATORS; the new sets are dataset rows, not corpus documents
    assert "syn_sst2_wide" not in world.DOC_GENERATORS and "syn_landmarks" not in world.DOC_GENERATORS
    assert sorted(world.DOC_GENERATORS) == [
        "arithmetic",
        "countries",
        "dialogs",
        "facts",
        "icl",
        "icl_copy",
        "passages",
        "squad",
        "tipsheets",
    ]
    # syn_sst2's rows are unchanged by the new key tuple next to SST2_KEYS
    assert {r["sentence"].split()[-1] for r in world.synthetic_rows("syn_sst2", "train", 200, 0)} == {
        "awful",
        "boring",
        "great",
        "lovely",
    }
