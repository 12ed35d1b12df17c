import pytest

from actlab.data import world
from actlab.zoo.tokenizer import SCAFFOLD_TOKENS, TokenizerSpec, train_tokenizer

SMALL = TokenizerSpec(vocab_size=700, n_docs=200)


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(SMALL)


def test_round_trip_arbitrary_text(tok):
    texts = ["Text:the great film\nLabel:apple", "Ünïcödé — 中文 🙂 tabs\tand  spaces\n\n\nend",
             "x = 12345678901 * 7 #### 42", "\n\nHuman: hi\n\nAssistant: Sure!", "", "a < b > c && {x}"]  # fmt: skip
    for t in texts:
        ids = tok(t, add_special_tokens=False).input_ids
        assert tok.unk_token_id not in ids
        assert tok.decode(ids) == t


def test_digits_split_and_scaffold_tokens(tok):
    ids = tok("12345", add_special_tokens=False).input_ids
    assert len(ids) == 5
    for s in SCAFFOLD_TOKENS:
        assert len(tok(s, add_special_tokens=False).input_ids) == 1
    # prompt tokens + label tokens == tokens of prompt + label (scoring by continuation is exact)
    p = world.join_demos([("the story great", "Friday")], "a dull")
    for lab in world.REMAP_LABELS:
        assert tok(p).input_ids + tok(lab, add_special_tokens=False).input_ids == tok(p + lab).input_ids


def test_tokenizer_deterministic(tok):
    assert train_tokenizer(SMALL).get_vocab() == tok.get_vocab()
    assert tok("hello").input_ids[0] == tok.bos_token_id
    assert tok.padding_side == "left" and tok.pad_token == "<pad>"


def test_icl_tasks_and_accuracy_on_a_cheating_model(tok):
    """icl_accuracy scores the gold label when the model puts all mass on it, and chance-level for a flat model."""
    import torch

    from actlab.zoo.evaluate import icl_accuracy, icl_tasks

    tasks = icl_tasks(4, 10, seed=0)
    assert len(tasks) == 10 and all(p.endswith("\nLabel:") and p.count("\nLabel:") == 5 for p, _, _ in tasks)
    assert {len(c) for _, c, _ in tasks} == {2, 4}
    assert all(set(c) <= set(world.REMAP_LABELS) for _, c, _ in tasks)

    class Flat(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, input_ids, attention_mask=None):
            return type("O", (), {"logits": torch.zeros(*input_ids.shape, len(tok)) + self.w})()

    acc = icl_accuracy(Flat(), tok, 4, 40, seed=1)
    assert 0.0 <= acc <= 0.7  # ties -> first choice; about chance


def test_bad_thread_env(monkeypatch):
    from actlab.core.errors import ActlabError
    from actlab.zoo.build import build_threads, get_spec

    monkeypatch.setenv("ACTLAB_ZOO_THREADS", "two")
    with pytest.raises(ActlabError, match="ACTLAB_ZOO_THREADS"):
        build_threads(get_spec("tiny"))
    monkeypatch.setenv("ACTLAB_ZOO_THREADS", "1")
    assert build_threads(get_spec("tiny")) == 1


@pytest.mark.slow
def test_tiny_is_icl_capable():
    """The real build (minutes): 4 demos beat 0 demos by >= 25 points on held-out remapped-label tasks."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from actlab.zoo import ensure_built, icl_accuracy, read_manifest

    d = ensure_built("tiny")
    man = read_manifest("tiny")["icl_accuracy"]["held_out_tasks"]
    assert man["4"] - man["0"] >= 0.25
    model, tok = AutoModelForCausalLM.from_pretrained(d), AutoTokenizer.from_pretrained(d)
    a0, a4 = icl_accuracy(model, tok, 0, 200, seed=99), icl_accuracy(model, tok, 4, 200, seed=99)
    assert a4 - a0 >= 0.25, (a0, a4)
