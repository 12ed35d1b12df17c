"""Library code never prints: status lines go through module loggers (shown by the CLI on stderr), results are
returned and printed by ``actlab.cli``. An AST scan of ``src/actlab`` outside ``cli/``, so a print cannot come back."""

import ast
from pathlib import Path

import actlab

SRC = Path(actlab.__file__).parent

#: files that still print, each with its reason; an entry whose file no longer prints fails the test (remove it)
ALLOWED: dict[str, str] = {}


def prints(path: Path) -> list[str]:
    """``line: what`` for every use of ``print`` (a call, or passed on as ``log=print``) and of ``sys.stdout``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id == "print" and isinstance(node.ctx, ast.Load):
            out.append(f"{node.lineno}: print")
        elif (
            isinstance(node, ast.Attribute)
            and node.attr == "stdout"
            and isinstance(node.value, ast.Name)
            and node.value.id == "sys"
        ):
            out.append(f"{node.lineno}: sys.stdout")
    return sorted(out, key=lambda x: int(x.split(":")[0]))


def library_files() -> list[Path]:
    return sorted(p for p in SRC.rglob("*.py") if p.relative_to(SRC).parts[0] != "cli")


def test_the_scan_finds_print_calls_and_print_passed_as_a_value(tmp_path):
    p = tmp_path / "m.py"
    p.write_text("import sys\ndef f(log=print):\n    print('x')\n    sys.stdout.write('y')\n    log.info('z')\n")
    assert prints(p) == ["2: print", "3: print", "4: sys.stdout"]


def test_no_library_module_prints():
    files = library_files()
    assert len(files) > 50 and all("cli" not in p.relative_to(SRC).parts[:1] for p in files)
    found = {str(p.relative_to(SRC)): prints(p) for p in files}
    bad = {k: v for k, v in found.items() if v and k not in ALLOWED}
    assert not bad, f"library code prints (log through logging.getLogger(__name__); results go back to cli/): {bad}"
    stale = [k for k in ALLOWED if not found.get(k)]
    assert not stale, f"these files no longer print: remove them from ALLOWED: {stale}"


def test_log_lines_go_above_a_progress_bar_and_the_handlers_come_back(capsys, monkeypatch):
    import logging

    from actlab.core.logs import setup_logging
    from actlab.core.progress import bar_logging, progress

    monkeypatch.setenv("ACTLAB_QUIET", "0")
    setup_logging("info")
    ours = logging.getLogger("actlab")
    before = ours.handlers[:]
    bar = progress(total=2, desc="steps")
    with bar_logging():
        assert ours.handlers != before  # tqdm's handler in place of the plain stderr one
        logging.getLogger("actlab.some.module").info("resuming from step 3")
        logging.getLogger("actlab.some.module").warning("odd value")
        bar.update(1)
    bar.close()
    assert ours.handlers == before
    cap = capsys.readouterr()
    assert "resuming from step 3\n" in cap.err and "warning: odd value\n" in cap.err and cap.out == ""
    monkeypatch.setenv("ACTLAB_QUIET", "1")
    with bar_logging():  # no bar: nothing to redirect
        assert ours.handlers == before
