"""Every architecture of the matrix: capture = hidden states; LoRA, IA3, prompt and prefix each train one IA2 ``act``
and one ``tok`` step; IAV at alpha = 0 is the model bit for bit; one ICAE pretrain step and AE inference; a cross-model
map between two widths; and docs/core.md's table is what the matrix gives."""

import pytest
import torch

from tests.arch import matrix as M


def _p(names):
    return [pytest.param(n, id=n, marks=pytest.mark.arch(fast=n in M.FAST)) for n in names]


@pytest.fixture(autouse=True)
def _home(arch_root, monkeypatch):
    monkeypatch.setenv("ACTLAB_HOME", str(arch_root / "home"))  # one target cache / zoo home for the matrix


@pytest.mark.parametrize("name", _p(M.ARCHS))
def test_capture_equals_hidden_states(name, arch_tok, arch_root, arch_memo):
    assert M.cell(name, "capture", arch_root, arch_memo, arch_tok) == "ok"


@pytest.mark.parametrize("family", M.FAMILIES)
@pytest.mark.parametrize("name", _p(M.ARCHS))
def test_ia2_adapter_trains_act_and_tok(name, family, arch_tok, arch_root, arch_memo):
    got = M.cell(name, family, arch_root, arch_memo, arch_tok)
    assert got == "ok", got


@pytest.mark.parametrize("name", _p(M.ARCHS))
def test_iav_alpha0_is_the_model(name, arch_tok, arch_root, arch_memo):
    assert M.cell(name, "iav", arch_root, arch_memo, arch_tok) == "ok"


@pytest.mark.parametrize("name", _p(M.ARCHS))
def test_icae_defaults_pretrain_and_ae(name, arch_tok, arch_root, arch_memo):
    got = M.cell(name, "icae", arch_root, arch_memo, arch_tok)
    assert got == "ok", got


@pytest.mark.parametrize(
    "a,b,wide_b",
    [
        pytest.param("opt", "falcon", None, marks=pytest.mark.arch(fast=True)),
        pytest.param("gpt_neox", "gemma2", 64, marks=pytest.mark.arch),
    ],
)
def test_xmodel_map_between_widths(a, b, wide_b, arch_tok, tmp_path):
    from actlab.core import arch
    from actlab.core.testing import micro_model
    from actlab.xmodel.align import fit_map
    from actlab.xmodel.extract import extract_pairs, load_pairs

    ma = M.build(a, arch_tok)
    mb = micro_model(b, arch_tok, seed=1, hidden=wide_b) if wide_b else M.build(b, arch_tok, seed=1)
    texts = [
        f"the {c} {x} is {y} ."
        for c in ("cat", "dog", "fox", "bird")
        for x in ("red", "blue", "good")
        for y in ("left", "right")
    ]
    p = load_pairs(extract_pairs(ma, arch_tok, mb, arch_tok, texts, tmp_path / "pairs", heldout=0.25))
    da, db = arch.hidden_size(ma), arch.hidden_size(mb)
    assert da != db and p.a.shape[-1] == da and p.b.shape[-1] == db
    X, Y = p.split("train", "a", 1), p.split("train", "b", 1)
    m = fit_map("ridge", X, Y, lam=1e-3)
    pred = m(X)
    assert pred.shape == Y.shape
    base = (Y - Y.mean(0)).pow(2).mean()
    assert (pred - Y).pow(2).mean() < base  # the fitted map explains part of B's variance on what it saw


@pytest.mark.arch
def test_docs_table_is_the_matrix(arch_tok, arch_root, arch_memo):
    """docs/core.md's architecture table = what the matrix gives (rewrite: python -m tests.arch.matrix --write)."""
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "core.md").read_text()
    assert M.BEGIN in doc and M.END in doc, "docs/core.md lacks the architecture table markers"
    have = doc[doc.index(M.BEGIN) : doc.index(M.END) + len(M.END)]
    want = M.table(arch_root, arch_memo)
    assert have == want, "docs/core.md's architecture table is stale: python -m tests.arch.matrix --write"


def test_fast_subset_covers_every_layout():
    from actlab.core import arch

    tok = M.tokenizer()
    blocks = {arch.layout(M.build(n, tok)).block for n in M.FAST}
    assert blocks == {"sequential", "parallel", "moe"}
    assert set(M.FAST) <= set(M.ARCHS) and len(M.ARCHS) >= 20
    assert torch.get_num_threads() >= 1
