"""The seed's cross-model Python API (``from actlab.xmodel import ...``): the same objects the CLI fits, the seed's
call shapes and defaults, on micro models; Procrustes at a list of layers; the text-similarity experiment."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import actlab.xmodel as X
from actlab.cli.main import main
from actlab.core.errors import ActlabError
from actlab.core.testing import micro_model, micro_tokenizer
from actlab.xmodel import align as A
from actlab.xmodel import metrics as M
from actlab.xmodel.communicate import text_similarity, word_f1
from actlab.xmodel.config import XModelConfig
from actlab.xmodel.experiments import run_all


@pytest.fixture(scope="module")
def micro_pair():
    tok = micro_tokenizer()
    return (micro_model("llama", tok, hidden=32), tok), (micro_model("llama", tok, seed=1, hidden=48), tok)


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory, micro_pair):
    root = tmp_path_factory.mktemp("models")
    out = []
    for name, (m, tok) in zip("ab", micro_pair):
        m.save_pretrained(root / name)
        tok.save_pretrained(root / name)
        out.append(str(root / name))
    return out


def _data(n=80, da=12, db=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    Xa = torch.randn(n, da, generator=g) + 3.0
    Yb = Xa @ torch.randn(da, db, generator=g) * 0.5 + 0.05 * torch.randn(n, db, generator=g) - 1.0
    return Xa, Yb


def test_every_seed_name_is_the_cli_implementation():
    for name in ("ProcrustesAlignment", "LinearAdapter", "AffineAdapter", "LoRAAdapter", "LearnedProjection"):
        assert getattr(X, name) is getattr(A, name)
    for name in ("InfoNCE", "CKA", "AlignmentUniformity", "mean_pooling"):
        assert getattr(X, name) is getattr(M, name)
    Xa, Yb = _data()
    tc = A.TrainConfig(epochs=1)
    # fit_map (what `xmodel align` / run-all call) returns the seed's classes
    assert type(A.fit_map("procrustes", Xa, Yb)) is X.ProcrustesAlignment
    assert type(A.fit_map("learned", Xa, Yb, train=tc)) is X.LearnedProjection
    for kind, cls in (("linear", X.LinearAdapter), ("affine", X.AffineAdapter), ("lora", X.LoRAAdapter)):
        assert type(A.fit_map(kind, Xa, Yb, train=tc)) is cls
    with pytest.raises(AttributeError):
        X.NoSuchThing  # noqa: B018


def test_procrustes_alignment_seed_call_shape(tmp_path):
    g = torch.Generator().manual_seed(1)
    Xa = torch.randn(50, 8, generator=g, dtype=torch.float64)
    Q, _ = torch.linalg.qr(torch.randn(8, 8, generator=g, dtype=torch.float64))
    Yb = 2.5 * Xa @ Q + 3.0
    p = X.ProcrustesAlignment(use_affine=True)
    with pytest.raises(ActlabError, match="not fitted"):
        p.transform(Xa)
    assert p.fit(Xa, Yb) is p and p.use_affine
    torch.testing.assert_close(p.transform(Xa), Yb, atol=1e-4, rtol=1e-4)  # scale + rotation + translation
    torch.testing.assert_close(p(Xa[:5]), A.fit_map("procrustes", Xa, Yb)(Xa[:5]))
    # without the affine part: no translation, so the offset cannot be matched
    q = X.ProcrustesAlignment(use_affine=False).fit(Xa, Yb)
    assert float(q.b.abs().max()) == 0.0 and float((q.transform(Xa) - Yb).abs().mean()) > 1.0
    # widths may differ (the seed asserted equal shapes)
    r = X.ProcrustesAlignment().fit(*_data(da=12, db=10))
    assert r.transform(torch.zeros(3, 12)).shape == (3, 10)
    r.save(tmp_path / "p")
    back = A.load_map(tmp_path / "p")
    assert type(back) is X.ProcrustesAlignment
    torch.testing.assert_close(back(torch.ones(2, 12)), r(torch.ones(2, 12)))


def test_adapters_seed_defaults_and_training(tmp_path):
    da, db = 12, 10
    Xa, Yb = _data(da=da, db=db)
    lin, aff, lora = X.LinearAdapter(da, db), X.AffineAdapter(da, db), X.LoRAAdapter(da, db)
    assert lora.cfg.rank == 32  # the seed's default
    assert lin.n_trainable == da * db and aff.n_trainable == da * db + db
    assert lora.n_trainable == 32 * (da + db) + db
    assert lin(Xa).shape == (80, db)
    tc = A.TrainConfig(epochs=30, mse_weight=1.0)
    xt, yt = Xa[60:], Yb[60:]
    for m in (lin, aff):
        with torch.no_grad():
            before = float(((m(xt) - yt) ** 2).mean())
        m.fit(Xa[:60], Yb[:60], tc)
        assert float(((m(xt) - yt) ** 2).mean()) < before
        assert not any(p.requires_grad for p in m.parameters())
    # LoRA starts at the scaled, translated Procrustes base (B = 0) and only the low-rank part and bias train
    start = X.LoRAAdapter(da, db, rank=4).fit(Xa, Yb, A.TrainConfig(epochs=0))
    torch.testing.assert_close(start(Xa), A.procrustes(Xa, Yb, scale=True, translate=True)(Xa), atol=1e-4, rtol=1e-4)
    trained = X.LoRAAdapter(da, db, rank=4).fit(Xa, Yb, tc)
    torch.testing.assert_close(trained.W, start.W)  # the base is frozen
    assert float(trained.lora_B.abs().max()) > 0
    trained.save(tmp_path / "l")
    assert type(A.load_map(tmp_path / "l")) is X.LoRAAdapter
    with pytest.raises(ActlabError, match="12 → 10"):
        X.LinearAdapter(da, db).fit(Xa[:, :5], Yb)
    # the same training the CLI runs (fit_map) gives the same map
    torch.testing.assert_close(A.fit_map("affine", Xa, Yb, train=tc)(xt), X.AffineAdapter(da, db).fit(Xa, Yb, tc)(xt))


def test_learned_projection_is_the_papers_w():
    Xa, Yb = _data(n=200)
    tc = A.TrainConfig(epochs=20, lr=1e-2)
    w = X.LearnedProjection(12, 10)
    assert w.n_trainable == 120 and float(w.b.abs().max()) == 0.0
    w.fit(Xa, Yb, tc)
    assert w.cfg.info["final_loss"] < float(((Yb - Yb.mean(0)) ** 2).sum(1).mean())
    torch.testing.assert_close(w(Xa), A.fit_map("learned", Xa, Yb, train=tc)(Xa))


def test_info_nce_cka_align_uniform_mean_pooling():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(16, 8, generator=g), torch.randn(16, 8, generator=g)
    nce = X.InfoNCE()
    assert nce.temperature == 0.07
    a.requires_grad_(True)
    loss = nce(a, b)
    loss.backward()
    assert a.grad is not None and float(loss.detach()) == pytest.approx(M.info_nce(a.detach(), b), rel=1e-4)
    # explicit negatives: CE with the positive at index 0
    neg = torch.randn(16, 5, 8, generator=g)
    an, bn, nn_ = F.normalize(a.detach(), dim=-1), F.normalize(b, dim=-1), F.normalize(neg, dim=-1)
    logits = torch.cat([(an * bn).sum(-1, keepdim=True), torch.einsum("bkd,bd->bk", nn_, an)], 1) / 0.07
    ref = -torch.log_softmax(logits, 1)[:, 0].mean()
    assert float(X.InfoNCE()(a.detach(), b, neg)) == pytest.approx(float(ref), rel=1e-5)
    with pytest.raises(ActlabError, match="temperature"):
        X.InfoNCE(temperature=0)
    # CKA: Kornblith's Demo oracles
    rs = np.random.RandomState(1337)
    x = rs.randn(100, 10)
    y = rs.randn(100, 10) + x
    assert X.CKA.cka_similarity(x, y) == pytest.approx(0.51346, abs=1e-4)  # debiased by default (the seed's)
    assert X.CKA(debiased=False)(x, y) == pytest.approx(0.55761, abs=1e-4)
    K, L = X.CKA.linear_kernel(x), X.CKA.linear_kernel(y)
    assert float(X.CKA.unbiased_hsic_estimator(K, L)) == pytest.approx(float(M.hsic_unbiased(K, L)))
    Kc = X.CKA.center_gram(K)
    assert float(Kc.sum(0).abs().max()) < 1e-8
    # alignment / uniformity
    al, un = X.AlignmentUniformity.compute_metrics(b, 3.0 * b)
    assert al == pytest.approx(0.0, abs=1e-12)  # rows L2-normalised
    bn64 = F.normalize(b.double(), dim=-1)
    assert un == pytest.approx(float(torch.pdist(bn64).pow(2).mul(-2).exp().mean().log()))
    assert X.AlignmentUniformity.uniformity_loss(b) == un
    # mean pooling ignores masked positions
    h = torch.randn(2, 4, 3, generator=g)
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    h[0, 2:] = 1e6
    out = X.mean_pooling(h, mask)
    torch.testing.assert_close(out[0], h[0, :2].mean(0))
    torch.testing.assert_close(out[1], h[1].mean(0))


def test_train_learned_projection_from_models(micro_pair):
    from actlab.xmodel.extract import pooled_activations

    (ma, ta), (mb, tb) = micro_pair
    texts = [f"the cat number {i} is red" for i in range(20)]
    w = X.train_learned_projection(
        ma, mb, ta, tb, 32, 48, layer_idx=1, layer_idx_b=0, num_samples=16, num_epochs=2, batch_size=8, texts=texts
    )
    assert isinstance(w, X.LearnedProjection) and (w.cfg.d_in, w.cfg.d_out) == (32, 48)
    assert w.cfg.info["n"] == 16 and w.cfg.info["layer_b"] == 0
    # one implementation: the paper's W on the same last-token activations
    xa = pooled_activations(ma, ta, texts[:16], [1], "last", 8)[0]
    yb = pooled_activations(mb, tb, texts[:16], [0], "last", 8)[0]
    ref = A.learned_projection(xa, yb, A.TrainConfig(epochs=2, batch_size=8, seed=42))
    torch.testing.assert_close(w(xa), ref(xa))
    with pytest.raises(ActlabError, match="out of range"):
        X.train_learned_projection(ma, mb, ta, tb, texts=texts)  # the default layer 25 on a 2-layer model
    with pytest.raises(ActlabError, match="dim_b = 64"):
        X.train_learned_projection(ma, mb, ta, tb, 32, 64, layer_idx=0, texts=texts)


def test_run_experiments_seed_call_shapes(model_dirs, tmp_path):
    a, b = model_dirs
    res = X.run_procrustes_experiment(model_a_id=a, model_b_id=b, layers=[0, 1], n_texts=40, out=tmp_path / "p")
    assert set(res["results"]) == {"0-0", "1-1"}
    for r in res["results"].values():
        assert r["n_test"] == 8 and np.isfinite(r["r2"]) and -1.0 <= r["cosine"] <= 1.0
        assert r["cka_debiased"] == pytest.approx(r["raw_cka_debiased"], abs=1e-6)  # CKA is Procrustes-invariant
    assert json.loads((tmp_path / "p" / "procrustes.json").read_text())["layers_a"] == [0, 1]
    assert (tmp_path / "p" / "maps" / "procrustes" / "layer1-1" / "map.json").exists()
    with pytest.raises(ActlabError, match="layer 8 out of range for a 2-layer model"):
        X.run_procrustes_experiment(model_a_id=a, model_b_id=b)  # the seed's [0, 8, 16, 24]
    lo = X.run_lora_adapter_experiment(model_a_id=a, model_b_id=b, gpu_id=0, n_texts=40, epochs=2)
    assert lo["map"].cfg.rank == 32 and lo["n_trainable"] == 32 * (32 + 48) + 48
    assert (lo["layer_a"], lo["layer_b"]) == (0, 0)  # -2 of a 2-layer model
    li = X.run_linear_adapter_experiment(a, b, n_texts=40, epochs=2, layer_a=1, layer_b=0)
    af = X.run_affine_adapter_experiment(a, b, n_texts=40, epochs=2, layer_a=1, layer_b=0, out=tmp_path / "af")
    assert li["n_trainable"] == 32 * 48 and af["n_trainable"] == 32 * 48 + 48
    assert (tmp_path / "af" / "affine_adapter.json").exists() and (tmp_path / "af" / "maps" / "affine").is_dir()


def test_run_activation_communication_experiment(model_dirs, tmp_path):
    a, b = model_dirs
    res = X.run_activation_communication_experiment(
        model_a_id=a,
        model_b_id=b,
        n_eval=4,
        n_similarity=6,
        n_projection=24,
        epochs=1,
        k=1,
        j=0,
        similarity_tokens=3,
        max_new_tokens=2,
        message_tokens=3,
        out=tmp_path / "ac",
    )
    assert set(res["layers"]) == {"0-0", "1-1"} and res["config"]["projection"]  # widths differ → the paper's W
    for r in res["layers"].values():
        assert r["map"] == "learned" and 0.0 <= r["f1"] <= 1.0 and 0.0 <= r["f1_shuffled"] <= 1.0
    ev = res["task_evaluation"]
    assert set(ev["methods"]) == {"b_alone", "a_alone", "skyline", "nl", "ac"} and ev["map"] == "learned"
    assert ev["methods"]["ac"]["applied"] == 1
    assert (tmp_path / "ac" / "activation_communication.json").exists()
    assert (tmp_path / "ac" / "maps" / "learned-1-0" / "map.json").exists()


def test_text_similarity_definition(micro_pair):
    (ma, ta), (mb, tb) = micro_pair
    texts = [f"alice has {w} red books and" for w in "one two three four five six".split()]
    # A = B with replace: B receives its own state, so its continuation is the text baseline (F1 = 1)
    same = text_similarity(mb, tb, mb, tb, texts, [0, 1], max_new_tokens=4)
    for r in same["layers"].values():
        assert r["f1"] == pytest.approx(1.0) and r["exact"] == 1.0 and r["f1_ci95"] == pytest.approx(0.0)
        assert r["f1_shuffled"] <= 1.0
    cross = text_similarity(ma, ta, mb, tb, texts, [1], [0], max_new_tokens=4)  # 32 → 48: footnote-1 slicing
    assert set(cross["layers"]) == {"1-0"} and cross["layers"]["1-0"]["map"] is None
    assert word_f1("The cat sat", "cat sat down") == pytest.approx(0.8) and word_f1("", "") == 1.0
    with pytest.raises(ActlabError, match="at least 2 texts"):
        text_similarity(mb, tb, mb, tb, texts[:1], [0])


def test_procrustes_layer_list_align_and_run_all(model_dirs, micro_pair, tmp_path, capsys):
    a, b = model_dirs
    txt = tmp_path / "t.txt"
    txt.write_text("\n".join(f"the cat {i} is red and the dog {i} is blue" for i in range(16)))
    assert (
        main(
            [
                "xmodel",
                "extract",
                "--model_a",
                a,
                "--model_b",
                b,
                "--texts",
                str(txt),
                "--heldout",
                "0.5",
                "--out",
                str(tmp_path / "p"),
            ]
        )
        == 0
    )
    assert (
        main(["xmodel", "align", "--pairs", str(tmp_path / "p"), "--layers", "0", "1", "--out", str(tmp_path / "m")])
        == 0
    )
    out = capsys.readouterr().out
    assert "A[0] → B[0]" in out and "A[1] → B[1]" in out
    scores = json.loads((tmp_path / "m" / "scores.json").read_text())
    assert set(scores["results"]) == {"0-0", "1-1"} and scores["method"] == "procrustes"
    one = A.load_map(tmp_path / "m" / "layer1-1")
    from actlab.xmodel.extract import load_pairs

    pairs = load_pairs(tmp_path / "p")
    ref = A.procrustes(pairs.split("train", "a", 1), pairs.split("train", "b", 1), scale=True, translate=True)
    xt = pairs.split("test", "a", 1)
    torch.testing.assert_close(one(xt), ref(xt))
    # one line, exit 2: both forms, a missing layer
    for argv, msg in (
        (["--layers", "0", "--layer_a", "0"], "--layers replaces"),
        ([], "give --layer_a"),
        (["--layers", "5"], "--layers 5 was not extracted"),
    ):
        rc = main(["xmodel", "align", "--pairs", str(tmp_path / "p"), "--out", str(tmp_path / "bad"), *argv])
        err = capsys.readouterr().err
        assert rc == 2 and msg in err and "Traceback" not in err, err
    # run-all: procrustes_layers stage
    cfg = XModelConfig(
        model_a="a",
        model_b="b",
        n_texts=24,
        heldout=0.25,
        n_eval=2,
        n_dev=0,
        k=1,
        j=1,
        epochs=1,
        methods=["procrustes"],
        ac_maps=[],
        max_new_tokens=1,
        message_tokens=1,
        procrustes_layers=[0, 1],
    )
    res = run_all(cfg, tmp_path / "run", models=micro_pair)
    assert set(res["procrustes_layers"]["results"]) == {"0-0", "1-1"}
    assert (tmp_path / "run" / "procrustes_layers.json").exists()
    assert "Procrustes per layer" in (tmp_path / "run" / "results.md").read_text()
    # at the communication layers, the per-layer map is the run's Procrustes map
    assert res["procrustes_layers"]["results"]["1-1"]["r2"] == pytest.approx(
        res["maps"]["methods"]["procrustes"]["r2"]
    )
    with pytest.raises(ActlabError, match="out of range"):
        run_all(
            XModelConfig(model_a="a", model_b="b", n_texts=24, procrustes_layers=[0, 8, 16, 24]),
            tmp_path / "run2",
            models=micro_pair,
        )


@pytest.mark.slow
def test_torchrun_run_all_gives_the_single_process_result(model_dirs, tmp_path):
    import os
    import subprocess
    import sys

    a, b = model_dirs
    txt = tmp_path / "t.txt"
    txt.write_text("\n".join(f"alice has {n} red books and {n + 1} blue pens" for n in range(24)))
    flags = [
        "xmodel",
        "run-all",
        "--model_a",
        a,
        "--model_b",
        b,
        "--texts",
        str(txt),
        "--n_texts",
        "24",
        "--heldout",
        "0.25",
        "--shard_size",
        "5",
        "--n_eval",
        "3",
        "--n_dev",
        "2",
        "--epochs",
        "1",
        "--methods",
        "procrustes,ridge,learned",
        "--ac_maps",
        "ridge",
        "--max_new_tokens",
        "2",
        "--message_tokens",
        "2",
        "--procrustes_layers",
        "0,1",
    ]
    env = {**os.environ, "ACTLAB_QUIET": "1", "OMP_NUM_THREADS": "1"}
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            "--master_port",
            "29523",
            "-m",
            "actlab.cli.main",
            *flags,
            "--out",
            str(tmp_path / "dist"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count("Debiased CKA") == 1  # rank 0 prints the tables once
    assert main([*flags, "--out", str(tmp_path / "single")]) == 0
    d, s = tmp_path / "dist", tmp_path / "single"
    assert json.loads((d / "pairs" / "pairs.json").read_text())["world_size"] == 2 and (d / "COMPLETE").exists()
    for name in ("cka.json", "maps.json", "procrustes_layers.json"):
        jd, js = json.loads((d / name).read_text()), json.loads((s / name).read_text())
        assert _close(jd, js), name
    cd, cs = (json.loads((x / "communicate.json").read_text())["methods"] for x in (d, s))
    assert {m: v["accuracy"] for m, v in cd.items()} == {m: v["accuracy"] for m, v in cs.items()}


def _close(x, y, tol=1e-4) -> bool:
    if isinstance(x, dict):
        return x.keys() == y.keys() and all(_close(x[k], y[k], tol) for k in x if k not in ("seconds", "info"))
    if isinstance(x, list):
        return len(x) == len(y) and all(_close(u, v, tol) for u, v in zip(x, y))
    if isinstance(x, float):
        return abs(x - y) <= tol * max(1.0, abs(y))
    return x == y


def test_cli_communicate_text_similarity(model_dirs, tmp_path, capsys):
    a, b = model_dirs
    assert (
        main(
            [
                "xmodel",
                "communicate",
                "--model_a",
                b,
                "--model_b",
                b,
                "--k",
                "1",
                "--j",
                "1",
                "--n",
                "2",
                "--methods",
                "b_alone",
                "--similarity_layers",
                "0,1",
                "--n_similarity",
                "4",
                "--similarity_tokens",
                "3",
                "--out",
                str(tmp_path / "c"),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "text similarity A[0] → B[0]: word F1 1.000" in out and "A[1] → B[1]" in out  # A = B: its own state
    doc = json.loads((tmp_path / "c" / "communicate.json").read_text())
    assert set(doc["text_similarity"]["layers"]) == {"0-0", "1-1"} and doc["text_similarity"]["n"] == 4
    rc = main(["xmodel", "communicate", "--model_a", a, "--model_b", b, "--similarity_layers", "0,5", "--n", "2"])
    err = capsys.readouterr().err
    assert rc == 2 and "layer 5 out of range" in err and "Traceback" not in err


def test_c4_text_source_streams_hub_schema_rows(monkeypatch):
    import datasets

    from actlab.xmodel.config import ExtractConfig
    from actlab.xmodel.experiments import load_texts

    docs = [
        {
            "text": f"  Document {i} " + "words " * (3 if i % 3 == 0 else 120),
            "timestamp": "2019-04-25T12:57:54Z",
            "url": f"https://example.com/{i}",
        }
        for i in range(40)
    ]  # allenai/c4 en: text, timestamp, url
    calls = []

    def load_dataset(path, name=None, split=None, streaming=False, **kw):
        calls.append((path, name, split, streaming))
        return datasets.IterableDataset.from_generator(lambda: iter(docs))

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    texts = load_texts("c4", 10, seed=0)
    assert calls == [("allenai/c4", "en", "validation", True)]
    assert len(texts) == 10 and all(50 < len(t) <= 512 and t.startswith("Document") for t in texts)
    kept = {int(t.split()[1]) for t in texts}
    assert not any(i % 3 == 0 for i in kept)  # short documents are dropped
    assert load_texts("c4", 10, seed=0) == texts and load_texts("c4", 10, seed=1) != texts  # seeded order
    assert XModelConfig(texts="c4").texts == "c4" and ExtractConfig("a", "b", "/tmp/x", texts="c4").texts == "c4"

    def offline(*a, **k):
        raise ConnectionError("Couldn't reach 'allenai/c4' on the Hub")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(ActlabError, match="could not stream allenai/c4.*offline"):
        load_texts("c4", 4)
