"""The copy-capable decoder's pieces: repeat documents, restarted position ids, the copy probe and the build gate."""

import random
import re
from types import SimpleNamespace

import pytest
import torch

from actlab.core.errors import ActlabError
from actlab.data import world
from actlab.zoo import evaluate
from actlab.zoo.corpus import restart_position_ids


def _world_tok():
    from actlab.core.testing import micro_tokenizer

    rng = random.Random(0)
    words = set()
    for _ in range(300):
        words |= set(re.findall(r"\w+", world.passage(rng, None, world.fresh_profile(rng))))
    words |= set(world.PERSONS)
    return micro_tokenizer(extra_words=tuple(sorted(words)))


class Copier(torch.nn.Module):
    """Predicts the token that followed the earlier position with the longest matching context (an ideal induction
    head): it copies whatever it has seen, and knows nothing else (uniform otherwise)."""

    def __init__(self, vocab: int):
        super().__init__()
        self.vocab = vocab
        self.w = torch.nn.Parameter(torch.zeros(1))

    def forward(self, input_ids, position_ids=None, **kw):
        ids = input_ids[0].tolist()
        logits = torch.zeros((1, len(ids), self.vocab))
        for t in range(len(ids)):
            best, where = 0, None
            for s in range(t - 1, -1, -1):
                k = 0
                while k < 8 and s - k >= 0 and ids[s - k] == ids[t - k]:
                    k += 1
                if k > best:
                    best, where = k, s
            if where is not None and where + 1 < len(ids):
                logits[0, t, ids[where + 1]] = 12.0
        return SimpleNamespace(logits=logits)


class Unigram(Copier):
    """Knows the token frequencies of its inputs' world, copies nothing."""

    def forward(self, input_ids, position_ids=None, **kw):
        return SimpleNamespace(logits=torch.zeros((1, input_ids.shape[1], self.vocab)))


def test_repeat_documents_and_restarted_position_ids():
    tok = _world_tok()
    doc = world.passage_repeat(random.Random(1), restart=True)
    first, second = doc.split(world.RESTART)
    assert first == second and world.passage_facts(first)["name"][0] in world.PERSONS
    ids = torch.tensor([tok(doc)["input_ids"]])
    assert int((ids == tok.bos_token_id).sum()) == 2  # "<s>" in the text is the BOS token
    pos = restart_position_ids(ids, torch.ones_like(ids), tok.bos_token_id)[0].tolist()
    n = len(tok(first, add_special_tokens=False)["input_ids"])
    assert pos == list(range(n + 1)) * 2  # the copy sits at the original's position ids (BOS at 0)
    w = world.word_repeat(random.Random(2), restart=True).split(world.RESTART)
    assert w[0] == w[1] and 8 <= len(w[0].split()) <= 20 and set(w[0].split()) <= set(world.COPY_WORDS)
    # fresh attributes: the same person gets other attributes in other documents
    docs = [world.passage_repeat(random.Random(s), person="Ben") for s in range(30)]
    assert len({world.passage_facts(d)["job"][0] for d in docs}) > 3
    # no copy document states a fixed profile... and the zoo's own generators are untouched
    assert not set(world.COPY_GENERATORS) & set(world.DOC_GENERATORS)
    with pytest.raises(ActlabError, match="passage_repeat"):
        world.generator("passage_repeats")


def test_copy_probe_tells_a_copier_from_a_non_copier():
    tok = _world_tok()
    good = evaluate.copy_probe(Copier(len(tok)), tok, n=6)
    bad = evaluate.copy_probe(Unigram(len(tok)), tok, n=6)
    for layout in ("newline", "restart"):
        g, b = good[layout], bad[layout]
        assert g["second_attr_nll"] < 0.01 and g["first_attr_nll"] > 2.0  # copied vs unknowable
        assert b["second_attr_nll"] == pytest.approx(b["first_attr_nll"])  # uniform: nothing changes
        assert g["second_nll"] < 0.1 * g["first_nll"]
    assert good["passed"] and not bad["passed"]
    assert evaluate.copy_gate(Copier(len(tok)), tok)["copy_probe"]["passed"]
    with pytest.raises(ActlabError, match="copy probe"):
        evaluate.copy_gate(Unigram(len(tok)), tok)
    assert evaluate.run_gates("tiny", Unigram(len(tok)), tok) == {}  # entries without a gate
