"""``ia2 sweep --dry_run``: a finished run shows as ``skipped`` (what a real sweep would do), the rest ``pending``."""

from actlab.cli.main import main
from tests.ia2.test_train_cli import DS, _args, world  # noqa: F401 - the module fixture


def test_dry_run_shows_finished_runs_as_skipped(world, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "o"
    assert main(_args(world, out, "--training_method", "act", "--lr", "1e-3", "--run_idx", "0")) == 0
    capsys.readouterr()
    argv = [
        "ia2",
        "sweep",
        "--training_methods",
        "act",
        "--datasets",
        DS,
        "--num_train_examples",
        "4",
        "--lrs",
        "1e-3",
        "--run_indices",
        "0",
        "1",
        "--model_id",
        str(world / "llama"),
        "--data_dir",
        str(world / "data"),
        "--output_dir",
        str(out),
        "--max_steps",
        "2",
        "--dry_run",
    ]
    assert main(argv) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    status = {line.split()[1].rsplit("_", 1)[1]: line.split()[0] for line in lines}
    assert status == {"0": "skipped", "1": "pending"}, lines
    assert not (out / "act" / DS / "llama_qko_8_8_1_4_0.001_1").exists()  # a dry run writes nothing
    assert not (out / "sweep_summary.json").exists()
    # another config recorded in the finished run: the dry run says so instead of "pending"
    assert main([*argv[:-1], "--max_steps", "3", "--dry_run"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("differs") and "max_steps" in lines[0], lines
