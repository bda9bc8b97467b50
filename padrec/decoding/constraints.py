"""Catalogue constraints for list generation.

`ItemTrie` is a prefix tree over every item's code tokens, so only existing items can be generated.
`ListConstraint` walks it for one list: it knows which tokens may come next given the tokens so far,
bans items already in the list (and, optionally, the user's history), and forces the separator.
A prefix stays allowed only while some item below it is not banned, so generation can never walk
into a dead end. With a prefix-size penalty (`DecodeConfig.prefix_size_penalty`) it also gives each
allowed token a prior, added to the model's log-probabilities wherever a token is chosen.
"""

from __future__ import annotations

import numpy as np

from padrec.config import DecodeConfig
from padrec.semantic_ids import PAD, SEP, SemanticIds


class ItemTrie:
    """Nodes are numbered level by level from the root (0), each level in the order of its prefixes,
    so the children of a node are one contiguous range sorted by token; a leaf at depth L is an item.

    Worked example, items (3, 7) and (3, 8) and (4, 7) of two levels: the root is 0, the first
    level's nodes 1 (prefix 3) and 2 (prefix 4), the second level's 3 (3, 7), 4 (3, 8), 5 (4, 7);
    node 1's children are nodes 3..4 (first_child 3, num_children 2).

    `prefix_size_penalty` beta gives every node the prior -beta * log(items below it) (the catalogue's
    items, bans aside: a fixed table, the same for every list and for the draft graph).
    """

    def __init__(self, sids: SemanticIds, prefix_size_penalty: float = DecodeConfig.prefix_size_penalty):
        if prefix_size_penalty < 0:
            raise ValueError(f"prefix_size_penalty must be >= 0, got {prefix_size_penalty}")
        self.sids = sids
        self.prefix_size_penalty = prefix_size_penalty
        tokens = sids.item_tokens  # [N, L]
        paths = np.zeros(tokens.shape, dtype=np.int64)
        node_token, parent, depth = [np.array([PAD])], [np.array([0])], [np.array([0])]
        offset = 1
        for level in range(sids.num_levels):
            # unique prefixes come sorted, so siblings are adjacent and in token order
            prefixes, first_item, inverse = np.unique(tokens[:, : level + 1], axis=0, return_index=True,
                                                      return_inverse=True)
            paths[:, level] = offset + inverse.reshape(-1)
            node_token.append(prefixes[:, -1])
            parent.append(paths[first_item, level - 1] if level else np.zeros(len(prefixes), dtype=np.int64))
            depth.append(np.full(len(prefixes), level + 1))
            offset += len(prefixes)
        self.item_path = paths  # [N, L] node reached after each of the item's tokens
        self.node_token = np.concatenate(node_token)  # [nodes] token leading into each node (PAD: root)
        self.node_token.setflags(write=False)  # child_tokens hands out views of it
        self.node_depth = np.concatenate(depth)  # [nodes]
        self.parent = np.concatenate(parent)  # [nodes] (the root's: 0)
        self.num_children = np.bincount(self.parent[1:], minlength=offset)  # [nodes]; parents are non-decreasing
        first = 1 + np.searchsorted(self.parent[1:], np.arange(offset))
        self.first_child = np.where(self.num_children > 0, first, 0)  # [nodes] (0 for leaves: no range)
        self.leaves_under = np.zeros(offset, dtype=np.int64)
        np.add.at(self.leaves_under, paths.reshape(-1), 1)
        self.leaves_under[0] = sids.num_items
        self.item_of_leaf = {int(leaf): item for item, leaf in enumerate(paths[:, -1])}
        self.node_prior = (-prefix_size_penalty * np.log(self.leaves_under)).astype(np.float32)  # [nodes]
        self.node_prior.setflags(write=False)
        # the same tables as Python ints: what the per-token walk reads (numpy scalars cost more)
        self._first, self._count = self.first_child.tolist(), self.num_children.tolist()
        self._parent, self._leaves = self.parent.tolist(), self.leaves_under.tolist()

    @property
    def num_nodes(self) -> int:
        return len(self.node_token)

    def child_tokens(self, node: int) -> np.ndarray:
        """The tokens leading into the children of `node`, in token order (a read-only view)."""
        first = self._first[node]
        return self.node_token[first : first + self._count[node]]

    def child(self, node: int, token: int) -> int | None:
        """The child of `node` that `token` leads into, None if there is none."""
        tokens = self.child_tokens(node)
        i = int(tokens.searchsorted(token))
        return self._first[node] + i if i < len(tokens) and tokens[i] == token else None


class ListConstraint:
    """Which tokens may follow, for one generated list. Cheap to copy for speculation.

    A node's allowed tokens are its children's, less the children whose every leaf is banned. Bans
    only ever close children, so a node with no closed child allows the trie's own (shared,
    read-only) token range, and the few nodes with closed children keep their reduced array in
    `pruned`, updated when an item is banned: allowed() is a lookup, never a scan of the bans.
    """

    def __init__(self, trie: ItemTrie, banned_items=()):
        self.trie = trie
        self.node = 0  # trie node inside the current item; 0 at an item boundary
        self.depth = 0  # code tokens of the current item consumed so far
        self.awaiting_separator = False
        self.banned_under: dict[int, int] = {}  # node -> banned leaves below it
        self.pruned: dict[int, np.ndarray] = {}  # node -> its allowed tokens, where a child is closed
        self.banned_items: list[int] = []  # what banned_under counts: the banned history, then `items`
        self.items: list[int] = []  # completed items, in order
        for item in set(int(i) for i in banned_items):
            self._ban(item)

    def copy(self) -> "ListConstraint":
        other = object.__new__(ListConstraint)
        other.trie, other.node, other.depth = self.trie, self.node, self.depth
        other.awaiting_separator = self.awaiting_separator
        other.banned_under = dict(self.banned_under)
        other.pruned = dict(self.pruned)  # the arrays are never changed in place: shared
        other.banned_items = list(self.banned_items)
        other.items = list(self.items)
        return other

    def _ban(self, item: int) -> None:
        self.banned_items.append(item)
        trie = self.trie
        for node in self.trie.item_path[item].tolist():
            count = self.banned_under.get(node, 0) + 1
            self.banned_under[node] = count
            if count == trie._leaves[node]:  # every leaf below is banned: close the node
                parent = trie._parent[node]
                left = self.pruned.get(parent, trie.child_tokens(parent))
                self.pruned[parent] = _read_only(left[left != trie.node_token[node]])
        self.banned_under[0] = self.banned_under.get(0, 0) + 1

    def allowed(self) -> np.ndarray:
        """Token ids that may come next, in token order (never empty while any item is left; a
        read-only array)."""
        if self.awaiting_separator:
            return _SEPARATOR_ONLY
        pruned = self.pruned.get(self.node)
        return self.trie.child_tokens(self.node) if pruned is None else pruned

    def prior(self) -> np.ndarray | None:
        """The prior of each token allowed() returns, in the same order (a read-only array), or None
        where there is none to add: the trie has no prefix-size penalty, or the separator is due."""
        trie = self.trie
        if trie.prefix_size_penalty == 0 or self.awaiting_separator:
            return None
        first, pruned = trie._first[self.node], self.pruned.get(self.node)
        if pruned is None:
            return trie.node_prior[first : first + trie._count[self.node]]
        return trie.node_prior[first + trie.child_tokens(self.node).searchsorted(pruned)]

    @property
    def slot(self) -> int:
        """The within-item slot of the next token: its code level, or num_levels for the separator."""
        return self.trie.sids.num_levels if self.awaiting_separator else self.depth

    def exhausted(self) -> bool:
        """True when every item is banned: no further item can be generated."""
        return self.banned_under.get(0, 0) >= self.trie.sids.num_items

    def advance(self, token: int) -> int | None:
        """Consume one token; returns the item it completes (its last code token), else None."""
        if self.awaiting_separator:
            if token != SEP:
                raise ValueError(f"token {token} where the separator must come")
            self.awaiting_separator = False
            return None
        child = self.trie.child(self.node, token)
        if child is None:
            raise ValueError(f"token {token} is not a valid continuation here")
        self.node = child
        self.depth += 1
        if self.depth < self.trie.sids.num_levels:
            return None
        item = self.trie.item_of_leaf[self.node]
        self._ban(item)
        self.items.append(item)
        self.node, self.depth = 0, 0
        self.awaiting_separator = self.trie.sids.use_separator
        return item


def _read_only(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)
    return array


_SEPARATOR_ONLY = _read_only(np.array([SEP], dtype=np.int64))


def mask_logits(logits: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """A copy of logits [V] with every token outside `allowed` set to -inf."""
    out = np.full_like(logits, -np.inf)
    out[allowed] = logits[allowed]
    return out
