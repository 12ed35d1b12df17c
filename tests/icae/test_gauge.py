"""The AE gauge: floors, teacher-forced NLL with and without slots, name/attribute accuracy, on hand-made cases."""

import math

import pytest
import torch

from actlab.data import world
from actlab.icae import gauge

REF = ("Ben is a teacher who lives in Lima. Ben is 53 years old. The favourite colour of Ben is orange. "
       "Last summer Ben went to see the Lake Titicaca in Peru.")  # fmt: skip


def test_random_floor_is_the_mean_over_all_pairs():
    # BLEU-1 by hand: "a b"|"a b" = 1; "a b"|"a c" = 1/2; "c d"|"a b" = 0; "c d"|"a c" = 1/2
    assert gauge.random_floor(["a b", "c d"], ["a b", "a c"]) == pytest.approx(0.5)
    # brevity penalty: "a" against "a b" = exp(1 - 2/1)
    assert gauge.random_floor(["a"], ["a b"]) == pytest.approx(math.exp(-1))
    assert gauge.random_floor(["x"], ["a b", "c"]) == 0.0


def test_constant_floor_is_chosen_on_the_selection_slice():
    cands, refs = ["a b", "c d"], ["a b", "a c"]
    score, best = gauge.constant_floor(cands, refs, select_refs=["c d"])
    assert best == "c d" and score == pytest.approx(0.25)  # chosen on the slice, scored on refs: (0 + 1/2) / 2
    score, best = gauge.constant_floor(cands, refs)  # chosen on the eval set itself: the optimistic floor
    assert best == "a b" and score == pytest.approx(0.75)
    # ties go to the first candidate
    assert gauge.constant_floor(["q", "r"], ["a"], ["z"])[1] == "q"


def test_mean_ci_and_verdict():
    m, h = gauge.mean_ci([1.0, 2.0, 3.0])
    assert m == 2.0 and h == pytest.approx(4.302653 / math.sqrt(3), rel=1e-5)
    m1, h1 = gauge.mean_ci([0.5])
    assert m1 == 0.5 and math.isnan(h1)  # one value: no interval
    assert gauge.verdict(0.9, float("nan"), 0.55).startswith("not distinguishable")
    assert gauge.verdict(0.3, 0.02, 0.55).startswith("no reconstruction")
    assert gauge.verdict(0.56, 0.02, 0.55).startswith("not distinguishable")
    assert gauge.verdict(0.9, 0.02, 0.55) == "above the floor"


def test_passage_facts_read_the_templates():
    f = world.passage_facts(REF)
    assert {k: v[0] for k, v in f.items()} == {
        "name": "Ben",
        "job": "teacher",
        "city": "Lima",
        "age": "53",
        "color": "orange",
        "landmark": "Lake Titicaca",
        "country": "Peru",
    }
    assert REF[f["landmark"][1] : f["landmark"][2]] == "Lake Titicaca"
    spans = world.name_spans(REF, "Ben")
    assert len(spans) == 4 and spans[:2] == [(0, 3), (36, 39)] and {REF[a:b] for a, b in spans} == {"Ben"}
    assert world.name_spans("Bent Ben", "Ben") == [(5, 8)]  # whole words only
    assert world.passage_facts("garbled text here") == {"name": ("garbled", 0, 7)}


def test_greedy_fact_accuracy():
    pred = REF.replace("Lima", "Rome")  # one attribute wrong (city)
    acc = gauge.fact_accuracy(None, [REF], [pred], None, None)
    assert acc == {"name_greedy": 1.0, "attr_greedy": pytest.approx(5 / 6)}
    other = "Amy is a teacher who lives in Lima. Amy is 53 years old."  # wrong name; color/landmark/country missing
    acc = gauge.fact_accuracy(None, [REF, REF], [pred, other], None, None)
    assert acc["name_greedy"] == 0.5 and acc["attr_greedy"] == pytest.approx((5 + 3) / 12)


def test_teacher_forced_fact_accuracy(micro_tok):
    from actlab.core.testing import micro_tokenizer

    words = tuple({w.strip(".") for w in REF.split()})
    tok = micro_tokenizer(extra_words=words)
    tgt = tok(REF, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    assert tok.unk_token_id not in tgt
    pred = list(tgt)
    offs = tok(REF, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    city = REF.index("Lima")
    lake = [j for j, (a, b) in enumerate(offs) if a >= REF.index("Lake") and b <= REF.index("Titicaca") + 8]
    assert len(lake) == 2
    pred[[j for j, (a, b) in enumerate(offs) if a == city][0]] = 0  # the city wrong
    pred[lake[1]] = 0  # half of the landmark wrong: the landmark is wrong
    first_ben = 0
    pred[first_ben] = 0  # the first name occurrence wrong
    acc = gauge.fact_accuracy(tok, [REF], None, [pred], [tgt])
    assert acc["name_tf"] == pytest.approx(3 / 4) and acc["attr_tf"] == pytest.approx(4 / 6)
    assert acc["attr_tf/city"] == 0.0 and acc["attr_tf/landmark"] == 0.0 and acc["attr_tf/age"] == 1.0


def test_majority_floor():
    train = [REF, REF.replace("Lima", "Rome"), REF.replace("Lima", "Rome").replace("Ben", "Amy")]
    maj = gauge.majority_fact_floor(train, [REF])
    assert maj["name"] == 1.0 and maj["attr"] == pytest.approx(5 / 6)  # guesses Rome for the city


def test_teacher_forced_nll_with_and_without_slots(make_icae):
    """No-slot NLL = the frozen base's own LM loss on ``<s> text </s>``; AE NLL = the model's AE loss."""
    icae = make_icae(fixed_mem_size=4, mean_compression_rate=2)
    texts = ["the cat is red and the dog is blue", "bob is in rome"]
    tf = gauge.teacher_forced(icae, texts, batch_size=2)
    eos = icae.tok.eos_token_id
    for i, t in enumerate(texts):
        ids = icae.tok(t, add_special_tokens=False)["input_ids"] + [eos]
        assert tf["targets"][i] == ids
        full = torch.tensor([[icae.tok.bos_token_id, *ids]])
        with torch.no_grad(), icae.model.disable_adapter():
            ref = icae.base()(input_ids=full, labels=full).loss.item()
        nll, n, am = tf["no_slots"][i]
        assert n == len(ids) and len(am) == len(ids)
        assert nll / n == pytest.approx(ref, rel=1e-4)
        mem = icae.compress([ids[:-1]])
        with torch.no_grad():
            ae = icae.loss(icae.decoder_rows(mem, "AE", [[]], [ids])).item()
        assert tf["ae"][i][0] / tf["ae"][i][1] == pytest.approx(ae, rel=1e-4)
        assert tf["ae"][i][0] / n != pytest.approx(ref, rel=1e-3)  # the slots change the prediction
    g = gauge.ae_gauge(icae, texts, ["the cat", "bob"], ["the cat is red", "bob is in rome"], None, False, 2)
    assert g["gauge/slot_gain_nats"] == pytest.approx(g["gauge/nll_no_slots"] - g["gauge/nll_ae"])
    assert g["gauge/floor_constant_selected_on"] == "eval set" and "gauge/name_tf" not in g
    assert g["gauge/floor_random"] == pytest.approx(gauge.random_floor(["the cat is red", "bob is in rome"], texts))
    table = gauge.format_gauge(g)
    assert "random passage" in table and g["gauge/verdict"] in table


def test_compression_figure_runs_each_rate_and_seed(make_icae, tmp_path, monkeypatch):
    from actlab.icae import demo, trainer
    from actlab.icae.config import ICAEConfig

    built = []

    def fake_build(cfg):
        built.append((cfg.mean_compression_rate, cfg.seed))
        return make_icae(
            perturb=False, fixed_mem_size=8, mean_compression_rate=cfg.mean_compression_rate, seed=cfg.seed
        )

    monkeypatch.setattr(trainer, "build_model", fake_build)
    cfg = ICAEConfig(
        fixed_mem_size=8,
        lora_r=4,
        output_dir=str(tmp_path),
        num_train_samples=20,
        num_eval_samples=3,
        batch_size=3,
        max_new_tokens=4,
        max_steps=2,
        logging_steps=1,
        save_steps=100,
        per_device_train_batch_size=2,
        warmup_steps=1,
    )
    res = demo.compression_figure(cfg, rates=(1, 4), seeds=(0, 1))
    assert built == [(1, 0), (1, 1), (4, 0), (4, 1)]
    assert set(res["per_rate"]) == {"1", "4"} and len(res["runs"]) == 4
    r1 = [r for r in res["runs"] if r["rate"] == 1]
    m, h = res["per_rate"]["1"]["ae/bleu1"]
    assert m == pytest.approx(sum(r["ae/bleu1"] for r in r1) / 2) and h >= 0
    assert res["runs"][0]["compression/rate"] < res["runs"][2]["compression/rate"]  # 1x vs 4x, measured
    assert (tmp_path / "figure.json").exists()


def test_hub_sets_get_floors_and_nll_but_no_facts(make_icae, monkeypatch):
    import datasets

    from actlab.icae import data, infer
    from actlab.icae.config import ICAEConfig

    texts = [f"text number {i} is about the {'cat' if i % 2 else 'dog'}" for i in range(200)]
    monkeypatch.setattr(
        data, "_hub", lambda path, split, config=None: datasets.Dataset.from_list([{"text": t} for t in texts])
    )
    icae = make_icae(fixed_mem_size=4, mean_compression_rate=2)
    cfg = ICAEConfig(data_source="hub", pretrain_dataset="some/texts", num_eval_samples=2, batch_size=2)
    refs = data.pretrain_texts(cfg, "test", 2)
    assert refs == texts[:2]
    g = infer.ae_gauge_for(icae, cfg, refs, ["text number", "the dog"])
    train = texts[2 : 2 + gauge.FLOOR_CANDIDATES]  # hub training texts start after the held-out ones
    assert g["gauge/floor_random"] == pytest.approx(gauge.random_floor(train, refs))
    assert g["gauge/floor_constant_selected_on"] == "a separate slice"
    assert g["gauge/floor_constant"] == pytest.approx(
        gauge.constant_floor(
            train, refs, texts[2 + gauge.FLOOR_CANDIDATES : 2 + gauge.FLOOR_CANDIDATES + gauge.SELECT_REFS]
        )[0]
    )
    assert "gauge/name_tf" not in g and g["gauge/nll_no_slots"] > 0


def test_load_pretrained_regauges_a_finished_run_without_training(make_icae, tmp_path, monkeypatch):
    """``demo.load_pretrained``: a finished run's recorded config and saved weights come back as they were trained
    (what ``benchmarks/icae_regauge.py`` evaluates again); a training-only value today's checks refuse is reset with a
    warning; a directory without a finished pretraining is one line."""
    import json

    from actlab.core.errors import ActlabError
    from actlab.icae import data, demo, trainer
    from actlab.icae.config import ICAEConfig

    opts = dict(fixed_mem_size=4, mean_compression_rate=2, lora_r=4, max_seq_len=200, seed=0)
    monkeypatch.setattr(trainer, "build_model", lambda cfg: make_icae(perturb=False, **opts))
    cfg = ICAEConfig(
        **opts,
        output_dir=str(tmp_path / "run"),
        num_train_samples=20,
        num_eval_samples=2,
        batch_size=2,
        max_steps=3,
        logging_steps=1,
        save_steps=100,
        per_device_train_batch_size=2,
        warmup_steps=1,
    )
    trained = make_icae(perturb=False, **opts)
    data.prepare_pretrain(cfg)
    trainer.pretrain(cfg, trained)
    conf = tmp_path / "run" / "pretrain" / "config.json"
    d = json.loads(conf.read_text())
    conf.write_text(json.dumps({**d, "save_steps": 0, "an_old_field": 1}))  # as older versions recorded
    got_cfg, icae = demo.load_pretrained(tmp_path / "run")
    assert got_cfg.mean_compression_rate == 2 and got_cfg.task == "ae" and got_cfg.save_steps != 0
    want = {n: p for n, p in trained.named_parameters() if p.requires_grad}
    have = dict(icae.named_parameters())
    assert want and all(torch.equal(want[n].detach(), have[n].detach()) for n in want)
    fresh = make_icae(perturb=False, **opts)
    assert any(not torch.equal(want[n].detach(), dict(fresh.named_parameters())[n].detach()) for n in want)
    with pytest.raises(ActlabError, match="not a finished ICAE pretraining run"):
        demo.load_pretrained(tmp_path / "nothing")
