"""evaluate → plot → report on a micro model: the seed's files appear; reruns skip; bad input is one line, exit 2."""

from pathlib import Path

from tests.ia2.conftest import run_cli


def _common(w):
    return ["--outputs_dir", str(w["outputs"]), "--data_dir", str(w["data"])]


def test_evaluate_plot_chain(ia2_world, capsys):
    w = ia2_world
    rc = run_cli(
        [
            "evaluate",
            "--model_types",
            "base",
            "tok",
            "act",
            "ia3-tok",
            "--trained_datasets",
            "syn_sst2",
            "--icl_max_demos",
            "3",
            "--uncertainty_analysis",
            "--num_eval_examples",
            "12",
            "--batch_size",
            "5",
            "--model_id",
            str(w["model_dir"]),
            *_common(w),
        ]
    )
    assert rc == 0, capsys.readouterr().err
    ev = w["outputs"] / "evaluations"
    base_files = sorted(p.name for p in (ev / "base_uncertainty" / "syn_sst2").glob("*.json"))
    assert base_files == [
        "micro_base_on_syn_sst2_demos3_T1_N4_0.json",
        "micro_base_on_syn_sst2_demos3_T1_N4_1.json",
        "micro_base_without_icl_T1.json",
    ]
    tok_files = sorted(p.name for p in (ev / "tok_uncertainty" / "syn_sst2").glob("*.json"))
    # trained results are named after their run directory (which holds T, label type, lr, run, ...)
    assert tok_files == [f"micro_syn_sst2_on_syn_sst2_demos3_T1_micro_tok_0.001_{r}.json" for r in (0, 1)]
    assert len(list((ev / "act_uncertainty" / "syn_sst2").glob("*.json"))) == 4
    assert len(list((ev / "ia3-tok_uncertainty" / "syn_sst2").glob("*.json"))) == 2
    import json

    doc = json.loads((ev / "base_uncertainty" / "syn_sst2" / base_files[0]).read_text())
    assert doc["config"]["num_demos"] == 3 and doc["with_icl"]["n"] == 12
    for key in ("top1_accuracy", "top10_accuracy", "label_accuracy", "entropy", "uncertainty", "ece"):
        assert key in doc["with_icl"]
    assert doc["accuracy_delta"] == doc["with_icl_accuracy"] - doc["without_icl_accuracy"]
    # rerun: everything exists -> nothing recomputed (mtimes unchanged)
    before = {p: p.stat().st_mtime_ns for p in ev.rglob("*.json")}
    assert (
        run_cli(
            [
                "evaluate",
                "--model_types",
                "base",
                "tok",
                "act",
                "ia3-tok",
                "--icl_max_demos",
                "3",
                "--uncertainty_analysis",
                "--num_eval_examples",
                "12",
                "--model_id",
                str(w["model_dir"]),
                *_common(w),
            ]
        )
        == 0
    )
    assert {p: p.stat().st_mtime_ns for p in ev.rglob("*.json")} == before

    plots = w["root"] / "plots"
    rc = run_cli(
        [
            "plot",
            "--trained_dataset",
            "syn_sst2",
            "--icl_max_demos",
            "3",
            "--uncertainty_mode",
            "--outputs_dir",
            str(w["outputs"]),
            "--plots_dir",
            str(plots),
        ]
    )
    assert rc == 0, capsys.readouterr().err
    d = plots / "unified" / "syn_sst2" / "syn_sst2_syn_sst2_3"
    names = {p.name for p in d.iterdir()}
    for n in (
        "micro_accuracy_with_icl.png",
        "micro_accuracy_without_icl.png",
        "micro_top1_accuracy_with_icl.png",
        "micro_label_accuracy_with_icl.png",
        "micro_uncertainty_with_icl.png",
        "micro_ece_with_icl.png",
        "micro_reliability.png",
        "micro_family_comparison.png",
        "report.html",
    ):
        assert n in names, n
        assert (d / n).stat().st_size > 500
    html = (d / "report.html").read_text()
    assert "IA2" in html and "SFT (IA3)" in html and 'src="micro_reliability.png"' in html
    assert "lr=0.001" in html or "lr=0.0001" in html  # chosen hyperparameters are shown

    assert run_cli(["plot-all", "--outputs_dir", str(w["outputs"]), "--plots_dir", str(w["root"] / "plots2")]) == 0
    assert (w["root"] / "plots2" / "unified" / "syn_sst2" / "syn_sst2_syn_sst2_3" / "report.html").exists()


def test_best_lr_selection_and_table(ia2_world):
    from actlab.ia2.plots import collect, format_table, load_results, summary_rows

    w = ia2_world
    if not (w["outputs"] / "evaluations").exists():
        run_cli(
            [
                "evaluate",
                "--model_types",
                "act",
                "--icl_max_demos",
                "3",
                "--uncertainty_analysis",
                "--num_eval_examples",
                "12",
                "--model_id",
                str(w["model_dir"]),
                *_common(w),
            ]
        )
    docs = load_results(w["outputs"], uncertainty=True)
    exp = collect(docs, "syn_sst2", "syn_sst2", "syn_sst2", 3, uncertainty=True)
    # the chosen act lr has the higher mean without-ICL accuracy of the two
    means = {}
    for d in docs:
        if d["config"]["model_type"] == "act":
            means.setdefault(d["config"]["trained"]["lr"], []).append(d["without_icl_accuracy"])
    best = max(means, key=lambda k: (sum(means[k]) / len(means[k]), len(means[k])))
    assert float(exp.chosen["act"][4]["lr"]) == best
    assert len(exp.entries["act"][4]) == 2
    table = format_table(summary_rows(exp))
    assert "IA2" in table and "±" in table and "ECE" in table


def test_bad_input_one_line_exit_2(ia2_world, tmp_path, capsys):
    w = ia2_world
    cases = [
        (
            ["evaluate", "--model_types", "tna", "--trained_datasets", "syn_sst2", *_common(w)],
            ["model_types=tna", "trained_datasets=syn_sst2", "existing:"],
        ),
        (["evaluate", "--model_types", "act", "--lrs", "0.5", *_common(w)], ["lrs=0.5", "act/syn_sst2"]),
        (
            [
                "evaluate",
                "--model_types",
                "tok",
                "--eval_datasets",
                "syn_agnews",
                "--model_id",
                str(w["model_dir"]),
                *_common(w),
            ],
            ["syn_agnews", "not prepared", "actlab data prepare"],
        ),
        (
            [
                "evaluate",
                "--model_types",
                "base",
                "--trained_datasets",
                "syn_sst2",
                "--icl_max_demos",
                "500",
                "--num_examples",
                "4",
                "--model_id",
                str(w["model_dir"]),
                "--outputs_dir",
                str(tmp_path / "o"),
                "--data_dir",
                str(w["data"]),
            ],
            ["icl_max_demos 500", "remaining"],
        ),
        (
            ["plot", "--trained_dataset", "syn_sst2", "--outputs_dir", str(tmp_path / "empty")],
            ["no evaluation results"],
        ),
        (["plot-all", "--outputs_dir", str(tmp_path / "empty")], ["no evaluation results"]),
        (["evaluate", "--model_types", "sft", *_common(w)], ["unknown model type 'sft'"]),
    ]
    for argv, needles in cases:
        assert run_cli(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1, err
        for n in needles:
            assert n in err, (n, err)
    assert not Path(tmp_path / "o" / "evaluations").exists() or not any((tmp_path / "o").rglob("*.json"))


def test_hyperparameter_insights_plot(ia2_world):
    """Every lr tried is a point of the sensitivity plot; the ringed (chosen) one has the highest mean."""
    from actlab.ia2.plots import collect, hyperparameter_rows, load_results, plot_experiment

    w = ia2_world
    if not (w["outputs"] / "evaluations").exists():
        run_cli(
            [
                "evaluate",
                "--model_types",
                "act",
                "--icl_max_demos",
                "3",
                "--uncertainty_analysis",
                "--num_eval_examples",
                "12",
                "--model_id",
                str(w["model_dir"]),
                *_common(w),
            ]
        )
    docs = load_results(w["outputs"], uncertainty=True)
    exp = collect(docs, "syn_sst2", "syn_sst2", "syn_sst2", 3, uncertainty=True)
    rows = [r for r in hyperparameter_rows(exp) if r["method"] == "act"]
    lrs = {d["config"]["trained"]["lr"] for d in docs if d["config"]["model_type"] == "act"}
    assert len(lrs) == 2 and {float(r["hp"]["lr"]) for r in rows} == lrs
    assert sum(r["chosen"] for r in rows) == 1 and all(r["ci"].n == 2 for r in rows)
    chosen = next(r for r in rows if r["chosen"])
    assert chosen["ci"].mean == max(r["ci"].mean for r in rows)
    paths = plot_experiment(exp, w["root"] / "plots_hp")
    hp = [p for p in paths if p.name == "micro_hyperparameters.png"]
    assert hp and hp[0].stat().st_size > 500
