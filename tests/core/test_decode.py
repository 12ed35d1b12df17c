"""core's one token loop (actlab.core.decode): stop ids, padding of finished rows, sampling, and equality with
transformers' generate and with a decoder that recomputes the whole sequence every step (no KV cache)."""

import pytest
import torch

from actlab.core.decode import PlainStepper, decode, decode_loop, top_p_filter
from actlab.core.errors import ActlabError
from actlab.core.models import encode, generate, position_ids_from_mask
from actlab.core.testing import micro_model

PROMPTS = ["the cat is", "one two three four five", "alice has a red"]


class Table:
    """A stepper whose row r emits plan[r][t] at step t (one-hot scores); it records what it was fed."""

    def __init__(self, plan, vocab=10):
        self.plan, self.vocab, self.fed, self.t = plan, vocab, [], 0

    def _scores(self):
        s = torch.zeros(len(self.plan), self.vocab)
        for r, row in enumerate(self.plan):
            s[r, row[min(self.t, len(row) - 1)]] = 1.0
        return s

    def start(self):
        return self._scores()

    def next(self, tokens):
        self.fed.append(tokens.tolist())
        self.t += 1
        return self._scores()


def test_rows_stop_at_their_first_stop_id_and_finished_rows_are_fed_pad():
    st = Table([[3, 4, 9, 5, 5], [6, 7, 7, 7, 7]])
    timings = {}
    out = decode_loop(st, 5, stop_ids=[9], pad_id=0, timings=timings)
    assert out == [[3, 4], [6, 7, 7, 7, 7]]
    assert st.fed == [[3, 6], [4, 7], [9, 7], [0, 7]]  # row 0 is fed pad after its stop id; no forward after the last
    assert timings["decode_steps"] == 4 and timings["decode_tokens"] == 8 and timings["ttft_s"] >= 0


def test_the_loop_ends_when_every_row_has_stopped_and_takes_several_stop_ids():
    st = Table([[1, 8], [2, 9]])
    assert decode_loop(st, 10, stop_ids=[8, 9]) == [[1], [2]] and len(st.fed) == 1
    assert decode_loop(Table([[1, 8]]), 3) == [[1, 8, 8]]  # no stop ids: always max_new_tokens


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_bad_max_new_tokens(bad):
    with pytest.raises(ActlabError, match="max_new_tokens"):
        decode_loop(Table([[1]]), bad)


def test_top_p_keeps_the_smallest_set_reaching_the_mass():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    kept = torch.isfinite(top_p_filter(logits, 0.7))[0].tolist()
    assert kept == [True, True, False, False]
    assert torch.isfinite(top_p_filter(logits, 0.01))[0].tolist() == [True, False, False, False]


def _recompute(lm, tok, prompts, n, pick):
    """Reference decoder: the whole left-padded sequence is run again at every step (no cache)."""
    enc = encode(tok, prompts, side="left")
    ids, mask = enc["input_ids"], enc["attention_mask"]
    done = torch.zeros(len(prompts), dtype=torch.bool)
    new = []
    with torch.no_grad():
        for _ in range(n):
            logits = lm(input_ids=ids, attention_mask=mask, position_ids=position_ids_from_mask(mask)).logits[:, -1]
            nxt = torch.where(done, torch.full((len(prompts),), tok.pad_token_id), pick(logits.float()))
            new.append(nxt)
            done |= nxt == tok.eos_token_id
            ids = torch.cat([ids, nxt[:, None]], 1)
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], 1)
    rows = torch.stack(new, 1).tolist()
    return [r[: r.index(tok.eos_token_id)] if tok.eos_token_id in r else r for r in rows]


def test_greedy_equals_transformers_generate_and_a_cacheless_decoder(micro_tok):
    lm = micro_model("llama", micro_tok)
    ours = decode(PlainStepper(lm), micro_tok, PROMPTS, max_new_tokens=10, return_ids=True, batch_size=2)
    assert ours == generate(lm, micro_tok, PROMPTS, max_new_tokens=10, return_ids=True)
    assert ours == _recompute(lm, micro_tok, PROMPTS, 10, lambda s: s.argmax(-1))


def test_sampling_draws_like_a_cacheless_decoder_with_the_same_generator(micro_tok):
    lm = micro_model("llama", micro_tok)
    g = torch.Generator().manual_seed(5)

    def draw(scores):
        probs = torch.softmax(top_p_filter(scores / 0.8, 0.9), -1)
        return torch.multinomial(probs, 1, generator=g).squeeze(-1)

    ours = decode(
        PlainStepper(lm),
        micro_tok,
        PROMPTS,
        max_new_tokens=12,
        do_sample=True,
        temperature=0.8,
        top_p=0.9,
        seed=5,
        return_ids=True,
    )
    assert ours == _recompute(lm, micro_tok, PROMPTS, 12, draw)
    assert ours != decode(
        PlainStepper(lm),
        micro_tok,
        PROMPTS,
        max_new_tokens=12,
        do_sample=True,
        temperature=0.8,
        top_p=0.9,
        seed=6,
        return_ids=True,
    )
