import json

import numpy as np
import pytest

from actlab.core.errors import ActlabError
from actlab.data.make_train import cut_run, load_run, make_train, train_path
from actlab.data.prepare import load_pool, prepare
from tests.data import hub_rows


@pytest.fixture
def sst2_dir(tmp_path):
    prepare("sst2", tmp_path, 30, 10, rows={"train": hub_rows.sst2(60), "validation": hub_rows.sst2(20)})
    return tmp_path


def _upstream_cut(pool_size, N, run, max_icl_demos, num_dev):
    """create_training_datasets.py's draws, written out independently (global numpy state seeded with the run)."""
    np.random.seed(run)
    order = list(range(pool_size))
    np.random.shuffle(order)
    n_dev = min(num_dev, N // 2)
    k = min(max_icl_demos, N - 1 if N > 1 else 0)
    demos = []
    for i in range(N):
        avail = list(range(N))
        avail.remove(i)
        pick = np.random.choice(avail, k, replace=False) if len(avail) > k else avail
        pick = list(pick)
        np.random.shuffle(pick)
        demos.append([int(x) for x in pick])
    return order[:N], order[N : N + n_dev], order[N + n_dev :], demos


@pytest.mark.parametrize(
    "N, run, k, dev", [(8, 0, 256, 48), (8, 3, 3, 48), (16, 1, 5, 4), (2, 2, 256, 48), (1, 0, 5, 5)]
)
def test_cut_matches_upstream_draws(N, run, k, dev):
    cut = cut_run(30, N, run, k, dev)
    tr, dv, rem, demos = _upstream_cut(30, N, run, k, dev)
    assert (cut["train"], cut["dev"], cut["remaining"], cut["train_demos"]) == (tr, dv, rem, demos)


def test_run_files_layout_disjointness_and_demos(sst2_dir):
    paths = make_train("sst2", sst2_dir, [4, 8], num_runs=3, max_icl_demos=5, num_dev_examples=48)
    assert sorted(p.name for p in paths) == ["4_0.json", "4_1.json", "4_2.json", "8_0.json", "8_1.json", "8_2.json"]
    assert all(p.parent == sst2_dir / "sst2" / "train" for p in paths)
    pool = load_pool("sst2", sst2_dir)
    for N in (4, 8):
        for r in range(3):
            doc = json.loads(train_path("sst2", N, r, sst2_dir).read_text())
            tr, dv, rem = doc["train"]["indices"], doc["dev"]["indices"], doc["remaining_indices"]
            assert len(tr) == N and len(dv) == min(48, N // 2)
            assert set(tr).isdisjoint(dv) and set(tr).isdisjoint(rem) and set(dv).isdisjoint(rem)
            assert sorted(tr + dv + rem) == list(range(len(pool)))
            assert doc["train"]["examples"] == [pool[i] for i in tr]
            k = min(5, N - 1)
            for i, demos in enumerate(doc["train"]["demos"]):
                assert len(demos) == k and len(set(demos)) == k and i not in demos
                assert all(0 <= j < N for j in demos)
            assert doc["dev"]["demos"] == doc["train"]["demos"][: len(dv)]
    a = json.loads(train_path("sst2", 8, 0, sst2_dir).read_text())
    b = json.loads(train_path("sst2", 8, 1, sst2_dir).read_text())
    assert a["train"]["indices"] != b["train"]["indices"]  # runs differ


def test_make_train_is_deterministic_and_skips_existing(sst2_dir, tmp_path):
    make_train(["sst2"], sst2_dir, [8], 2, 256, 48)
    p = train_path("sst2", 8, 1, sst2_dir)
    first = p.read_bytes()
    p.write_text("{}")
    make_train(["sst2"], sst2_dir, [8], 2, 256, 48)
    assert p.read_text() == "{}"  # kept
    make_train(["sst2"], sst2_dir, [8], 2, 256, 48, force=True)
    assert p.read_bytes() == first


def test_load_run_resolves_demos(sst2_dir):
    make_train("sst2", sst2_dir, 8, num_runs=1, max_icl_demos=3, num_dev_examples=2)
    run = load_run("sst2", 8, 0, sst2_dir)
    assert len(run["train"]) == 8 and len(run["dev"]) == 2 and len(run["remaining"]) == 30 - 10
    assert len(run["eval"]) == 10
    tr = run["train"]
    plain = [{k: v for k, v in t.items() if k != "demos"} for t in tr]
    for i, ex in enumerate(tr):
        assert len(ex["demos"]) == 3 and "demos" not in ex["demos"][0]
        assert all(d in plain for d in ex["demos"]) and plain[i] not in ex["demos"]
    assert [d["prompt"] for d in run["dev"][1]["demos"]] == [d["prompt"] for d in tr[1]["demos"]]
    pool = load_pool("sst2", sst2_dir)
    assert run["remaining"] == [pool[i] for i in run["remaining_indices"]]


def test_eval_only_run(tmp_path):
    prepare("poems", tmp_path, rows={"train": hub_rows.poems(30)})
    make_train("poems", tmp_path, [4], num_runs=1)
    run = load_run("poems", 4, 0, tmp_path)
    assert run["train"] == [] and run["remaining_indices"] == list(range(16)) and len(run["remaining"]) == 16


def test_errors(sst2_dir, tmp_path):
    with pytest.raises(ActlabError, match="exceeds the train pool"):
        make_train("sst2", sst2_dir, [64], 1)
    with pytest.raises(ActlabError) as e:
        make_train("agnews", tmp_path, [4], 1)
    assert "actlab data prepare --dataset agnews" in str(e.value)
    with pytest.raises(ActlabError, match="unknown dataset 'sst'"):
        make_train("sst", sst2_dir, [4], 1)
    with pytest.raises(ActlabError, match="make-train --datasets sst2 --num_train_examples 4"):
        load_run("sst2", 4, 0, sst2_dir)
    # a run cut from an older pool is refused
    make_train("sst2", sst2_dir, [4], 1)
    prepare("sst2", sst2_dir, 20, 10, rows={"train": hub_rows.sst2(60), "validation": hub_rows.sst2(20)}, force=True)
    with pytest.raises(ActlabError, match="different pool"):
        load_run("sst2", 4, 0, sst2_dir)
