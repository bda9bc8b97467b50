"""Static-shape calls (what CUDA graphs replay on a GPU) change no list: on the CPU the padded calls
run eagerly, so padding, scratch rows and whole-capacity cache reads are checked here."""

import dataclasses

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from padrec.decoding.constraints import ItemTrie
from padrec.decoding.cuda_graphs import GraphedCalls, bucket, padded
from padrec.decoding.engine import ListDecoder
from padrec.decoding.interfaces import DecodeRequest
from padrec.decoding.round_draft import RoundDraft
from padrec.decoding.torch_draft import TorchDraft
from padrec.decoding.torch_target import TorchTarget
from padrec.models.target import Target
from test_round_draft import histories
from test_speculative import CONFIG, catalogue, models


def test_buckets_are_the_next_powers_of_two_and_padding_keeps_the_corner():
    assert [bucket(n) for n in (1, 2, 3, 4, 5, 9, 16, 17)] == [1, 2, 4, 4, 8, 16, 16, 32]
    out = padded(np.array([[1, 2], [3, 4]]), (3, 4), -1)
    assert out.tolist() == [[1, 2, -1, -1], [3, 4, -1, -1], [-1, -1, -1, -1]]


def test_off_a_gpu_the_calls_run_eagerly_and_capture_nothing():
    calls = GraphedCalls(lambda x: (x + 1,), torch.device("cpu"))
    assert calls((1,), x=torch.ones(2))[0].tolist() == [2.0, 2.0] and calls.captured == 0


def decode(trie, target, proposer, requests, rows=8, graphs=False):
    decoder = ListDecoder(trie, TorchTarget(target, rows, trie.sids, graphs=graphs), target.config.max_seq_len,
                          proposer=proposer)
    return decoder.generate(requests, list(range(len(requests))))


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 1000), drafter=st.sampled_from(["eagle", "padrec"]), penalty=st.sampled_from([0.0, 0.5]),
       rounds=st.booleans())
def test_static_calls_decode_the_lists_of_plain_greedy(seed, drafter, penalty, rounds):
    sids = catalogue(60, (6, 4, 3), seed)
    target, draft = models(sids, seed, drafter)
    trie = ItemTrie(sids, penalty)
    users = histories(seed, n=5)  # a batch of 5 pads to 8: three scratch rows
    plain = decode(trie, target, None, [DecodeRequest(h, top_n=6) for h in users])
    graphed_plain = decode(trie, target, None, [DecodeRequest(h, top_n=6) for h in users], graphs=True)
    proposer = RoundDraft(draft, trie, 8, 3, 2, graphs=True) if rounds else TorchDraft(draft, sids, 8)
    ks = [0, 3, 1, 3, 2]
    spec = decode(trie, target, proposer, [DecodeRequest(h, top_n=6, num_draft_tokens=k) for h, k in zip(users, ks)],
                  graphs=True)
    for a, b, c in zip(plain, graphed_plain, spec):
        assert a.tokens == b.tokens == c.tokens
        np.testing.assert_allclose(a.scores, c.scores, atol=1e-4)
    assert sum(r.stats.accepted for r in spec) > 0


def test_a_static_call_scores_as_the_dynamic_one():
    sids = catalogue(60, (6, 4, 3), seed=2)
    target, _ = models(sids, 2)
    dynamic, static = TorchTarget(target, 4), TorchTarget(target, 4, graphs=True)
    rng = np.random.default_rng(0)
    start = np.zeros(3, dtype=np.int64)
    for T in (7, 3, 5, 1):  # prefill, then calls of several lengths, each padded to its bucket
        tokens = rng.integers(0, sids.vocab_size, size=(3, T))
        lengths = np.array([T, T - 1 if T > 1 else 1, T])
        a = dynamic.score(np.array([2, 0, 1]), start, tokens, lengths)
        b = static.score(np.array([2, 0, 1]), start, tokens, lengths)
        assert b.logits.shape == a.logits.shape
        np.testing.assert_allclose(a.logits, b.logits, atol=1e-5)
        np.testing.assert_allclose(a.hidden, b.hidden, atol=1e-5)
        start = start + lengths


def test_an_item_embedding_target_decodes_the_same_with_static_calls():
    sids = catalogue(60, (6, 4, 3), seed=5)
    torch.manual_seed(5)
    target = Target(dataclasses.replace(CONFIG, item_embedding=True), sids.vocab_size, sids.num_items).eval()
    trie = ItemTrie(sids)
    requests = [DecodeRequest(h, top_n=5) for h in histories(5, n=3)]
    assert ([r.tokens for r in decode(trie, target, None, requests)] ==
            [r.tokens for r in decode(trie, target, None, requests, graphs=True)])


def test_a_static_call_that_would_overrun_the_cache_is_refused():
    sids = catalogue(20, (4, 3, 2))
    target, _ = models(sids, 0)
    static = TorchTarget(target, 2, graphs=True)
    capacity = static.cache.k.shape[3]
    with pytest.raises(ValueError, match="KV cache full"):
        static.score(np.array([0]), np.array([capacity - 2]), np.zeros((1, 3), dtype=np.int64), np.array([3]))
