"""Training: only the heads change, resume after a kill, the reference cache (round trip + mismatches)."""

import json

import pytest
import torch
from safetensors.torch import load_file

from actlab.core.errors import ActlabError
from actlab.iav.config import CacheConfig, LossConfig, TrainConfig
from actlab.iav.trainer import train


def _cfg(micro_dir, out, **kw):
    base = dict(
        model_name_or_path=micro_dir,
        output_dir=str(out),
        num_train_samples=16,
        num_val_samples=4,
        batch_size=4,
        seq_length=48,
        max_prompt_length=24,
        save_steps=2,
        eval_steps=2,
        device="cpu",
        learning_rate=1e-2,
        warmup_ratio=0.0,
    )
    loss = kw.pop("loss", LossConfig())
    base.update(kw)
    return TrainConfig(**base, loss=loss)


def test_training_changes_only_the_heads(tmp_path, micro_dir):
    from actlab.core.models import load

    lm0, _ = load(micro_dir)
    out = train(_cfg(micro_dir, tmp_path / "run", max_steps=3))
    assert (out / "COMPLETE").exists() and not (out / "checkpoint").exists()
    heads = load_file(out / "heads" / "iav_heads.safetensors")
    w0 = lm0.get_output_embeddings().weight
    assert not torch.equal(heads["base_head.weight"], w0)  # base head trained
    assert torch.count_nonzero(heads["align_head.weight"]) > 0  # alignment head moved off zero
    # the backbone on disk is untouched and the loaded IAV's reference head is the original lm_head
    from actlab.iav.model import IAVModel

    iav = IAVModel.from_pretrained(out / "heads")
    for (n, p), (n0, p0) in zip(iav.lm.named_parameters(), lm0.named_parameters(), strict=True):
        assert n == n0 and torch.equal(p, p0)
    assert torch.equal(iav.ref_head.weight, w0)
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3]
    for k in (
        "loss/total",
        "loss/pref",
        "loss/kl",
        "loss/l2",
        "rewards/margins",
        "rewards/accuracies",
        "logps/chosen",
        "grad_norm",
        "lr",
    ):
        assert k in rows[0]
    assert "eval/loss/pref" in rows[1] and "eval/rewards/margins" in rows[-1]
    assert rows[0]["loss/pref"] == pytest.approx(0.6931, abs=1e-3)  # z_final = z_ref at step 0 → margin 0
    assert rows[-1]["rewards/margins"] > 0


def test_freeze_base_head(tmp_path, micro_dir):
    out = train(_cfg(micro_dir, tmp_path / "run", max_steps=2, freeze_base_head=True))
    heads = load_file(out / "heads" / "iav_heads.safetensors")
    from actlab.core.models import load

    lm0, _ = load(micro_dir)
    assert torch.equal(heads["base_head.weight"], lm0.get_output_embeddings().weight)
    assert torch.count_nonzero(heads["align_head.weight"]) > 0


def test_resume_after_kill_matches_uninterrupted(tmp_path, micro_dir):
    full = train(_cfg(micro_dir, tmp_path / "full", max_steps=4))
    cfg = _cfg(micro_dir, tmp_path / "killed", max_steps=4)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, kill_after_steps=2)
    assert (tmp_path / "killed" / "checkpoint-2" / "checkpoint.safetensors").exists()
    assert not (tmp_path / "killed" / "COMPLETE").exists()
    resumed = train(cfg)
    a = load_file(full / "heads" / "iav_heads.safetensors")
    b = load_file(resumed / "heads" / "iav_heads.safetensors")
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-6), k
    steps = [json.loads(x)["step"] for x in (resumed / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]


def test_faithful_mode_trains(tmp_path, micro_dir):
    out = train(_cfg(micro_dir, tmp_path / "run", max_steps=2, loss=LossConfig(loss="faithful")))
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["loss/kl"] == pytest.approx(0.0, abs=1e-9)  # base head = reference head at step 0
    assert rows[0]["loss/l2"] == 0.0


def test_dataset_without_columns_writes_nothing(tmp_path, micro_dir):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "hi", "response": "yo"}\n')
    with pytest.raises(ActlabError, match="lacks column"):
        train(_cfg(micro_dir, tmp_path / "run", dataset=str(bad)))
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------------------------------------ cache
def _cache(micro, path, **kw):
    from actlab.iav.cache import build_cache

    base = dict(ref_model=micro, num_samples=16, seq_length=48, max_prompt_length=24, topk=0, cache_file=str(path))
    base.update(kw)
    return build_cache(CacheConfig(**base))


def test_cache_round_trip_equals_frozen_head(tmp_path, micro_dir):
    """A full-vocabulary cache of the backbone itself reproduces the frozen-head reference exactly."""
    from actlab.core.models import load
    from actlab.iav.cache import load_cache
    from actlab.iav.data import load_rows, tokenize
    from actlab.iav.model import IAVModel
    from actlab.iav.trainer import batch_loss

    path = _cache(micro_dir, tmp_path / "c.safetensors")
    lm, tok = load(micro_dir)
    data = tokenize(load_rows("syn_hh", "train", 16), tok, 48, 24)
    cache = load_cache(path, data, vocab_size=len(tok), expect={"seq_length": 48, "loss": "corrected"}, hint="h")
    assert cache["_meta"]["format"] == "actlab-iav-cache" and cache["chosen.topk_idx"].shape[-1] == len(tok)
    iav = IAVModel(lm)
    with torch.no_grad():
        iav.align_head.weight.normal_(0, 0.1)
        iav.base_head.weight.add_(0.05 * torch.randn_like(iav.base_head.weight))
    idx = torch.arange(8)
    cfg = LossConfig(lambda_kl=1.0)
    _, m_head = batch_loss(iav, data, idx, cfg)
    _, m_cache = batch_loss(iav, data, idx, cfg, cache=cache)
    for k in ("loss/pref", "loss/kl", "loss/total", "rewards/margins"):
        assert m_cache[k].item() == pytest.approx(m_head[k].item(), rel=1e-4, abs=1e-6), k
    # faithful layout: the gathered logits match too
    fpath = _cache(micro_dir, tmp_path / "f.safetensors", loss="faithful")
    fdata = tokenize(load_rows("syn_hh", "train", 16), tok, 48, 24, "faithful")
    fcache = load_cache(fpath, fdata, vocab_size=len(tok), expect={"seq_length": 48, "loss": "faithful"}, hint="h")
    fcfg = LossConfig(loss="faithful")
    assert batch_loss(iav, fdata, idx, fcfg, cache=fcache)[1]["loss/kl"].item() == pytest.approx(
        batch_loss(iav, fdata, idx, fcfg)[1]["loss/kl"].item(), rel=1e-4
    )


def test_training_with_cache_of_another_reference(tmp_path, micro_dir, micro_dir_b):
    path = _cache(micro_dir_b, tmp_path / "c.safetensors", topk=8)
    out = train(_cfg(micro_dir, tmp_path / "run", max_steps=2, cache_file=str(path)))
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["loss/kl"] > 0  # the backbone differs from this reference
    assert rows[0]["loss/pref"] != pytest.approx(0.6931, abs=1e-3)


@pytest.mark.parametrize(
    "case,match",
    [
        ("seq_length", "seq_length=64"),
        ("samples", "holds 8 pairs"),
        ("model", "vocabulary"),
        ("old", "pickle"),
        ("hash", "hash"),
    ],
)
def test_cache_mismatch_is_one_clear_error(tmp_path, micro_dir, micro_dir_other_vocab, case, match):
    cfg = _cfg(micro_dir, tmp_path / "run", max_steps=1, cache_file=str(tmp_path / "c.safetensors"))
    if case == "seq_length":
        _cache(micro_dir, tmp_path / "c.safetensors", seq_length=64)
    elif case == "samples":
        _cache(micro_dir, tmp_path / "c.safetensors", num_samples=8)
    elif case == "model":
        _cache(micro_dir_other_vocab, tmp_path / "c.safetensors")
    elif case == "old":
        (tmp_path / "cache.pkl").write_bytes(b"\x80\x04not really")
        cfg.cache_file = str(tmp_path / "cache.pkl")
    elif case == "hash":
        _cache(micro_dir, tmp_path / "c.safetensors", seed=5)  # other rows, same shapes
    with pytest.raises(ActlabError, match=match) as e:
        train(cfg)
    assert "actlab iav cache" in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("source", ["head", "live", "cache"])
def test_packed_loss_equals_reference_implementation(tmp_path, micro_dir, micro_dir_b, source):
    """The fast path (one backbone pass for both sides, heads over response positions only, one log-softmax per
    logit tensor) gives the loss, metrics and gradients of both heads of the full-sequence implementation."""
    from actlab.core.models import load
    from actlab.iav.cache import load_cache
    from actlab.iav.data import load_rows, tokenize
    from actlab.iav.model import IAVModel
    from actlab.iav.trainer import batch_loss

    lm, tok = load(micro_dir)
    iav = IAVModel(lm)
    with torch.no_grad():
        iav.align_head.weight.normal_(0, 0.1)
        iav.base_head.weight.add_(0.05 * torch.randn_like(iav.base_head.weight))
    data = tokenize(load_rows("syn_hh", "train", 16), tok, 48, 24)
    kw = {}
    if source == "live":
        kw["ref_lm"] = load(micro_dir_b)[0]
    elif source == "cache":
        path = _cache(micro_dir_b, tmp_path / "c.safetensors", topk=8)
        kw["cache"] = load_cache(path, data, vocab_size=len(tok), expect={}, hint="h")
    cfg = LossConfig(lambda_kl=0.5, lambda_l2=0.1, train_alpha=1.5)
    idx = torch.tensor([3, 0, 7, 5, 9, 2])
    fast, mf = batch_loss(iav, data, idx, cfg, **kw)
    slow, ms = batch_loss(iav, data, idx, cfg, packed=False, **kw)
    assert set(mf) == set(ms)
    for k in ms:
        assert mf[k].item() == pytest.approx(ms[k].item(), rel=1e-4, abs=1e-6), k
    assert ms["loss/kl"].item() > 1e-3 and ms["loss/l2"].item() > 1e-3  # every term is live
    fast.backward()
    g_fast = [p.grad.clone() for p in (iav.base_head.weight, iav.align_head.weight)]
    iav.zero_grad()
    slow.backward()
    for g, p in zip(g_fast, (iav.base_head.weight, iav.align_head.weight), strict=True):
        assert torch.allclose(g, p.grad, rtol=1e-4, atol=1e-7), (g - p.grad).abs().max()
        assert p.grad.abs().max() > 1e-5
    with torch.no_grad():  # evaluation: the same values, no gradients taken
        assert batch_loss(iav, data, idx, cfg, **kw)[0].item() == pytest.approx(slow.item(), rel=1e-5)


def _frozen_base_setup(micro_dir):
    """An IAV model with the base head frozen and a random alignment head, 8 syn_hh pairs, the first 4 as a batch."""
    from actlab.core.models import load
    from actlab.iav.data import load_rows, tokenize
    from actlab.iav.model import IAVModel

    lm, tok = load(micro_dir)
    iav = IAVModel(lm, freeze_base_head=True)
    with torch.no_grad():
        iav.align_head.weight.normal_(0, 0.1)
    return iav, tokenize(load_rows("syn_hh", "train", 8), tok, 48, 24), torch.arange(4)


def test_packed_loss_frozen_base_head(micro_dir):
    """With the base head frozen only the alignment head gets a gradient, equal to the simple path's."""
    from actlab.iav.trainer import batch_loss

    iav, data, idx = _frozen_base_setup(micro_dir)
    cfg = LossConfig(lambda_kl=0.5, lambda_l2=0.1)
    fast, _ = batch_loss(iav, data, idx, cfg)
    fast.backward()
    assert iav.base_head.weight.grad is None
    g = iav.align_head.weight.grad.clone()
    iav.zero_grad()
    batch_loss(iav, data, idx, cfg, packed=False)[0].backward()
    assert torch.allclose(g, iav.align_head.weight.grad, rtol=1e-4, atol=1e-7) and g.abs().max() > 1e-5


def test_frozen_base_head_shares_the_reference_logits(micro_dir, monkeypatch):
    """With ``W_b`` frozen at ``W_ref`` the packed loss takes ``z_base = z_ref`` and skips the (zero) KL: the same
    loss, metrics and alignment gradient as computing both; an edited or lower-precision base head is not shared."""
    from actlab.core.models import load
    from actlab.iav.model import IAVModel
    from actlab.iav.trainer import batch_loss

    iav, data, idx = _frozen_base_setup(micro_dir)
    assert iav.base_is_ref()
    cfg = LossConfig(lambda_kl=0.5, lambda_l2=0.1, train_alpha=1.5)
    calls = []
    orig = iav.base_head.forward
    monkeypatch.setattr(iav.base_head, "forward", lambda x: calls.append(1) or orig(x))
    shared, ms = batch_loss(iav, data, idx, cfg)
    assert not calls  # the base head's matmul was skipped
    shared.backward()
    g = iav.align_head.weight.grad.clone()
    iav.zero_grad()
    monkeypatch.setattr(type(iav), "base_is_ref", lambda self: False)
    full, mf = batch_loss(iav, data, idx, cfg)
    assert calls  # computed this time
    full.backward()
    for k in mf:
        assert ms[k].item() == pytest.approx(mf[k].item(), rel=1e-6, abs=1e-7), k
    assert abs(mf["loss/kl"].item()) < 1e-6
    assert torch.allclose(g, iav.align_head.weight.grad, rtol=1e-6, atol=1e-9) and g.abs().max() > 1e-5
    monkeypatch.undo()
    with torch.no_grad():
        iav.base_head.weight[0, 0] += 1.0  # no longer the reference (in-place edit: caught by the version check)
    assert not iav.base_is_ref()
    assert not IAVModel(load(micro_dir)[0].to(torch.bfloat16), freeze_base_head=True).base_is_ref()  # fp32 vs bf16
    assert not IAVModel(load(micro_dir)[0]).base_is_ref()  # trainable base head
