import pytest


@pytest.fixture(scope="session")
def micro_dir(tmp_path_factory, micro_tok, micro_llama):
    """The micro Llama + tokenizer saved as a local model directory (what `actlab.core.models.load` reads)."""
    d = tmp_path_factory.mktemp("micro_llama")
    micro_llama.save_pretrained(d)
    micro_tok.save_pretrained(d)
    return str(d)


@pytest.fixture(scope="session")
def micro_dir_b(tmp_path_factory, micro_tok):
    """Another micro Llama with the same tokenizer (a different reference model)."""
    from actlab.core.testing import micro_model

    d = tmp_path_factory.mktemp("micro_llama_b")
    micro_model("llama", micro_tok, seed=7).save_pretrained(d)
    micro_tok.save_pretrained(d)
    return str(d)


@pytest.fixture(scope="session")
def micro_dir_other_vocab(tmp_path_factory):
    """A micro Llama with a larger vocabulary (cache from another model)."""
    from actlab.core.testing import micro_model, micro_tokenizer

    tok = micro_tokenizer(extra_words=("zebra", "yak", "quokka"))
    d = tmp_path_factory.mktemp("micro_llama_v")
    micro_model("llama", tok, seed=3).save_pretrained(d)
    tok.save_pretrained(d)
    return str(d)
