"""Beam search (`BeamDecoder`): exact top-K when the beams have room for every item, scoring from
copied cache rows equal to scoring in place, and its request checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from padrec.decoding.beam import BeamDecoder
from padrec.decoding.constraints import ItemTrie, ListConstraint
from padrec.decoding.interfaces import BeamRequest, InvalidRequest
from padrec.decoding.onnx_target import OnnxTarget
from padrec.decoding.sampling import constrained_log_probs
from padrec.decoding.torch_draft import TorchDraft
from padrec.decoding.torch_target import TorchTarget
from padrec.semantic_ids import BOS

HISTORIES = [[1, 5, 9], [2], [30, 4, 17, 8], [11, 12], [21, 0, 13]]


def brute_force_top(model, trie: ItemTrie, history: list[int], top_n: int) -> tuple[list[int], list[float]]:
    """Every item not in the history scored by one uncached forward over its codes: summed
    constrained log-probabilities, best first."""
    sids = trie.sids
    prompt = [BOS] + sids.encode_items(history)
    scored = []
    for item in range(sids.num_items):
        if item in history:
            continue
        codes = sids.item_tokens[item].tolist()
        tokens = prompt + codes[:-1]
        items = torch.tensor(sids.item_marks(tokens)[None]) if model.item_embed is not None else None
        with torch.no_grad():
            logits = model(torch.tensor([tokens]), items=items).logits[0].numpy()
        constraint, total = ListConstraint(trie, history), 0.0
        for level, code in enumerate(codes):
            allowed = constraint.allowed()
            total += float(constrained_log_probs(logits[len(prompt) - 1 + level], allowed)[list(allowed).index(code)])
            constraint.advance(code)
        scored.append((total, item))
    scored.sort(key=lambda s: -s[0])
    return [i for _, i in scored[:top_n]], [s for s, _ in scored[:top_n]]


def test_beams_with_room_for_every_item_give_the_exact_top_k(exported_tiny):
    e = exported_tiny
    width = 64  # > the catalogue's items (60 at most): no beam is ever cut, so the search is exhaustive
    decoder = BeamDecoder(e.trie, TorchTarget(e.target, width * len(HISTORIES), e.trie.sids),
                          e.target.config.max_seq_len, max_beam_width=width)
    requests = [BeamRequest(tuple(h), top_n=10, beam_width=width) for h in HISTORIES]
    rows = [list(range(u * width, (u + 1) * width)) for u in range(len(HISTORIES))]
    for history, result in zip(HISTORIES, decoder.generate(requests, rows)):
        items, scores = brute_force_top(e.target.eval(), e.trie, history, 10)
        assert result.items == items
        np.testing.assert_allclose(result.scores, scores, atol=1e-4)
        assert not set(result.items) & set(history)
        assert result.stats.target_calls == e.trie.sids.num_levels  # prefill + one per level but the last


def test_a_batch_of_requests_equals_each_request_alone(exported_tiny):
    e = exported_tiny
    width = 6
    target = TorchTarget(e.target, width * len(HISTORIES), e.trie.sids)
    decoder = BeamDecoder(e.trie, target, e.target.config.max_seq_len)
    requests = [BeamRequest(tuple(h), top_n=4, beam_width=width) for h in HISTORIES]
    # rows interleaved across requests and out of order: the search must not care which rows it gets
    rows = [list(range(u, width * len(HISTORIES), len(HISTORIES)))[::-1] for u in range(len(HISTORIES))]
    batched = decoder.generate(requests, rows)
    for request, together in zip(requests, batched):
        alone = decoder.generate([request], [list(range(width))])[0]
        assert together.items == alone.items
        np.testing.assert_allclose(together.scores, alone.scores, atol=1e-5)


@pytest.mark.parametrize("host", ["torch", "onnx"])
def test_scoring_rows_copied_from_others_equals_scoring_them_in_place(exported_tiny, host):
    e = exported_tiny
    sids = e.trie.sids
    if host == "torch":
        target = TorchTarget(e.target, 4, sids)
    else:
        target = OnnxTarget(e.repository / "target" / "1" / "model.onnx", 4, sids=sids)
    prompts = [[BOS] + sids.encode_items([3, 7]) + [sids.item_tokens[5][0]],
               [BOS] + sids.encode_items([8, 1]) + [sids.item_tokens[2][0]]]
    length = len(prompts[0])
    target.score(np.array([0, 1]), np.zeros(2, dtype=np.int64), np.array(prompts), np.full(2, length))
    # rows 0 and 1 swap their caches and each takes one more token; row 3 copies row 0
    new = np.array([[sids.item_tokens[5][1]], [sids.item_tokens[2][1]], [sids.item_tokens[5][1]]])
    copied = target.score(np.array([1, 0, 3]), np.full(3, length), new, np.ones(3, dtype=np.int64),
                          sources=np.array([0, 1, 0])).logits[:, 0]
    fresh = TorchTarget(e.target, 2, sids) if host == "torch" else OnnxTarget(
        e.repository / "target" / "1" / "model.onnx", 2, sids=sids)
    whole = np.array([p + [n[0]] for p, n in zip(prompts, new[:2])])
    expected = fresh.score(np.array([0, 1]), np.zeros(2, dtype=np.int64), whole, np.full(2, length + 1)).logits[:, -1]
    np.testing.assert_allclose(copied, expected[[0, 1, 0]], atol=1e-4)


def test_bad_beam_requests_name_the_problem(exported_tiny):
    e = exported_tiny
    decoder = BeamDecoder(e.trie, TorchTarget(e.target, 8, e.trie.sids), e.target.config.max_seq_len, max_beam_width=8)
    for request, message in [(BeamRequest((1,), top_n=5, beam_width=4), r"top_n must be in 1..beam_width \(4\)"),
                             (BeamRequest((1,), top_n=1, beam_width=9), "beam_width must be in 1..8, got 9"),
                             (BeamRequest((1,), top_n=1, beam_width=0), "beam_width must be in 1..8, got 0"),
                             (BeamRequest((), top_n=1, beam_width=2), "history is empty"),
                             (BeamRequest((1, 999), top_n=1, beam_width=2), "unknown item indices"),
                             (BeamRequest((1,) * 40, top_n=1, beam_width=2), "positions; the model has")]:
        with pytest.raises(InvalidRequest, match=message):
            decoder.validate(request)
    with pytest.raises(ValueError, match="needs 4 cache rows, got 2"):
        decoder.generate([BeamRequest((1,), top_n=2, beam_width=4)], [[0, 1]])


@pytest.mark.parametrize("width,draft_width", [(1, 1), (4, 2), (6, 6), (8, 16)])
def test_speculative_beam_equals_plain_beam(exported_tiny, width, draft_width):
    """The tiny draft is untrained, so its trees miss most beams: every fallback path runs. A batch
    mixes plain and speculative requests; each must equal plain search alone."""
    e = exported_tiny
    rows = 64 * len(HISTORIES)
    decoder = BeamDecoder(e.trie, TorchTarget(e.target, rows, e.trie.sids), e.target.config.max_seq_len,
                          max_beam_width=8, draft=TorchDraft(e.draft, e.trie.sids, rows), max_draft_width=16)
    requests = [BeamRequest(tuple(h), top_n=min(3, width), beam_width=width, draft_width=draft_width * (u % 3 != 1))
                for u, h in enumerate(HISTORIES)]
    needed = [decoder.rows_needed(r) for r in requests]
    offsets = np.cumsum([0] + needed)
    batched = decoder.generate(requests, [list(range(a, b))[::-1] for a, b in zip(offsets[:-1], offsets[1:])])
    for request, together in zip(requests, batched):
        plain = BeamRequest(request.history, request.top_n, request.beam_width)
        alone = decoder.generate([plain], [list(range(width))])[0]
        assert together.items == alone.items
        np.testing.assert_allclose(together.scores, alone.scores, atol=1e-5)
        if request.draft_width:
            assert together.stats.drafted > 0
        else:
            assert together.stats.drafted == 0 and together.stats.target_calls == alone.stats.target_calls


def test_speculative_beam_with_room_for_every_item_is_exact(exported_tiny):
    """A draft tree as wide as the catalogue holds every prefix: the tree's one forward scores all
    levels (no fallback), and the result is the exhaustive top-K."""
    e = exported_tiny
    width = 64
    decoder = BeamDecoder(e.trie, TorchTarget(e.target, 64 * 3, e.trie.sids), e.target.config.max_seq_len,
                          max_beam_width=width, draft=TorchDraft(e.draft, e.trie.sids, 64 * 3), max_draft_width=64)
    for history in HISTORIES[:2]:
        request = BeamRequest(tuple(history), top_n=10, beam_width=width, draft_width=64)
        result = decoder.generate([request], [list(range(decoder.rows_needed(request)))])[0]
        items, scores = brute_force_top(e.target.eval(), e.trie, history, 10)
        assert result.items == items
        np.testing.assert_allclose(result.scores, scores, atol=1e-4)
        assert result.stats.target_calls == 2  # prefill + the tree
        assert result.stats.accepted == e.trie.sids.num_levels - 2


def test_draft_width_is_checked(exported_tiny):
    e = exported_tiny
    plain = BeamDecoder(e.trie, TorchTarget(e.target, 8, e.trie.sids), e.target.config.max_seq_len, max_beam_width=8)
    with pytest.raises(InvalidRequest, match=r"draft_width must be in 0..0, got 2 \(this decoder has no draft\)"):
        plain.validate(BeamRequest((1,), top_n=1, beam_width=2, draft_width=2))
    drafting = BeamDecoder(e.trie, TorchTarget(e.target, 8, e.trie.sids), e.target.config.max_seq_len,
                           max_beam_width=8, draft=TorchDraft(e.draft, e.trie.sids, 8), max_draft_width=4)
    with pytest.raises(InvalidRequest, match="draft_width must be in 0..4, got 5"):
        drafting.validate(BeamRequest((1,), top_n=1, beam_width=2, draft_width=5))
    assert drafting.rows_needed(BeamRequest((1,), beam_width=4, draft_width=3)) == 4 + 3 * (e.trie.sids.num_levels - 2)


@pytest.mark.parametrize("width,draft_width", [(1, 0), (4, 0), (6, 0), (4, 2), (6, 6), (8, 16)])
def test_one_row_beams_equal_beams_in_rows(exported_tiny, width, draft_width):
    """The one-row layout (every prefix a node of a token tree after the prompt, in the request's one
    row) changes how the scores are computed, not the search: a batch mixing plain and speculative
    requests gives each the items, scores and forwards of the search with a row per beam."""
    e = exported_tiny
    max_len, rows = e.target.config.max_seq_len, 64 * len(HISTORIES)
    in_rows = BeamDecoder(e.trie, TorchTarget(e.target, rows, e.trie.sids), max_len, max_beam_width=8)
    one_row = BeamDecoder(e.trie, TorchTarget(e.target, rows, e.trie.sids), max_len, max_beam_width=8,
                          draft=TorchDraft(e.draft, e.trie.sids, rows), max_draft_width=16, one_row=True)
    requests = [BeamRequest(tuple(h), top_n=min(3, width), beam_width=width, draft_width=draft_width * (u % 2))
                for u, h in enumerate(HISTORIES)]
    needed = [one_row.rows_needed(r) for r in requests]
    assert needed == [1 if not r.draft_width else max(width, r.draft_width) for r in requests]
    offsets = np.cumsum([0] + needed)
    batched = one_row.generate(requests, [list(range(a, b))[::-1] for a, b in zip(offsets[:-1], offsets[1:])])
    for request, result in zip(requests, batched):
        alone = in_rows.generate([BeamRequest(request.history, request.top_n, width)], [list(range(width))])[0]
        assert result.items == alone.items
        np.testing.assert_allclose(result.scores, alone.scores, atol=1e-5)
        if not request.draft_width:
            assert result.stats.target_calls == alone.stats.target_calls


def test_one_row_requests_are_checked_for_the_positions_their_trees_take(exported_tiny):
    e = exported_tiny
    one_row = BeamDecoder(e.trie, TorchTarget(e.target, 8, e.trie.sids), e.target.config.max_seq_len,
                          max_beam_width=32, one_row=True)
    levels, per_item = e.trie.sids.num_levels, e.trie.sids.tokens_per_item
    # the last scored level's tree: every beam's path of levels - 1 codes, after the prompt
    fits = (e.target.config.max_seq_len - 1 - 32 * (levels - 1)) // per_item
    one_row.validate(BeamRequest((1,) * fits, top_n=1, beam_width=32))
    with pytest.raises(InvalidRequest, match="positions; the model has"):
        one_row.validate(BeamRequest((1,) * (fits + 1), top_n=1, beam_width=32))
