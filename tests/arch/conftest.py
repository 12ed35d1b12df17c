"""The architecture matrix: the fast subset (``matrix.FAST``) runs in ``make test``; the full matrix is marked
``arch`` and runs only when the marker expression names it (``pytest -m arch``)."""

import pytest


def pytest_collection_modifyitems(config, items):
    if "arch" in (config.getoption("markexpr") or ""):
        return
    keep, drop = [], []
    for item in items:
        (drop if item.get_closest_marker("arch") else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture(scope="session")
def arch_root(tmp_path_factory):
    """One directory for the matrix's prepared data, saved micro models and runs (shared by its tests)."""
    return tmp_path_factory.mktemp("arch_matrix")


@pytest.fixture(scope="session")
def arch_memo():
    """Results of every check, keyed ``(arch, check)``: the docs-table test reuses what the matrix tests ran."""
    return {}


@pytest.fixture(scope="session")
def arch_tok():
    from tests.arch.matrix import tokenizer

    return tokenizer()
