import subprocess
import sys

from actlab.cli.main import main
from actlab.core.errors import unknown_choice


def test_unknown_family_is_one_line_exit_2():
    r = subprocess.run([sys.executable, "-m", "actlab.cli.main", "bogus"], capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "invalid choice: 'bogus'" in r.stderr
    assert "Traceback" not in r.stderr


def test_help_lists_families(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    for fam in ("zoo", "data", "ia2", "iav", "xmodel", "icae", "demo"):
        assert fam in out


def test_unknown_choice_message():
    msg = str(unknown_choice("dataset", "sst", ["sst2", "agnews"]))
    assert msg == "unknown dataset 'sst' (did you mean 'sst2'?); valid: agnews, sst2"
