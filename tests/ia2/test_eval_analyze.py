"""analyze subspace-overlap and activation-similarity: hand cases, files and plots on the micro world."""

import numpy as np
import pytest
import torch

from tests.ia2.conftest import run_cli


def test_subspace_overlap_hand_cases():
    from actlab.ia2.analyze import subspace_overlap_matrices

    torch.manual_seed(0)
    B = torch.randn(64, 4)
    assert subspace_overlap_matrices(B, B) == pytest.approx(1.0, abs=1e-5)
    assert subspace_overlap_matrices(B, B @ torch.randn(4, 4)) == pytest.approx(1.0, abs=1e-4)  # same column space
    E = torch.eye(64)
    assert subspace_overlap_matrices(E[:, :4], E[:, 4:8]) == pytest.approx(0.0, abs=1e-6)
    half = torch.cat([E[:, :2], E[:, 10:12]], 1)
    assert subspace_overlap_matrices(E[:, :4], half) == pytest.approx(0.5, abs=1e-6)
    rnd = [subspace_overlap_matrices(torch.randn(512, 4), torch.randn(512, 4)) for _ in range(20)]
    assert sum(rnd) / len(rnd) == pytest.approx(4 / 512, rel=0.5)  # random subspaces: about r/d


def test_cosine_by_layer_token():
    from actlab.ia2.analyze import cosine_by_layer_token

    a = torch.tensor([[[1.0, 0.0], [1.0, 1.0]]])  # [L=1, t=2, d=2]
    b = torch.tensor([[[2.0, 0.0], [-1.0, -1.0], [5.0, 5.0]]])  # t=3: only the common 2 tokens are compared
    torch.testing.assert_close(cosine_by_layer_token(a, b), torch.tensor([[1.0, -1.0]]))


def test_analyze_cli_on_micro_world(ia2_world, capsys):
    w = ia2_world
    common = [
        "--outputs_dir",
        str(w["outputs"]),
        "--data_dir",
        str(w["data"]),
        "--plots_dir",
        str(w["root"] / "ap"),
        "--model_id",
        str(w["model_dir"]),
    ]
    assert run_cli(["analyze", "subspace-overlap", "--methods", "tok", "act", *common]) == 0
    assert (w["root"] / "ap" / "unified" / "syn_sst2" / "analysis" / "subspace_overlap.png").exists()
    import json

    rows = json.loads((w["outputs"] / "analysis" / "subspace_overlap" / "overlap.json").read_text())["rows"]
    assert {r["pair"] for r in rows} == {"tok vs act"}
    for r in rows:
        # the definition, independently: U = left singular vectors of each lora_B [out, r] (float64 numpy SVD),
        # overlap = ||U1ᵀ U2||_F² / r, averaged over the modules both adapters have
        b1, b2 = (_lora_bs(d) for d in r["run_dirs"])
        vals = []
        for k in sorted(set(b1) & set(b2)):
            u1 = np.linalg.svd(b1[k], full_matrices=False)[0]
            u2 = np.linalg.svd(b2[k], full_matrices=False)[0]
            vals.append(float(((u1.T @ u2) ** 2).sum()) / u1.shape[1])
        assert len(vals) == len(r["per_module"]) > 0
        assert r["overlap"] == pytest.approx(float(np.mean(vals)), abs=1e-6)
        assert -1e-9 <= r["overlap"] <= 1 + 1e-9
        # modules wider than the rank make this a case that can fail (not 1 by construction)
        assert min(vals) < 0.99
    assert (
        run_cli(
            [
                "analyze",
                "activation-similarity",
                "--model_types",
                "tok",
                "act",
                "--num_samples",
                "4",
                "--icl_max_demos",
                "3",
                *common,
            ]
        )
        == 0
    )
    assert (w["root"] / "ap" / "unified" / "syn_sst2" / "analysis" / "activation_similarity.png").exists()
    docs = [json.loads(p.read_text()) for p in (w["outputs"] / "analysis" / "activation_similarity").rglob("*.json")]
    assert len(docs) == 6  # tok ×2 runs, act ×2 lrs ×2 runs
    for d in docs:
        assert len(d["per_layer"]) == 2 and len(d["per_token"]) == 1 and -1 <= d["overall"] <= 1
    # no match -> one line, exit 2
    capsys.readouterr()
    assert run_cli(["analyze", "subspace-overlap", "--methods", "tna", "a2t", *common]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "model_types=tna a2t" in err


def _lora_bs(run_dir):
    """``{module: lora_B [out, r]}`` as float64 numpy, read straight from the saved adapter."""
    from pathlib import Path

    from safetensors.numpy import load_file

    t = load_file(str(Path(run_dir) / "adapter_model.safetensors"))
    return {k.split(".lora_B")[0]: v.astype(np.float64) for k, v in t.items() if ".lora_B" in k}


def test_last_token_fast_path_equals_per_example(micro_llama, micro_tok):
    from actlab.ia2.analyze import _acts_on_own_tokens, _last_token_acts

    prompts = ["the cat is red\nlabel:", "one two\nlabel:", "alice has more books than bob and carol\nlabel:"]
    fast = _last_token_acts(micro_llama, micro_tok, prompts, "attn_output", batch_size=2)
    for p, f in zip(prompts, fast, strict=True):
        torch.testing.assert_close(
            f, _acts_on_own_tokens(micro_llama, micro_tok, p, 1, "attn_output"), atol=1e-5, rtol=1e-4
        )
