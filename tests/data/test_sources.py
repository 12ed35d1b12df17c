"""The one data API: synthetic names from the world, hub names through datasets.load_dataset, one error style."""

import datasets
import pytest

from actlab.core.errors import ActlabError
from actlab.data import load_hub, load_rows, world


def test_synthetic_names_come_from_the_world():
    assert load_rows("syn_passages", "test", 5, seed=3) == world.synthetic_rows("syn_passages", "test", 5, 3)
    assert load_rows("syn_hh", "train", 4, seed=0) != load_rows("syn_hh", "train", 4, seed=1)
    with pytest.raises(ActlabError, match="needs a row count"):
        load_rows("syn_hh", "train")


def test_hub_names_go_to_load_dataset(monkeypatch):
    calls = []

    def fake_load(path, name=None, split=None, **kw):
        calls.append((path, name, split))
        return datasets.Dataset.from_list([{"text": str(i)} for i in range(10)])

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    assert [r["text"] for r in load_rows("squad", "validation", 3)] == ["0", "1", "2"]
    assert len(load_rows("org/set", "train", config="c")) == 10
    assert calls == [("rajpurkar/squad", None, "validation"), ("org/set", "c", "train")]


def test_hub_failure_is_one_line_in_one_style(monkeypatch):
    def offline(*a, **k):
        raise ConnectionError("Couldn't reach the Hub\nsecond line")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(ActlabError) as e:
        load_rows("hh_rlhf", "test", 2, hint="use syn_hh offline")
    assert str(e.value) == (
        "could not load Dahoas/full-hh-rlhf split 'test' from the hub for dataset 'hh_rlhf': "
        "ConnectionError: Couldn't reach the Hub; use syn_hh offline"
    )
    with pytest.raises(ActlabError, match=r"^could not stream allenai/c4 \(config 'en'\) split 'validation'"):
        load_hub("allenai/c4", "en", "validation", streaming=True)


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(ActlabError, match="unknown dataset 'syn_hhh'.*did you mean 'syn_hh'"):
        load_rows("syn_hhh", "train", 2)
