import torch

from actlab.icae.model import memory_position_ids, segment_plan

from .conftest import CONTEXTS


def test_worked_example_from_the_notes():
    # L = 510 context tokens at pids 1..510, k = 102 memory tokens (5x): r = 5 -> 3, 8, ..., 508
    pids = memory_position_ids(1, 510, 102)
    assert pids.tolist() == list(range(3, 509, 5))
    assert len(pids) == 102 and pids[0] == 3 and pids[1] == 8 and pids[-1] == 508


def test_second_chunk_and_uneven_ratio():
    # a second chunk at 511..1020 with 102 slots continues the pattern (global positions)
    assert memory_position_ids(511, 1020, 102).tolist() == list(range(513, 1019, 5))
    # r = 7/4: endpoints (1 + 0.375, 7 - 0.375) rounded
    assert memory_position_ids(1, 7, 4).tolist() == [1, 3, 5, 7]


def test_segment_plan():
    assert segment_plan(10, 4, 4) == [(0, 10, 3)]  # one segment, ceil(10/4) slots (adaptive)
    assert segment_plan(10, 4, 4, adaptive=False) == [(0, 10, 4)]
    assert segment_plan(40, 4, 4) == [(0, 14, 4), (14, 28, 4), (28, 40, 3)]  # ceil(40/16) = 3 segments of 14
    assert segment_plan(3, 4, 4) == [(0, 3, 1)]


def test_encoder_pids_of_memory_tokens(make_icae, micro_tok):
    epl = make_icae(use_position_identifiers=True)
    ids = epl.tokenize_contexts([CONTEXTS[2]])  # 20 tokens, m=4, r=2 -> 3 segments (7, 7, 6 tokens)
    mem = epl.compress(ids)
    want = torch.cat([memory_position_ids(1, 7, 4), memory_position_ids(8, 14, 4), memory_position_ids(15, 20, 3)])
    assert mem.pids[0].tolist() == want.tolist()
    dpl = make_icae(use_position_identifiers=False)
    mem = dpl.compress(ids)
    # default layout: segment-local [BOS] 0, text 1..n, memory n+1..n+k
    assert mem.pids[0].tolist() == [8, 9, 10, 11, 8, 9, 10, 11, 7, 8, 9]


def test_decoder_pids_ae_and_ft(make_icae, micro_tok):
    icae = make_icae(use_position_identifiers=True)
    ids = icae.tokenize_contexts([CONTEXTS[1]])  # 4 tokens -> 2 slots at pids round(1.5)=2, round(3.5)=4
    L = len(ids[0])
    mem = icae.compress(ids)
    tgt = ids[0]
    ae = icae.decoder_rows(mem, "AE", [[]], [tgt])
    # [BOS]@0, slots@their pids, [AE]@0, x1..xL @ 1..L
    assert ae.pids[0].tolist() == [0, *mem.pids[0].tolist(), 0, *range(1, L + 1)]
    prompt = micro_tok("where ?", add_special_tokens=False)["input_ids"]
    ft = icae.decoder_rows(mem, "FT", [prompt])
    # [FT] at L, the prompt at L+1, ...
    assert ft.pids[0].tolist() == [0, *mem.pids[0].tolist(), L, *range(L + 1, L + 1 + len(prompt))]
    # left padding keeps the explicit pids of each row
    both = icae.decoder_rows(icae.compress(icae.tokenize_contexts(CONTEXTS[:2])), "FT", [prompt, prompt])
    row1 = both.pids[1][both.mask[1].bool()].tolist()
    assert row1 == ft.pids[0].tolist()
