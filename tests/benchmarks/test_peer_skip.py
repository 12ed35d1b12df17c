"""A peer benchmark whose peer package is missing says so in one line and exits 0 (make test never needs them)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# runs a benchmark script with some top-level packages made unimportable
BLOCK = """
import runpy, sys
blocked = set(sys.argv[2].split(","))
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in blocked:
            raise ImportError(f"No module named {name!r} (blocked by the test)")
        return None
sys.meta_path.insert(0, Block())
script = sys.argv[1]
sys.argv = [script, *sys.argv[3:]]
sys.path.insert(0, str(__import__("pathlib").Path(script).parent))
runpy.run_path(script, run_name="__main__")
"""


def _run(script: str, blocked: str, *args: str):
    return subprocess.run(
        [sys.executable, "-c", BLOCK, str(ROOT / "benchmarks" / script), blocked, *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )


def test_icl_benchmark_skips_without_lm_eval():
    p = _run("peers_icl.py", "lm_eval")
    assert p.returncode == 0, p.stderr
    lines = [x for x in p.stdout.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("SKIP: lm-eval is not installed"), p.stdout


def test_iav_benchmark_skips_without_trl():
    p = _run("peers_iav.py", "trl")
    assert p.returncode == 0, p.stderr
    lines = [x for x in p.stdout.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("SKIP: trl is not installed"), p.stdout
