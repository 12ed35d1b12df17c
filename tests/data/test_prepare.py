import json
import sys
import types

import numpy as np
import pytest

from actlab.core.errors import ActlabError
from actlab.data.prepare import build_pools, load_pool, pool_path, prepare, read_pool
from actlab.data.registry import get_dataset
from tests.data import hub_rows


def _perm(n):  # what datasets.Dataset.shuffle(seed=42) does
    return np.random.default_rng(42).permutation(n)


def test_sst2_pools_layout_shuffle_and_truncation(tmp_path):
    train, val = hub_rows.sst2(40), hub_rows.sst2(30)
    path = prepare("sst2", tmp_path, num_train_samples=10, num_val_samples=5, rows={"train": train, "validation": val})
    assert path == tmp_path / "sst2" / "main.json"
    doc = json.loads(path.read_text())
    assert set(doc) == {"metadata", "train_examples", "val_examples"}
    tr, va = doc["train_examples"], doc["val_examples"]
    assert len(tr) == 10 and len(va) == 5
    # first 10 rows of the seed-42 shuffle, in that order
    assert [e["prompt"] for e in tr] == [f"Text:{train[i]['sentence']}\nLabel:" for i in _perm(40)[:10]]
    assert [e["answer"] for e in va] == [str(val[i]["label"]) for i in _perm(30)[:5]]
    assert [e["idx"] for e in tr] == list(range(10))
    assert set(tr[0]) == {"idx", "prompt", "answer", "label", "gold"}
    meta = doc["metadata"]
    assert meta["labels"] == ["0", "1"] and meta["max_choices"] == 2 and meta["remap_dict"] is None
    assert meta["num_train_examples"] == 10 and meta["task_type"] == "single_token"
    assert load_pool("sst2", tmp_path, "val") == va and load_pool("sst2", tmp_path) == tr


def test_prepare_is_deterministic_and_idempotent(tmp_path):
    rows = {"train": hub_rows.sst2(40), "validation": hub_rows.sst2(20)}
    p = prepare("sst2", tmp_path / "a", 12, 6, rows=rows)
    q = prepare("sst2", tmp_path / "b", 12, 6, rows=rows)
    assert p.read_bytes() == q.read_bytes()
    mtime = p.stat().st_mtime_ns
    assert prepare("sst2", tmp_path / "a", 5, 5, rows=rows) == p and p.stat().st_mtime_ns == mtime  # kept
    prepare("sst2", tmp_path / "a", 5, 5, rows=rows, force=True)
    assert len(read_pool("sst2", tmp_path / "a")["train_examples"]) == 5


def test_remap_writes_suffixed_dir(tmp_path):
    rows = {"train": hub_rows.sst2(10), "validation": hub_rows.sst2(10)}
    path = prepare("sst2", tmp_path, 10, 10, label_template="remap", rows=rows)
    assert path == tmp_path / "sst2_remap" / "main.json"
    doc = read_pool("sst2_remap", tmp_path)
    assert doc["metadata"]["remap_dict"] == {"0": "apple", "1": "Friday"}
    assert {e["answer"] for e in doc["train_examples"]} == {"apple", "Friday"}
    assert all(e["gold"] == e["answer"] for e in doc["train_examples"])


def test_finsen_filters_remaps_and_cuts_eval_from_the_end(tmp_path):
    rows = hub_rows.finsen(60)  # labels 0,1,2 cycling
    doc = build_pools(get_dataset("finsen"), 100, 8, rows=rows)
    kept = [rows[i] for i in _perm(60) if rows[i]["label"] in (0, 2)]
    assert len(kept) == 40
    assert [e["prompt"] for e in doc["val_examples"]] == [f"Text:{r['sentence']}\nLabel:" for r in kept[-8:]]
    assert [e["prompt"] for e in doc["train_examples"]] == [f"Text:{r['sentence']}\nLabel:" for r in kept[:-8]]
    assert [e["label"] for e in doc["train_examples"]] == [1 if r["label"] == 2 else 0 for r in kept[:-8]]


def test_poems_eval_only_filters_labels(tmp_path):
    prepare("poems", tmp_path, 2000, 500, rows={"train": hub_rows.poems(30)})
    doc = read_pool("poems", tmp_path)
    assert doc["train_examples"] == []
    assert len(doc["val_examples"]) == 16 and {e["answer"] for e in doc["val_examples"]} == {"0", "1"}


def test_strategytf_double_shuffle(tmp_path):
    rows = hub_rows.strategyqa(30)
    doc = build_pools(get_dataset("strategytf"), 100, 10, rows=rows)
    first = [rows[i] for i in _perm(30)]
    head, tail = first[:20], first[20:]
    assert [e["prompt"] for e in doc["train_examples"]] == [
        f"Question:{head[i]['question']}\nAnswer:" for i in _perm(20)
    ]
    assert [e["prompt"] for e in doc["val_examples"]] == [
        f"Question:{tail[i]['question']}\nAnswer:" for i in _perm(10)
    ]


def test_gsm8ks_uses_one_split_for_both_pools(tmp_path):
    doc = build_pools(get_dataset("gsm8ks"), 10, 5, rows={"test": hub_rows.gsm_symbolic(20)})
    assert [e["prompt"] for e in doc["val_examples"]] == [e["prompt"] for e in doc["train_examples"][:5]]
    assert doc["train_examples"][0]["gold"].isdigit()


def test_sciq_remap_and_qasc_remap_pools(tmp_path):
    doc = build_pools(
        get_dataset("sciq_remap"), 5, 3, rows={"train": hub_rows.sciq(10), "validation": hub_rows.sciq(6)}
    )
    for e in doc["train_examples"] + doc["val_examples"]:
        assert e["answer"] in ["apple", "Friday", "banana", "Saturday"]
        correct = e["prompt"].split(f"[{e['answer']}]")[1].split("\n")[0]
        assert correct.startswith("right-")
    doc = build_pools(get_dataset("qasc_remap"), 5, 3, rows=hub_rows.qasc(12))
    assert doc["metadata"]["labels"][7] == "Monday" and len(doc["train_examples"]) == 5


def test_hub_path_uses_load_dataset(tmp_path, monkeypatch):
    import datasets

    calls = []

    def fake_load(path, name=None, split=None, **kw):
        calls.append((path, name, split))
        return datasets.Dataset.from_list(hub_rows.hmath(12))

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    path = prepare("hmath", tmp_path, 6, 4, subset="algebra")
    assert path == tmp_path / "hmath_algebra" / "main.json"
    assert calls == [
        ("EleutherAI/hendrycks_math", "algebra", "train"),
        ("EleutherAI/hendrycks_math", "algebra", "test"),
    ]
    assert all(e["gold"].isdigit() for e in load_pool("hmath_algebra", tmp_path))


def test_hub_failure_is_one_line(tmp_path, monkeypatch):
    import datasets

    def boom(*a, **k):
        raise ConnectionError("offline\nsecond line")

    monkeypatch.setattr(datasets, "load_dataset", boom)
    with pytest.raises(ActlabError) as e:
        prepare("agnews", tmp_path)
    assert "fancyzhx/ag_news" in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "agnews").exists()


def test_wrong_schema_names_the_missing_columns(tmp_path):
    with pytest.raises(ActlabError, match="lack column.*sentence"):
        prepare("sst2", tmp_path, rows=[{"text": "x", "label": 0}])
    assert not pool_path("sst2", tmp_path).exists()
    with pytest.raises(ActlabError, match="rows lack column 'label'"):
        prepare("finsen", tmp_path, rows=[{"sentence": "x", "lab": 0}])


def test_cmath_one_topic_from_hub_rows(tmp_path):
    """``cmath --subset algebra``: only the Algebra rows, shuffled (42), the last n_val rows the eval pool."""
    from actlab.data.registry import SEED, as_dataset, resolve

    rows = hub_rows.camel_math(40)
    doc = build_pools(resolve("cmath", subset="algebra"), 100, 5, rows=rows)
    meta = doc["metadata"]
    assert meta["dataset"] == "cmath_algebra" and meta["base"] == "cmath"
    algebra = [r for r in rows if r["topic;"] == "Algebra"]
    assert meta["num_train_examples"] == len(algebra) - 5 and meta["num_val_examples"] == 5
    shuffled = as_dataset(algebra).shuffle(seed=SEED).to_list()
    assert [e["prompt"] for e in doc["val_examples"]] == [f"Question:{r['message_1']}\nAnswer:" for r in shuffled[-5:]]
    assert [e["answer"] for e in doc["train_examples"]] == [r["message_2"] for r in shuffled[:-5]]
    spec = get_dataset("cmath_algebra")
    for e, r in zip(doc["val_examples"], shuffled[-5:]):
        assert spec.parse(e["answer"]) == r["message_2"].rsplit("x = ", 1)[1].rstrip(".")  # the gold x
    out = prepare("cmath", tmp_path, num_train_samples=4, num_val_samples=3, subset="algebra", rows=rows)
    assert out == tmp_path / "cmath_algebra" / "main.json"
    assert read_pool("cmath_algebra", tmp_path)["metadata"]["num_train_examples"] == 4
    assert len(load_pool("cmath_algebra", tmp_path, "val")) == 3
    with pytest.raises(ActlabError, match="subset.*algebra"):
        prepare("cmath", tmp_path, subset="geometry", rows=rows)


def test_synthetic_calls_zoo(tmp_path, monkeypatch):
    calls = []

    def synthetic_rows(name, split, n, seed):
        calls.append((name, split, n, seed))
        return [{"sentence": f"{split} {i}", "label": i % 2} for i in range(n)]

    mod = types.ModuleType("actlab.data.world")
    mod.synthetic_rows = synthetic_rows
    monkeypatch.setitem(sys.modules, "actlab.data.world", mod)
    prepare("syn_sst2", tmp_path, 8, 4, label_template="remap")
    assert calls == [("syn_sst2", "train", 8, 42), ("syn_sst2", "test", 4, 42)]
    doc = read_pool("syn_sst2_remap", tmp_path)
    assert len(doc["train_examples"]) == 8 and {e["answer"] for e in doc["val_examples"]} <= {"apple", "Friday"}


def test_missing_pool_error_names_path_and_command(tmp_path):
    with pytest.raises(ActlabError) as e:
        load_pool("agnews", tmp_path)
    msg = str(e.value)
    assert str(tmp_path / "agnews" / "main.json") in msg and "actlab data prepare --dataset agnews" in msg


def test_script_datasets_fall_back_to_the_parquet_export(tmp_path, monkeypatch):
    import datasets

    calls = []

    def fake_load(path, name=None, split=None, revision=None, **kw):
        calls.append((path, name, split, revision))
        if revision is None:
            raise RuntimeError("Dataset scripts are no longer supported, but found strategy-qa.py")
        return datasets.Dataset.from_list(hub_rows.strategyqa(30))

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    prepare("strategytf", tmp_path, 100, 10)
    assert calls == [
        ("wics/strategy-qa", None, "test", None),
        ("wics/strategy-qa", None, "test", "refs/convert/parquet"),
    ]
    assert len(load_pool("strategytf", tmp_path, "val")) == 10


@pytest.mark.parametrize(
    "name",
    ["syn_sst2", "syn_agnews", "syn_gsm8k", "syn_squad", "syn_hh", "syn_passages", "syn_countries", "syn_tipsheets"],
)
def test_real_zoo_synthetic_rows(name, tmp_path):
    world = pytest.importorskip("actlab.data.world")
    if not hasattr(world, "synthetic_rows"):
        pytest.skip("actlab.data.world.synthetic_rows not there yet")
    doc = build_pools(get_dataset(name), 6, 3)
    assert len(doc["train_examples"]) == 6 and len(doc["val_examples"]) == 3
    for e in doc["train_examples"]:
        assert e["prompt"]
        if name in ("syn_sst2", "syn_agnews"):
            assert e["prompt"].startswith("Text:") and e["prompt"].endswith("\nLabel:") and e["answer"].isdigit()
        if name == "syn_gsm8k":
            assert e["gold"] is not None and e["gold"].lstrip("-").isdigit()


def test_spec_load_returns_raw_rows():
    train, val = get_dataset("sst2").load(4, 2, rows={"train": hub_rows.sst2(10), "validation": hub_rows.sst2(6)})
    assert [r["sentence"] for r in train] == [hub_rows.sst2(10)[i]["sentence"] for i in _perm(10)[:4]]
    assert set(val[0]) == {"idx", "sentence", "label"} and len(val) == 2
