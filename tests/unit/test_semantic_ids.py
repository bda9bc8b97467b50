"""Semantic IDs: token layout, exact round trip, uniqueness, residual k-means."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from padrec.config import SemanticIdConfig
from padrec.semantic_ids import (
    BOS, NUM_SPECIAL, PAD, SEP, SemanticIds, build_semantic_ids, disambiguate, interaction_vectors, residual_kmeans,
)


def make_ids(n_items=50, levels=(8, 8, 4), seed=0, use_separator=True, shared_vocabulary=False):
    rng = np.random.default_rng(seed)
    codes = disambiguate(rng.integers(0, levels, size=(n_items, len(levels))))
    sizes = list(levels) + [int(codes[:, -1].max()) + 1]
    return SemanticIds(codes, sizes, use_separator, shared_vocabulary)


def test_layout_matches_the_worked_example():
    sids = SemanticIds(np.array([[5, 0, 255, 2], [0, 0, 0, 0]]), [256, 256, 256, 10])
    assert sids.vocab_size == 781
    assert sids.encode_item(0) == [8, 259, 770, 773, SEP]
    assert sids.slot_at(np.arange(12)).tolist() == [-1, 0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0]
    assert sids.num_slots == 5 and sids.tokens_per_item == 5


def test_shared_vocabulary_matches_the_worked_example():
    codes = np.array([[5, 0, 255, 2], [0, 0, 0, 0], [0, 5, 255, 2]])
    sids = SemanticIds(codes, [256, 256, 256, 10], shared_vocabulary=True)
    assert sids.vocab_size == 269
    assert sids.encode_item(0) == [8, 3, 258, 261, SEP]
    # the same token at different levels: only the position says which
    assert sids.encode_item(2) == [3, 8, 258, 261, SEP]
    assert sids.decode_items(sids.encode_items([2, 0, 1])) == [2, 0, 1]


def test_a_shared_vocabulary_needs_a_collision_level():
    with pytest.raises(ValueError, match="at least 2 levels"):
        SemanticIds(np.array([[1], [2]]), [4], shared_vocabulary=True)


@pytest.mark.parametrize("shared", [False, True])
def test_save_load_keeps_the_vocabulary_kind(tmp_path, shared):
    sids = make_ids(shared_vocabulary=shared)
    sids.save(tmp_path / "ids.npz")
    loaded = SemanticIds.load(tmp_path / "ids.npz")
    assert loaded.shared_vocabulary == shared and loaded.vocab_size == sids.vocab_size
    assert np.array_equal(loaded.item_tokens, sids.item_tokens)


def test_files_from_before_the_option_load_as_level_specific(tmp_path):
    sids = make_ids()
    np.savez_compressed(tmp_path / "old.npz", codes=sids.codes, level_sizes=np.asarray(sids.level_sizes),
                        use_separator=np.asarray(True), config=np.asarray("{}"))
    assert not SemanticIds.load(tmp_path / "old.npz").shared_vocabulary


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(0, 49), min_size=1, max_size=30), st.booleans(), st.booleans())
def test_encode_decode_round_trip(items, use_separator, shared):
    sids = make_ids(use_separator=use_separator, shared_vocabulary=shared)
    tokens = sids.encode_items(items)
    assert len(tokens) == len(items) * sids.tokens_per_item
    assert all(NUM_SPECIAL <= t < sids.vocab_size or t == SEP for t in tokens)
    assert sids.decode_items(tokens) == items


def test_disambiguate_makes_every_item_unique():
    codes = np.array([[1, 2], [1, 2], [3, 4], [1, 2]])
    out = disambiguate(codes)
    assert out[:, -1].tolist() == [0, 1, 0, 2]
    assert len({tuple(r) for r in out.tolist()}) == len(out)


def test_duplicate_ids_are_rejected():
    with pytest.raises(ValueError, match="not unique"):
        SemanticIds(np.array([[1, 2], [1, 2]]), [4, 4])


def test_save_load_round_trip(tmp_path):
    sids = make_ids()
    sids.save(tmp_path / "s.npz")
    loaded = SemanticIds.load(tmp_path / "s.npz")
    assert np.array_equal(loaded.codes, sids.codes) and loaded.level_sizes == sids.level_sizes


def test_residual_kmeans_separates_clusters_and_uses_the_codebook():
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(4, 16)) * 10
    x = np.concatenate([c + rng.normal(size=(50, 16)) for c in centers]).astype(np.float32)
    codes = residual_kmeans(x, levels=2, codebook_size=4, iterations=20, seed=0)
    assert codes.shape == (200, 2)
    # the first level recovers the four blobs: each blob maps to a single code
    for blob in range(4):
        assert len(set(codes[blob * 50 : (blob + 1) * 50, 0].tolist())) == 1
    assert len(set(codes[:, 0].tolist())) == 4


def test_interaction_vectors_put_co_consumed_items_together():
    # users 0-2 consume items 0-2, users 3-5 items 3-5; item 6 is never consumed
    sequences = [[0, 1, 2], [1, 2, 0], [2, 0], [3, 4, 5], [5, 4], [3, 5, 3]]
    vectors = interaction_vectors(sequences, num_items=7, dims=2, seed=0)
    similarity = vectors @ vectors.T
    assert vectors.shape == (7, 2)
    assert np.allclose(np.linalg.norm(vectors[:6], axis=1), 1.0, atol=1e-5)
    assert np.all(vectors[6] == 0)
    assert min(similarity[0, 1], similarity[1, 2], similarity[3, 4], similarity[4, 5]) > 0.9
    assert max(abs(similarity[0, 3]), abs(similarity[2, 5])) < 0.1


def test_interaction_vectors_are_reproducible_and_leave_torch_random_state_alone():
    import torch

    sequences = [[int(i) for i in np.random.default_rng(u).choice(30, size=5)] for u in range(40)]
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    a = interaction_vectors(sequences, num_items=30, dims=8, seed=0)
    assert torch.equal(torch.rand(3), expected_next)
    b = interaction_vectors(sequences, num_items=30, dims=8, seed=0)
    np.testing.assert_allclose(np.abs(a @ a.T), np.abs(b @ b.T), atol=1e-5)


def test_an_interaction_part_needs_the_training_sequences():
    with pytest.raises(ValueError, match="needs the training sequences"):
        build_semantic_ids(["an item"], None, SemanticIdConfig(interaction_weight=1.0), train_sequences=None)


def test_first_code_in_history_counts_next_items_whose_first_code_the_history_has():
    sids = SemanticIds(np.array([[0, 0], [0, 1], [1, 0], [2, 0]]), [3, 2])
    # item 1 shares item 0's first code; item 3's first code is nowhere in its history
    assert sids.first_code_in_history([([0], 1), ([0, 2], 3)]) == 0.5
    assert sids.first_code_in_history([]) == 0.0


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(0, 49), min_size=1, max_size=12), st.booleans(), st.booleans(), st.data())
def test_item_marks_of_a_slice_are_the_slice_of_the_marks(items, use_separator, shared, data):
    """What the served target's mark log relies on: marks read from positions, so a window that
    starts mid-sequence (at `start`) marks exactly what the whole sequence marks there, whatever the
    vocabulary; every whole item is marked once, at its last token."""
    sids = make_ids(use_separator=use_separator, shared_vocabulary=shared)
    tokens = np.array([BOS] + sids.encode_items(items))
    full = sids.item_marks(tokens)
    assert full[full > 0].tolist() == [i + 1 for i in items]
    start = data.draw(st.integers(0, len(tokens) - 1))
    back = max(0, start - sids.num_levels)
    window = sids.item_marks(tokens[back:], back)[start - back:]
    assert window.tolist() == full[start:].tolist()
