"""ICL targets: KV-cache build = upstream's re-forward build; the on-disk cache is reused, keyed, and rebuilt."""

import shutil

import pytest
import torch

from actlab.core.testing import micro_model, micro_tokenizer
from actlab.ia2 import IA2TrainConfig
from actlab.ia2 import targets as T


@pytest.fixture(scope="module")
def tok():
    return micro_tokenizer()


@pytest.fixture(scope="module")
def model(tok):
    return micro_model("llama", tok)


def _prompts(tok):
    texts = [
        "the cat is red\nlabel: yes\n\nthe dog is blue\nlabel:",
        "one two\nlabel:",
        "apple banana orange apple\nlabel: no\n\nred blue green\nlabel: yes\n\ntree house\nlabel:",
    ]
    return [tok(t)["input_ids"] for t in texts]


@pytest.mark.parametrize("site", ["attn_output", "block_output"])
def test_kv_targets_equal_reforward(model, tok, site):
    ids = _prompts(tok)
    kv = T.build_targets(model, tok, ids, 4, site=site, topk=5, batch_size=3)  # left-padded batch
    ref = T.build_targets_reforward(model, tok, ids, 4, site=site, topk=5)
    for a, b in zip(kv, ref, strict=True):
        assert a["ids"].tolist() == b["ids"].tolist()
        assert a["acts"].shape == (2, len(b["ids"]), 32)
        torch.testing.assert_close(a["acts"], b["acts"], atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(a["topk_logp"], b["topk_logp"], atol=1e-4, rtol=1e-4)


def test_targets_stop_at_eos(tok):
    m = micro_model("llama", tok, seed=1)
    with torch.no_grad():  # make EOS the argmax everywhere
        m.lm_head.bias = None
        m.lm_head.weight.zero_()
        m.lm_head.weight[tok.eos_token_id] = 1.0
        m.model.norm.weight.fill_(1.0)
    out = T.build_targets(m, tok, _prompts(tok)[:2], 5, topk=3)
    assert [t["ids"].tolist() for t in out] == [[tok.eos_token_id]] * 2
    assert out[0]["acts"].shape[1] == 1


def test_cache_reused_keyed_and_rebuilt(tmp_path, tok, caplog):
    from actlab.data import make_train, prepare
    from actlab.ia2.trainer import prepare as prep

    d = tmp_path / "data"
    prepare("syn_sst2", d, num_train_samples=20, num_val_samples=4)
    make_train("syn_sst2", d, num_train_examples=[4], num_runs=1, max_icl_demos=2)
    kw = dict(
        dataset="syn_sst2",
        model_id="micro",
        data_dir=str(d),
        output_dir=str(tmp_path / "o"),
        num_train_examples=4,
        num_generated_tokens=2,
        cache_dir=str(tmp_path / "cache"),
    )
    _, _, items, f1, hit = prep(IA2TrainConfig("act", **kw), micro_model("llama", tok), tok)
    assert not hit and f1.exists() and f1.suffix == ".safetensors"
    _, _, items2, f2, hit = prep(IA2TrainConfig("tna", ce_loss_weight=0.1, **kw), micro_model("llama", tok), tok)
    assert hit and f2 == f1  # all methods of a run share one file
    torch.testing.assert_close(items2["train"][0]["acts"], items["train"][0]["acts"])
    _, _, _, f3, hit = prep(IA2TrainConfig("act", **{**kw, "num_generated_tokens": 3}), micro_model("llama", tok), tok)
    assert not hit and f3 != f1  # keyed by T
    _, _, _, f4, hit = prep(
        IA2TrainConfig("act", **{**kw, "act_site": "block_output"}), micro_model("llama", tok), tok
    )
    assert not hit and f4 != f1  # keyed by site
    _, _, _, f5, hit = prep(IA2TrainConfig("act", **kw), micro_model("llama", tok, seed=3), tok)
    assert not hit and f5 != f1  # keyed by model weights
    f1.write_bytes(f1.read_bytes()[:100])  # corrupt
    caplog.clear()
    _, _, items3, f6, hit = prep(IA2TrainConfig("act", **kw), micro_model("llama", tok), tok)
    assert not hit and f6 == f1 and "corrupt" in caplog.text
    torch.testing.assert_close(items3["train"][0]["acts"], items["train"][0]["acts"])
    _, _, _, _, hit = prep(IA2TrainConfig("act", **kw), micro_model("llama", tok), tok)
    assert hit  # rebuilt file is valid again
    # the same data read from another directory (another clone sharing $ACTLAB_HOME) and the same weights under
    # another model path reuse the cache: it is keyed by the data's bytes and the weights, not by where they live
    d2 = tmp_path / "clone" / "data"
    shutil.copytree(d, d2)
    caplog.clear()
    _, _, _, f7, hit = prep(IA2TrainConfig("act", **{**kw, "data_dir": str(d2)}), micro_model("llama", tok), tok)
    assert hit and f7 == f1 and "other settings" not in caplog.text
    run_file = d2 / "syn_sst2" / "train" / "4_0.json"
    assert run_file.exists()
    run_file.write_text(run_file.read_text() + "\n")  # the same examples, other bytes
    _, _, _, f8, hit = prep(IA2TrainConfig("act", **{**kw, "data_dir": str(d2)}), micro_model("llama", tok), tok)
    assert not hit and f8 != f1  # keyed by the data's bytes


def test_target_build_resumes_after_kill(model, tok, tmp_path, monkeypatch, caplog):
    enc = {
        "train": [T.Encoded(p, p, [1], 0) for p in _prompts(tok) * 2],
        "dev": [T.Encoded(p, p, [1], 0) for p in _prompts(tok)[:1]],
    }
    meta = {"model_id": "m", "T": 2}
    f = tmp_path / "c" / "t.safetensors"
    kw = dict(cache_file=f, meta=meta, T=2, site="attn_output", layers=None, topk=4, batch_size=1, chunk_size=2)
    real, calls = T.build_targets, []

    def dying(*a, **k):
        calls.append(len(a[2]))
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(T, "build_targets", dying)
    with pytest.raises(KeyboardInterrupt):
        T.get_targets(model, tok, enc, **kw)
    assert not f.exists() and f.with_name("t.partial.safetensors").exists()
    calls.clear()
    monkeypatch.setattr(T, "build_targets", lambda *a, **k: calls.append(len(a[2])) or real(*a, **k))
    caplog.clear()
    with caplog.at_level("INFO", logger="actlab"):
        got, hit = T.get_targets(model, tok, enc, **kw)
    assert not hit and calls == [2, 1] and "resuming the target build" in caplog.text  # 4 train done
    assert f.exists() and not f.with_name("t.partial.safetensors").exists()
    ref = real(model, tok, [e.teacher_ids for e in enc["train"]], 2, topk=4)
    for a, b in zip(got["train"], ref, strict=True):
        torch.testing.assert_close(a["acts"], b["acts"])
