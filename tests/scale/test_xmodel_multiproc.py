"""xmodel extract and align on 2 CPU processes (gloo) give the one-process result.

Extraction splits its shards over the ranks (shard s on rank s mod 2); align fits the trained maps data-parallel
(the same batches, a slice per rank, gradients summed) and the closed-form ones on rank 0. The one-process runs are
in this process, the two-process ones go through the launchers as docs/scale.md writes them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from actlab.xmodel.extract import load_pairs

TEXTS = [
    f"the {c} {a} is in {p} and {n} {b} are {c}"
    for c, a, p, n, b in zip(
        "red blue green red blue green red blue green red blue green red blue green red blue green red blue".split(),
        "cat dog fox bird cat dog fox bird cat dog fox bird cat dog fox bird cat dog fox bird".split(),
        "paris rome berlin tokyo paris rome berlin tokyo paris rome berlin tokyo paris rome berlin tokyo paris rome "
        "berlin tokyo".split(),
        "one two three four five six seven eight nine ten one two three four five six seven eight nine ten".split(),
        "apple banana orange tree house car book apple banana orange tree house car book apple banana orange tree "
        "house car".split(),
    )
]
EXTRACT = dict(n_texts=20, shard_size=3, heldout=0.25, batch_size=4, seed=1)


@pytest.fixture(scope="module")
def model_b(tmp_path_factory) -> str:
    """A second micro model, wider than A (48 vs 32): the maps are semi-orthogonal / rectangular."""
    from actlab.core.testing import micro_model, micro_tokenizer

    d = tmp_path_factory.mktemp("scale_micro_b")
    tok = micro_tokenizer()
    micro_model("llama", tok, seed=1, hidden=48).save_pretrained(d)
    tok.save_pretrained(d)
    return str(d)


@pytest.fixture(scope="module")
def texts(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("scale_texts") / "texts.txt"
    p.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    return p


def _extract_args(a: str, b: str, texts: Path, out: Path) -> list[str]:
    args = ["--model_a", a, "--model_b", b, "--texts", str(texts), "--out", str(out)]
    for k, v in EXTRACT.items():
        args += [f"--{k}", str(v)]
    return args


@pytest.fixture(scope="module")
def one_pairs(micro_dir, model_b, texts, tmp_path_factory) -> Path:
    from actlab.xmodel.config import ExtractConfig
    from actlab.xmodel.verbs import extract

    out = tmp_path_factory.mktemp("scale_pairs") / "one"
    return extract(ExtractConfig(model_a=micro_dir, model_b=model_b, texts=str(texts), out=str(out), **EXTRACT))


@pytest.mark.multiproc
@pytest.mark.slow  # a launch: .ci/run runs -m multiproc tests/scale
def test_extract_under_accelerate_launch(micro_dir, model_b, texts, one_pairs, launch, tmp_path):
    r = launch("accelerate", 2, "xmodel", "extract", *_extract_args(micro_dir, model_b, texts, tmp_path / "two"))
    assert r.returncode == 0, r.stderr[-3000:]
    one, two = load_pairs(one_pairs), load_pairs(tmp_path / "two")
    assert two.meta["world_size"] == 2 and two.meta["n_shards"] == 7
    torch.testing.assert_close(two.a, one.a, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(two.b, one.b, rtol=1e-5, atol=1e-5)
    assert torch.equal(two.test, one.test) and 0 < int(one.test.sum()) < len(one.test)
    from safetensors import safe_open

    ranks = []
    for s in range(7):
        with safe_open(str(tmp_path / "two" / f"shard-{s:05d}.safetensors"), "pt") as f:
            ranks.append(int(f.metadata()["rank"]))
    assert ranks == [0, 1, 0, 1, 0, 1, 0]  # shard s on rank s mod 2: both ranks extracted


def _map(d: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(d / "map.safetensors"))


# lora: contrastive loss (the batch's whole loss, gradients through each rank's rows) from a Procrustes base;
# learned: the MSE weighted by each slice's share
@pytest.mark.multiproc
@pytest.mark.slow  # a launch: .ci/run runs -m multiproc tests/scale
@pytest.mark.parametrize("method", ["lora", "learned"])
def test_align_two_processes(method, one_pairs, launch, tmp_path):
    _align_two(method, one_pairs, launch, tmp_path)


@pytest.mark.slow  # the closed-form fit on rank 0, handed to rank 1 (outside .ci/run's multiproc set: its time)
def test_align_closed_form_two_processes(one_pairs, launch, tmp_path):
    _align_two("procrustes", one_pairs, launch, tmp_path)


def _align_two(method: str, one_pairs: Path, launch, tmp_path: Path) -> None:
    from actlab.xmodel.config import AlignConfig
    from actlab.xmodel.verbs import align

    # batch 5 of 15 train rows: slices of 2 and 3 rows
    opts = dict(method=method, layer_a=1, layer_b=0, epochs=3, batch_size=5, lr=1e-2, rank=4)
    one = align(AlignConfig(pairs=str(one_pairs), out=str(tmp_path / "one"), **opts))
    args = ["--pairs", str(one_pairs), "--out", str(tmp_path / "two")]
    for k, v in opts.items():
        args += [f"--{k}", str(v)]
    r = launch("torchrun", 2, "xmodel", "align", *args)
    assert r.returncode == 0, r.stderr[-3000:]
    a, b = _map(tmp_path / "one"), _map(tmp_path / "two")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=1e-5, msg=k)
    two = json.loads((tmp_path / "two" / "scores.json").read_text())
    assert two["world_size"] == 2
    for k in ("r2", "mse", "cosine", "infonce"):
        assert two[k] == pytest.approx(one[k], rel=1e-4, abs=1e-6), k
    if method != "procrustes":  # the training moved the map away from its start
        info = json.loads((tmp_path / "two" / "map.json").read_text())["info"]
        assert info["epochs"] == 3


def test_contrastive_rank_gradients_sum_to_the_batch_gradient():
    """Each rank's gradient of the batch's whole loss, taken through its own rows only, sums to the one-process
    gradient: not twice it (every rank back-propagating through every row) and not the gradient of a loss with the
    slice's rows as the only negatives. (Adam and clipping hide a scaled gradient; this does not.)"""
    from actlab.core.distributed import Dist
    from actlab.xmodel.align import LinearAdapter, info_nce_loss

    g = torch.Generator().manual_seed(0)
    X, Y = torch.randn(7, 6, generator=g), torch.randn(7, 5, generator=g)
    m = LinearAdapter(6, 5, seed=0)
    idx = torch.tensor([3, 0, 6, 1, 5, 2, 4])

    def grad(dist: Dist) -> torch.Tensor:
        m.W.grad = None
        za = m._batch_rows(X, idx, dist)
        (info_nce_loss(za, Y[idx]) + ((za - Y[idx]) ** 2).mean()).backward()
        return m.W.grad.clone()

    whole = grad(Dist())
    parts = [grad(Dist(rank=r, world=2)) for r in (0, 1)]  # slices of 3 and 4 rows
    torch.testing.assert_close(parts[0] + parts[1], whole, rtol=1e-5, atol=1e-7)
    assert not torch.allclose(parts[0], whole, rtol=1e-2)  # a slice alone is not the whole gradient
