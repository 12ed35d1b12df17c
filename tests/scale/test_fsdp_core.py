"""The FSDP switch and helpers of actlab.core.distributed in one process (the 2-process runs: test_fsdp_icae.py)."""

from __future__ import annotations

import pytest
import torch

from actlab.core.distributed import Dist, fsdp_requested


@pytest.mark.parametrize(
    "env,want",
    [
        ({}, False),
        ({"ACCELERATE_USE_FSDP": "true"}, True),  # accelerate launch --use_fsdp / distributed_type: FSDP
        ({"ACCELERATE_USE_FSDP": "false"}, False),
        ({"ACTLAB_FSDP": "1"}, True),  # torchrun
        ({"ACTLAB_FSDP": "0"}, False),
    ],
)
def test_fsdp_requested_reads_accelerate_and_actlab_switches(monkeypatch, env, want):
    for k in ("ACCELERATE_USE_FSDP", "ACTLAB_FSDP"):
        monkeypatch.delenv(k, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert fsdp_requested() is want


def test_one_process_helpers_are_the_plain_ones(monkeypatch):
    """Alone (or without FSDP) nothing is sharded: clip is torch's, the state and optimizer are returned as they are."""
    from actlab.core.distributed import start

    monkeypatch.setenv("ACTLAB_FSDP", "1")
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    d = start("cpu")
    assert not d.fsdp  # FSDP needs several processes: one process trains the whole model
    m = torch.nn.Linear(3, 2)
    assert d.shard_model(m) is m and not any(type(p).__name__ == "DTensor" for p in m.parameters())
    m(torch.ones(4, 3)).pow(2).sum().backward()
    ref = torch.nn.utils.get_total_norm([p.grad for p in m.parameters()])
    gn = d.clip_grad_norm_(list(m.parameters()), 0.5)
    torch.testing.assert_close(gn, ref)
    torch.testing.assert_close(torch.nn.utils.get_total_norm([p.grad for p in m.parameters()]), torch.tensor(0.5))
    opt = torch.optim.AdamW(m.parameters())
    assert d.full_optimizer(opt) is opt
    sd = {"w": m.weight}
    assert d.full_state(sd)["w"] is m.weight
    assert Dist(fsdp=True).shard_model(m) is m  # one process: a no-op


@pytest.mark.parametrize("family", ["ia2", "iav"])
def test_trainers_without_fsdp_refuse_it_in_one_line(family, monkeypatch, tmp_path):
    """IA2 and IAV do not shard: an FSDP launch is refused before anything is written, not run as N full copies."""
    from actlab.core import distributed
    from actlab.core.errors import ActlabError

    monkeypatch.setattr(distributed, "start", lambda device=None, verb="": Dist(rank=0, world=2, fsdp=True))
    if family == "ia2":
        from actlab.ia2 import trainer
        from actlab.ia2.config import IA2TrainConfig

        cfg = IA2TrainConfig("act", dataset="syn_sst2", model_id="unused", output_dir=str(tmp_path / "out"))
    else:
        from actlab.iav import trainer
        from actlab.iav.config import TrainConfig

        cfg = TrainConfig(model_name_or_path="unused", output_dir=str(tmp_path / "out"))
    with pytest.raises(ActlabError, match=f"{family} train does not run under FSDP .* --multi_gpu --num_processes 2"):
        trainer.train(cfg)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "argv,verb",
    [
        (
            ["xmodel", "align", "--pairs", "{inp}", "--out", "{out}/map", "--layer_a", "0", "--layer_b", "0"],
            "xmodel align",
        ),
        (
            ["xmodel", "extract", "--model_a", "a", "--model_b", "b", "--out", "{out}/pairs"],
            "xmodel extract",
        ),
        (["zoo", "build", "tiny", "--force"], "zoo build"),
    ],
)
def test_other_launched_verbs_refuse_fsdp_in_one_line(argv, verb, monkeypatch, tmp_path, capsys):
    """xmodel and zoo build run data parallel but shard nothing: an FSDP launch is one line, not a silent DDP run."""
    from actlab.cli.main import main
    from actlab.core import distributed

    monkeypatch.setattr(distributed, "start", lambda device=None, verb="": Dist(rank=0, world=2, fsdp=True))
    monkeypatch.setenv("ACTLAB_HOME", str(tmp_path / "home"))
    (tmp_path / "inp").mkdir()
    (tmp_path / "inp" / "pairs.json").write_text("{}")  # an input that exists: the refusal comes before reading it
    rc = main([a.replace("{out}", str(tmp_path / "out")).replace("{inp}", str(tmp_path / "inp")) for a in argv])
    err = [x for x in capsys.readouterr().err.splitlines() if x.strip()]
    assert rc == 2 and len(err) == 1 and f"{verb} does not run under FSDP" in err[0], err
    assert not (tmp_path / "out").exists() and not (tmp_path / "home" / "models").exists()
