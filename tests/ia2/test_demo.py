"""The demo pipeline on a micro model: table, report.html + PNGs, and a rerun that redoes nothing."""

import pytest


@pytest.mark.slow
def test_demo_micro_end_to_end_and_resume(tmp_path, micro_tok, caplog):
    import logging

    from actlab.core.testing import micro_model
    from actlab.ia2.demo import DemoConfig, run_demo

    model = micro_model("llama", micro_tok)
    mdir = tmp_path / "micro"
    model.save_pretrained(mdir)
    micro_tok.save_pretrained(mdir)
    cfg = DemoConfig(
        work_dir=str(tmp_path / "w"),
        model_id=str(mdir),
        dataset="syn_sst2",
        N=4,
        icl_max_demos=3,
        num_runs=2,
        quick=True,
        num_train_samples=40,
    )
    with caplog.at_level(logging.INFO, logger="actlab"):
        out = run_demo(cfg, preloaded=(model, micro_tok))
    printed = out["text"]  # what `actlab ia2 demo` prints on stdout; the step lines are logged
    steps = [r.getMessage() for r in caplog.records if r.name == "actlab.ia2.demo"]
    assert any(m.startswith("[ia2 demo] train tok act tna a2t") for m in steps), steps
    for name in (
        "Base (no ICL)",
        "ICL (base + demos)",
        "SFT",
        "IA2",
        "IA2+SFT",
        "IA2→SFT",
        "ECE",
        "±",
        "paired differences",
        "95 % CI",
    ):
        assert name in printed
    assert out["report"].name == "report.html" and out["report"].exists()
    pngs = sorted(p.name for p in out["report"].parent.glob("*.png"))
    assert "micro_accuracy_without_icl.png" in pngs and "micro_reliability.png" in pngs
    runs = sorted((tmp_path / "w" / "outputs").glob("*/syn_sst2/*/COMPLETE"))
    assert len(runs) == 8  # 4 methods × 2 runs
    rows = {r["name"]: r for r in out["rows"]}
    assert rows["IA2"]["runs"] == 2 and rows["ICL (base + demos)"]["runs"] == 2

    # rerun: nothing retrained or re-evaluated
    def stamps():  # training runs and evaluation results (the cheap subspace-overlap summary is recomputed)
        return {
            p: p.stat().st_mtime_ns
            for p in (tmp_path / "w" / "outputs").rglob("*.json")
            if "subspace_overlap" not in p.parts
        }

    before = stamps()
    run_demo(cfg, preloaded=(model, micro_tok))
    assert stamps() == before
