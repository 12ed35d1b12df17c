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
