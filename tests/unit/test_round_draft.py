"""A draft round on the device (`RoundDraft`: the exported round run as torch modules) proposes
what the step-by-step draft proposes, and decoding with it stays lossless."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from padrec.config import DRAFTERS
from padrec.decoding.constraints import ItemTrie
from padrec.decoding.engine import ListDecoder
from padrec.decoding.interfaces import DecodeRequest, InvalidRequest
from padrec.decoding.round_draft import RoundDraft
from padrec.decoding.torch_draft import TorchDraft
from padrec.decoding.torch_target import TorchTarget
from test_speculative import CONFIG, assert_drawn_from, catalogue, exact_pair_distribution, models


def decode(trie, target, proposer, requests, rows=8, dtype=torch.float32):
    decoder = ListDecoder(trie, TorchTarget(target, rows, dtype=dtype), CONFIG.max_seq_len, proposer=proposer)
    return decoder.generate(requests, list(range(len(requests))))


def histories(seed, n=6, items=60):
    rng = np.random.default_rng(seed)
    return [tuple(rng.choice(items, size=int(k), replace=False).tolist()) for k in rng.integers(1, 8, size=n)]


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 1000), drafter=st.sampled_from(["eagle", "padrec"]), penalty=st.sampled_from([0.0, 0.5]),
       proposals=st.integers(1, 5), room=st.integers(1, 3))
def test_greedy_lists_with_a_round_on_the_device_equal_plain_greedy(seed, drafter, penalty, proposals, room):
    sids = catalogue(60, (6, 4, 3), seed)
    target, draft = models(sids, seed, drafter)
    trie = ItemTrie(sids, penalty)
    users = histories(seed)
    plain = decode(trie, target, None, [DecodeRequest(h, top_n=6) for h in users])
    ks = [0, 1, proposals, proposals, 1, proposals]  # rows of one batch ask for different numbers
    spec = decode(trie, target, RoundDraft(draft, trie, 8, proposals, room),
                  [DecodeRequest(h, top_n=6, num_draft_tokens=k) for h, k in zip(users, ks)])
    for a, b, k in zip(plain, spec, ks):
        assert a.items == b.items and a.tokens == b.tokens
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-4)
        assert b.stats.accepted <= b.stats.drafted and (k > 0 or b.stats.drafted == 0)
    assert sum(r.stats.accepted for r in spec) > 0


@pytest.mark.parametrize("drafter", ["eagle", "padrec"])
def test_a_round_with_room_for_every_forced_run_proposes_what_the_step_draft_proposes(drafter):
    sids = catalogue(60, (6, 4, 3), seed=4)
    target, draft = models(sids, 4, drafter)
    trie = ItemTrie(sids)
    requests = [DecodeRequest(h, top_n=6, num_draft_tokens=3) for h in histories(4)]
    # a room as long as an item: every forced run fits, so the round drafts whenever the step draft does
    stepwise = decode(trie, target, TorchDraft(draft, sids, 8), requests)
    rounds = decode(trie, target, RoundDraft(draft, trie, 8, 3, sids.tokens_per_item), requests)
    for a, b in zip(stepwise, rounds):
        assert a.tokens == b.tokens
        assert (a.stats.rounds, a.stats.drafted, a.stats.accepted) == (b.stats.rounds, b.stats.drafted, b.stats.accepted)
        assert a.stats.accepted_by_depth == b.stats.accepted_by_depth


def test_a_bf16_round_stays_lossless_against_bf16_plain():
    sids = catalogue(60, (6, 4, 3), seed=9)
    target, draft = models(sids, 9)
    trie = ItemTrie(sids)
    users = histories(9, n=4)
    plain = decode(trie, target, None, [DecodeRequest(h, top_n=5) for h in users], dtype=torch.bfloat16)
    spec = decode(trie, target, RoundDraft(draft, trie, 8, 3, 2, dtype=torch.bfloat16),
                  [DecodeRequest(h, top_n=5, num_draft_tokens=3) for h in users], dtype=torch.bfloat16)
    assert [r.items for r in plain] == [r.items for r in spec]
    assert sum(r.stats.accepted for r in spec) > 0


def test_a_round_draft_refuses_trees_and_more_tokens_than_it_proposes():
    sids = catalogue(20, (4, 3, 2))
    target, draft = models(sids, 0)
    trie = ItemTrie(sids)
    round_draft = RoundDraft(draft, trie, 2, 2, 1)
    for request in (DecodeRequest((0,), top_n=2, num_draft_tokens=3), DecodeRequest((0,), top_n=2, num_draft_tokens=2,
                                                                                      tree_width=2)):
        with pytest.raises(InvalidRequest):
            decode(trie, target, round_draft, [request], rows=2)


@pytest.mark.slow
def test_sampling_with_a_round_on_the_device_keeps_the_target_distribution():
    sids = catalogue(10, (3, 2, 2), seed=3)
    target, draft = models(sids, 5)
    history, temperature, n = (0,), 1.3, 2000
    exact = exact_pair_distribution(sids, target, history, temperature, 0.0)
    trie = ItemTrie(sids)
    proposer = RoundDraft(draft, trie, 250, 3, 2)
    counts = {}
    for first in range(0, n, 250):
        requests = [DecodeRequest(history, top_n=2, num_draft_tokens=3, temperature=temperature, seed=s)
                    for s in range(first, first + 250)]
        for r in decode(trie, target, proposer, requests, rows=250):
            counts[tuple(r.items)] = counts.get(tuple(r.items), 0) + 1
    assert_drawn_from(counts, exact, n)
