"""The architecture matrix is marked ``arch``: ``pytest -m arch`` runs all of it; otherwise (``make test``) only its
fast subset runs (``matrix.FAST``, marked ``arch(fast=True)``)."""

import pytest


def pytest_collection_modifyitems(config, items):
    if "arch" in (config.getoption("markexpr") or ""):
        return
    keep, drop = [], []
    for item in items:
        mark = item.get_closest_marker("arch")
        (drop if mark is not None and not mark.kwargs.get("fast") else keep).append(item)
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
