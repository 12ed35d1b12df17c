import os

import pytest
import torch

os.environ.setdefault("ACTLAB_QUIET", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(42)
    yield


@pytest.fixture(autouse=True)
def _actlab_home(tmp_path, monkeypatch):
    """Each test gets its own empty $ACTLAB_HOME (never the user's cache, never the zoo's full build)."""
    monkeypatch.setenv("ACTLAB_HOME", str(tmp_path / "actlab_home"))
    yield


@pytest.fixture(autouse=True)
def _logging_state():
    """A test that runs the CLI in-process (``main(argv)`` configures logging) leaves logging as it found it, so the
    next test's ``caplog`` sees actlab's records and no handler keeps a closed capture stream."""
    import logging

    root, ours = logging.getLogger(), logging.getLogger("actlab")
    saved = (root.handlers[:], root.level, ours.handlers[:], ours.level, ours.propagate)
    yield
    root.handlers[:], ours.handlers[:] = saved[0], saved[2]
    root.setLevel(saved[1])
    ours.setLevel(saved[3])
    ours.propagate = saved[4]


@pytest.fixture(scope="session")
def micro_tok():
    from actlab.core.testing import micro_tokenizer

    return micro_tokenizer()


@pytest.fixture(scope="session")
def micro_llama(micro_tok):
    from actlab.core.testing import micro_model

    return micro_model("llama", micro_tok)


@pytest.fixture(scope="session")
def micro_qwen3(micro_tok):
    from actlab.core.testing import micro_model

    return micro_model("qwen3", micro_tok)


@pytest.fixture(scope="session")
def micro_gpt2(micro_tok):
    from actlab.core.testing import micro_model

    return micro_model("gpt2", micro_tok)
