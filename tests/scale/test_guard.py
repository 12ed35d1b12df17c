"""Launches that would run N copies are refused: one line naming the verb, exit 2, nothing written.

Two cases: a verb that runs in one process (evaluation, data preparation, plots, demos) started with
``WORLD_SIZE`` > 1, and a multi-process verb whose processes do not form one group (each would train its own
copy into one run directory).
"""

import pytest

from actlab.cli.main import main
from tests.scale.conftest import one_line


def _refused(capsys, rc, *wanted):
    err = capsys.readouterr().err
    lines = [x for x in err.splitlines() if x.strip()]
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("actlab: error: "), err
    for w in wanted:
        assert w in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize(
    "argv,name",
    [
        (["data", "prepare", "--dataset", "syn_sst2", "--data_dir", "{out}"], "data prepare"),
        (["ia2", "evaluate"], "ia2 evaluate"),
        (["ia2", "plot-all"], "ia2 plot-all"),
        (["ia2", "analyze", "subspace-overlap"], "ia2 analyze subspace-overlap"),
        (["icae", "infer"], "icae infer"),
        (["iav", "demo"], "iav demo"),
        (["demo"], "demo"),
    ],
)
def test_one_process_verbs_refused_under_a_launcher(argv, name, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.chdir(tmp_path)
    rc = main([a.replace("{out}", str(out)) for a in argv])
    line = _refused(
        capsys, rc, f"error: {name} runs in one process", "launched on 2 (WORLD_SIZE=2)", "ia2 train", "iav train"
    )
    assert "accelerate launch" in line
    assert not any(tmp_path.iterdir())  # nothing written (no output, no $ACTLAB_HOME, nothing in the cwd)


def test_multiprocess_verbs_pass_the_guard(monkeypatch):
    from actlab.cli.common import multiprocess_verbs

    assert multiprocess_verbs() == [
        "zoo build",
        "ia2 train",
        "iav train",
        "xmodel extract",
        "xmodel align",
        "xmodel run-all",
        "icae pretrain",
        "icae finetune",
    ]


class _OneProcessGroup:
    """What accelerate's state is when the launcher's processes did not join one group (each alone)."""

    def __init__(self, cpu=False, **kw):
        self.num_processes, self.process_index, self.local_process_index = 1, 0, 0


@pytest.mark.parametrize(
    "argv",
    [
        ["iav", "train", "--model_name_or_path", "{model}", "--output_dir", "{out}", "--max_steps", "1"],
        [
            "ia2",
            "train",
            "--training_method",
            "act",
            "--dataset",
            "syn_sst2_remap",
            "--model_id",
            "{model}",
            "--data_dir",
            "{data}",
            "--num_train_examples",
            "8",
            "--output_dir",
            "{out}",
            "--max_steps",
            "1",
        ],
    ],
)
def test_n_copies_refused(argv, micro_dir, ia2_data, tmp_path, monkeypatch, capsys):
    import accelerate

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(accelerate, "PartialState", _OneProcessGroup)
    out = tmp_path / "out"
    rc = main(
        [a.replace("{model}", micro_dir).replace("{out}", str(out)).replace("{data}", str(ia2_data)) for a in argv]
    )
    _refused(
        capsys,
        rc,
        "the launcher started 2 processes (WORLD_SIZE=2) but they formed a group of 1",
        "each would train its own copy into one run directory",
        "--multi_gpu --num_processes 2",
    )
    assert not out.exists()


@pytest.mark.multiproc
def test_torchrun_one_process_verb(tmp_path, launch):
    """The real thing: two torchrun workers of `data prepare` each refuse in the same one line; nothing is written."""
    out = tmp_path / "data"
    r = launch("torchrun", 2, "data", "prepare", "--dataset", "syn_sst2", "--data_dir", out, timeout=120)
    lines = one_line(r.stderr)
    assert r.returncode != 0 and not out.exists(), r.stderr[-2000:]
    assert lines and set(lines) == {lines[0]} and len(lines) <= 2, r.stderr[-2000:]  # a rank may be stopped first
    assert lines[0].startswith("actlab: error: data prepare runs in one process, but it was launched on 2")
    assert "exitcode  : 2" in r.stderr  # torchrun's report: the worker exited 2
