"""The list decoder's plain path: batched, cached, shortcut decoding equals naive recomputation."""

import numpy as np
import pytest
import torch

from padrec.config import ModelConfig
from padrec.decoding.constraints import ItemTrie, ListConstraint
from padrec.decoding.engine import ListDecoder
from padrec.decoding.interfaces import DecodeRequest, InvalidRequest
from padrec.decoding.sampling import choose_token
from padrec.decoding.torch_target import TorchTarget
from padrec.models.target import Target
from padrec.semantic_ids import BOS, SemanticIds, disambiguate

CONFIG = ModelConfig(d_model=32, n_layers=2, n_heads=2, d_ff=64, max_seq_len=128)


@pytest.fixture(scope="module")
def setup():
    rng = np.random.default_rng(0)
    codes = disambiguate(rng.integers(0, [6, 4, 3], size=(60, 3)))
    sids = SemanticIds(codes, [6, 4, 3, int(codes[:, -1].max()) + 1])
    torch.manual_seed(0)
    model = Target(CONFIG, sids.vocab_size).eval()
    return sids, ItemTrie(sids), model


@torch.inference_mode()
def naive_greedy(model, trie, history, top_n):
    """Recompute the whole context for every token; no cache, no batching, no shortcut."""
    context = [BOS] + trie.sids.encode_items(history)
    c = ListConstraint(trie, history)
    while len(c.items) < top_n:
        items = torch.from_numpy(trie.sids.item_marks(context))[None] if model.item_embed is not None else None
        logits = model(torch.tensor([context]), items=items).logits[0, -1].numpy()
        token, _ = choose_token(logits, c.allowed(), 0.0, 1.0, None, c.prior())
        context.append(token)
        c.advance(token)
    return c.items


@pytest.mark.parametrize("penalty", [0.0, 0.8])
def test_batched_cached_decoding_equals_naive_greedy(setup, penalty):
    sids, _, model = setup
    trie = ItemTrie(sids, penalty)
    rng = np.random.default_rng(1)
    histories = [rng.choice(60, size=int(n), replace=False).tolist() for n in rng.integers(1, 8, size=6)]
    decoder = ListDecoder(trie, TorchTarget(model, 8), CONFIG.max_seq_len)
    # cache rows out of order and not starting at 0: rows are addresses, nothing more
    results = decoder.generate([DecodeRequest(tuple(h), top_n=5) for h in histories], [7, 2, 5, 0, 3, 1])
    for h, r in zip(histories, results):
        assert r.items == naive_greedy(model, trie, h, 5)
        assert not set(r.items) & set(h)
        assert r.stats.chosen_tokens + r.stats.forced_tokens == len(r.tokens)
        assert r.stats.target_calls == r.stats.chosen_tokens  # plain decoding: one choice per forward
        assert len(r.scores) == 5 and all(s <= 0 for s in r.scores)


def test_sampling_is_seeded_and_valid(setup):
    sids, trie, model = setup
    decoder = ListDecoder(trie, TorchTarget(model, 1), CONFIG.max_seq_len)
    req = DecodeRequest((1, 2, 3), top_n=8, temperature=1.0, top_p=0.9, seed=11)
    a = decoder.generate([req], [0])[0].items
    assert a == decoder.generate([req], [0])[0].items
    others = {tuple(decoder.generate([DecodeRequest((1, 2, 3), top_n=8, temperature=1.0, seed=s)], [0])[0].items)
              for s in range(5)}
    assert len(others) > 1
    assert len(set(a)) == 8 and not set(a) & {1, 2, 3}


@pytest.mark.parametrize(
    "request_kwargs, message",
    [
        ({"history": ()}, "history is empty"),
        ({"history": (1, 999)}, "unknown item"),
        ({"history": (1,), "top_n": 0}, "top_n"),
        ({"history": (1,), "top_n": 51}, "top_n"),
        ({"history": (1,), "num_draft_tokens": 3}, "draft"),
        ({"history": (1,), "temperature": -1.0}, "temperature"),
        ({"history": tuple(range(30)), "top_n": 10}, "positions"),
    ],
)
def test_invalid_requests_are_named(setup, request_kwargs, message):
    sids, trie, model = setup
    decoder = ListDecoder(trie, TorchTarget(model, 1), CONFIG.max_seq_len)
    with pytest.raises(InvalidRequest, match=message):
        decoder.generate([DecodeRequest(**request_kwargs)], [0])


def test_list_stops_when_catalogue_is_exhausted(setup):
    sids, trie, _ = setup
    config = ModelConfig(d_model=32, n_layers=1, n_heads=2, d_ff=64, max_seq_len=336)
    model = Target(config, sids.vocab_size).eval()
    decoder = ListDecoder(trie, TorchTarget(model, 1), config.max_seq_len)
    history = tuple(range(55))
    result = decoder.generate([DecodeRequest(history, top_n=10)], [0])[0]
    assert sorted(result.items) == [55, 56, 57, 58, 59]


def test_items_are_announced_as_decided_and_cancellation_ends_a_row_early(setup):
    sids, trie, model = setup
    decoder = ListDecoder(trie, TorchTarget(model, 2), CONFIG.max_seq_len)
    heard: list[tuple[int, int, float]] = []
    requests = [DecodeRequest((1, 2, 3), top_n=6), DecodeRequest((4, 5), top_n=6)]

    def cancelled(i: int) -> bool:  # request 1 gives up once it has two items
        return i == 1 and sum(1 for index, _, _ in heard if index == 1) >= 2

    def on_item(i, result):
        heard.append((i, result.items[-1], result.scores[-1]))
        assert result.stats.target_calls >= 1  # running totals

    full, cut = decoder.generate(requests, [0, 1], on_item=on_item, cancelled=cancelled)
    assert [(item, score) for i, item, score in heard if i == 0] == list(zip(full.items, full.scores))
    assert [(item, score) for i, item, score in heard if i == 1] == list(zip(cut.items, cut.scores))
    assert not full.cancelled and len(full.items) == 6
    # cancellation is noticed between rounds: a round may finish one more item
    assert cut.cancelled and 2 <= len(cut.items) < 6
    alone = decoder.generate([requests[1]], [1])[0]
    assert cut.items == alone.items[: len(cut.items)]  # the early end changed nothing before it
