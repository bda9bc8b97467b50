"""The catalogue trie: no invalid or repeated item can ever be generated."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from padrec.decoding.constraints import ItemTrie, ListConstraint
from padrec.semantic_ids import SEP, SemanticIds, disambiguate


def small_catalogue(n_items=40, seed=0, use_separator=True) -> SemanticIds:
    rng = np.random.default_rng(seed)
    codes = disambiguate(rng.integers(0, [4, 3, 2], size=(n_items, 3)))
    return SemanticIds(codes, [4, 3, 2, int(codes[:, -1].max()) + 1], use_separator)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n_banned=st.integers(0, 10),
    use_separator=st.booleans(),
)
def test_any_walk_through_allowed_tokens_yields_new_valid_items(seed, n_banned, use_separator):
    sids = small_catalogue(use_separator=use_separator)
    trie = ItemTrie(sids)
    rng = np.random.default_rng(seed)
    banned = rng.choice(sids.num_items, size=n_banned, replace=False).tolist()
    c = ListConstraint(trie, banned)
    tokens = []
    while not c.exhausted():
        allowed = c.allowed()
        assert len(allowed) > 0  # never a dead end
        token = int(rng.choice(allowed))
        tokens.append(token)
        c.advance(token)
    # every item was generated exactly once, except the banned ones
    assert sorted(c.items) == sorted(set(range(sids.num_items)) - set(banned))
    item_tokens = [t for t in tokens if t != SEP]
    assert [sids.decode_item(item_tokens[i : i + 4]) for i in range(0, len(item_tokens), 4)] == c.items
    if use_separator:
        assert tokens.count(SEP) == len(c.items) - 1 or tokens.count(SEP) == len(c.items)


def test_separator_is_forced_and_other_tokens_rejected():
    sids = small_catalogue()
    c = ListConstraint(ItemTrie(sids))
    for t in sids.item_tokens[0]:
        c.advance(int(t))
    assert c.items == [0]
    assert c.allowed().tolist() == [SEP]
    with pytest.raises(ValueError, match="separator"):
        c.advance(int(sids.item_tokens[1][0]))


def test_invalid_continuation_is_rejected():
    sids = small_catalogue()
    c = ListConstraint(ItemTrie(sids))
    with pytest.raises(ValueError, match="not a valid continuation"):
        c.advance(int(sids.item_tokens[0][1]))  # a level-1 token at level 0


def test_copy_is_independent():
    sids = small_catalogue()
    c = ListConstraint(ItemTrie(sids))
    d = c.copy()
    for t in sids.item_tokens[3]:
        d.advance(int(t))
    assert d.items == [3] and c.items == [] and c.banned_under == {}


def test_prefix_with_all_items_banned_is_not_allowed():
    # items 0 and 1 share the prefix (0, 0, 0); banning both removes first token 0 if nothing else starts with it
    codes = np.array([[0, 0, 0, 0], [0, 0, 0, 1], [1, 0, 0, 0]])
    sids = SemanticIds(codes, [2, 1, 1, 2])
    trie = ItemTrie(sids)
    assert sorted(ListConstraint(trie).allowed().tolist()) == [3, 4]
    assert ListConstraint(trie, [0, 1]).allowed().tolist() == [4]
    c = ListConstraint(trie, [0])
    for t in (3, 5, 6):
        c.advance(t)
    assert c.allowed().tolist() == [8]  # only item 1's last code remains under this prefix


def scanned_allowed(c: ListConstraint) -> list[int]:
    """The definition allowed() caches: the children with some leaf below them not banned."""
    if c.awaiting_separator:
        return [SEP]
    trie = c.trie
    first, count = int(trie.first_child[c.node]), int(trie.num_children[c.node])
    return [int(trie.node_token[n]) for n in range(first, first + count)
            if trie.leaves_under[n] > c.banned_under.get(n, 0)]


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), n_banned=st.integers(0, 30))
def test_cached_allowed_tokens_equal_a_scan_of_the_bans(seed, n_banned):
    sids = small_catalogue()
    trie = ItemTrie(sids)
    rng = np.random.default_rng(seed)
    c = ListConstraint(trie, rng.choice(sids.num_items, size=n_banned, replace=False).tolist())
    copies = []
    while not c.exhausted():
        allowed = c.allowed()
        assert allowed.tolist() == scanned_allowed(c) and not allowed.flags.writeable
        if rng.random() < 0.2:  # a copy walks on its own from here; both stay exact
            copies.append(c.copy())
        c.advance(int(rng.choice(allowed)))
    for d in copies:
        while not d.exhausted():
            assert d.allowed().tolist() == scanned_allowed(d)
            d.advance(int(d.allowed()[-1]))


def test_trie_child_finds_the_node_a_token_leads_into():
    sids = small_catalogue()
    trie = ItemTrie(sids)
    item = sids.item_tokens[5].tolist()
    node = 0
    for level, token in enumerate(item):
        node = trie.child(node, token)
        assert node == trie.item_path[5, level]
    assert trie.child(0, int(sids.item_tokens[0][1])) is None  # a level-1 token at the root
    assert trie.child(node, 3) is None  # a leaf has no children


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), n_banned=st.integers(0, 20))
def test_prior_is_minus_beta_log_items_below_each_allowed_token(seed, n_banned):
    sids = small_catalogue()
    rows = sids.item_tokens.tolist()
    rng = np.random.default_rng(seed)
    banned = rng.choice(sids.num_items, size=n_banned, replace=False)
    c = ListConstraint(ItemTrie(sids, prefix_size_penalty=0.7), banned)
    plain = ListConstraint(ItemTrie(sids), banned)
    prefix: list[int] = []  # code tokens of the current item so far
    while not c.exhausted():
        allowed, prior = c.allowed(), c.prior()
        assert plain.prior() is None  # no penalty, no prior
        if c.awaiting_separator:
            assert prior is None
        else:
            # items below each allowed token's prefix, counted in the catalogue (bans aside)
            below = [sum(row[: len(prefix) + 1] == prefix + [t] for row in rows) for t in allowed.tolist()]
            np.testing.assert_allclose(prior, -0.7 * np.log(below), rtol=1e-6)
        token = int(rng.choice(allowed))
        item = c.advance(token)
        plain.advance(token)
        prefix = [] if item is not None or token == SEP else prefix + [token]


def test_negative_penalty_is_rejected():
    with pytest.raises(ValueError, match="prefix_size_penalty"):
        ItemTrie(small_catalogue(), prefix_size_penalty=-0.1)
