"""Hub loaders on fixtures in the hub's column schema (no network), and the offline stand-ins."""

import json

import datasets
import pytest

from actlab.core.errors import ActlabError
from actlab.icae import data
from actlab.icae.config import ICAEConfig


def _fake_hub(tables):
    def hub(path, split, config=None):
        return datasets.Dataset.from_list(tables[path])

    return hub


def test_hub_squad_and_trajectories(monkeypatch):
    squad = [{"id": "1", "title": "T", "context": "Paris is in France.", "question": "Where is Paris?",
              "answers": {"text": ["France", "in France"], "answer_start": [12, 9]}}]  # fmt: skip
    msgs = [{"role": "user", "content": "fix the bug"}, {"role": "assistant", "content": "done"}]
    tables = {"rajpurkar/squad": squad, data.TRAJ_HUB: [{"messages": json.dumps(msgs)}]}
    monkeypatch.setattr(data, "_hub", _fake_hub(tables))
    cfg = ICAEConfig(data_source="hub")
    rows = data.squad_rows(cfg, "test", 5)
    assert rows[0]["answers"]["text"] == ["France", "in France"]
    assert data.trajectories(cfg, "test", 5) == [msgs]


def test_repoqa_release_file(tmp_path):
    code = "def a():\n    return 1\n\ndef b():\n    return 2\n"
    rel = {
        "python": [
            {
                "repo": "r",
                "content": {"m.py": code},
                "needles": [
                    {"name": "a", "path": "m.py", "start_line": 0, "end_line": 1, "description": "one"},
                    {"name": "b", "path": "m.py", "start_line": 3, "end_line": 4, "description": "two"},
                ],
            }
        ]
    }
    (tmp_path / "repoqa-2024.json").write_text(json.dumps(rel))
    tasks = data.load_repoqa_release(str(tmp_path), 10)
    assert [t["gold"] for t in tasks] == ["def a():\n    return 1", "def b():\n    return 2"]
    assert tasks[1]["needles"] == [tasks[0]["gold"], tasks[1]["gold"]]
    with pytest.raises(ActlabError, match="data_dir"):
        data.repoqa_tasks(ICAEConfig(data_source="hub"), "test", 2)


def test_offline_stand_ins():
    cfg = ICAEConfig(num_eval_samples=3)
    tasks = data.repoqa_tasks(cfg, "test", 3)
    assert len(tasks) == 3 and all(t["gold"] in t["needles"] and t["gold"] in t["context"] for t in tasks)
    trajs = data.trajectories(cfg, "test", 2)
    assert [m["role"] for m in trajs[0]] == ["tool", "user", "assistant"] * 3
    import random

    s = data.ae_lm_sample(list(range(40)), ICAEConfig(lm_ratio=1.0, min_tokens_for_lm=8), random.Random(0))
    assert s["kind"] == "LM" and s["context"] + s["target"] == list(range(40)) and len(s["target"]) >= 8
    s = data.ae_lm_sample(list(range(10)), ICAEConfig(lm_ratio=1.0, min_tokens_for_lm=8), random.Random(0))
    assert s["kind"] == "AE"  # too short for LM: falls back to AE


def test_pretrain_split_by_person():
    """No held-out passage is about a person of an ICAE training passage, nor of a zoo corpus passage."""
    import random

    from actlab.data import world

    cfg = ICAEConfig(seed=3)
    train = data.pretrain_texts(cfg, "train", 400)
    test = data.pretrain_texts(cfg, "test", 64)
    person = lambda t: t.split(" ", 1)[0]  # noqa: E731 - every passage starts "<person> is a <job> who lives ..."
    tr_people, te_people = {person(t) for t in train}, {person(t) for t in test}
    assert len(test) == 64 and len(te_people) >= 3 and not tr_people & te_people
    assert te_people <= set(world.PERSONS) and tr_people <= set(world.PERSONS)
    for t in test:  # the person is the only one the passage mentions
        assert not any(f" {p} " in f" {t} " for p in tr_people), t
    rng = random.Random(0)
    corpus = [world.DOC_GENERATORS[k](rng) for k in ("passages", "squad") for _ in range(300)]
    assert not any(f"{p} is a" in doc for doc in corpus for p in te_people)
    # RepoQA stand-in needles come from the same split
    needles = {person(n) for task in data.repoqa_tasks(cfg, "test", 4) for n in task["needles"]}
    assert needles and not needles & tr_people
