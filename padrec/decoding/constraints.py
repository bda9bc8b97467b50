"""Catalogue constraints for list generation.

`ItemTrie` is a prefix tree over every item's code tokens, so only existing items can be generated.
`ListConstraint` walks it for one list: it knows which tokens may come next given the tokens so far,
bans items already in the list (and, optionally, the user's history), and forces the separator.
A prefix stays allowed only while some item below it is not banned, so generation can never walk
into a dead end.
"""

from __future__ import annotations

import numpy as np

from padrec.semantic_ids import PAD, SEP, SemanticIds


class ItemTrie:
    """Nodes are numbered level by level from the root (0), each level in the order of its prefixes,
    so the children of a node are one contiguous range sorted by token; a leaf at depth L is an item.

    Worked example, items (3, 7) and (3, 8) and (4, 7) of two levels: the root is 0, the first
    level's nodes 1 (prefix 3) and 2 (prefix 4), the second level's 3 (3, 7), 4 (3, 8), 5 (4, 7);
    node 1's children are nodes 3..4 (first_child 3, num_children 2).
    """

    def __init__(self, sids: SemanticIds):
        self.sids = sids
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
        self.node_depth = np.concatenate(depth)  # [nodes]
        parents = np.concatenate(parent)[1:]  # parent of nodes 1, 2, ...: non-decreasing
        self.num_children = np.bincount(parents, minlength=offset)  # [nodes]
        first = 1 + np.searchsorted(parents, np.arange(offset))
        self.first_child = np.where(self.num_children > 0, first, 0)  # [nodes] (0 for leaves: no range)
        self.leaves_under = np.zeros(offset, dtype=np.int64)
        np.add.at(self.leaves_under, paths.reshape(-1), 1)
        self.leaves_under[0] = sids.num_items
        self.item_of_leaf = {int(leaf): item for item, leaf in enumerate(paths[:, -1])}

    @property
    def num_nodes(self) -> int:
        return len(self.node_token)

    def children(self, node: int) -> tuple[np.ndarray, np.ndarray]:
        """The child nodes of `node` and the tokens leading into them, in token order."""
        first, count = self.first_child[node], self.num_children[node]
        return np.arange(first, first + count), self.node_token[first : first + count]


class ListConstraint:
    """Which tokens may follow, for one generated list. Cheap to copy for speculation."""

    def __init__(self, trie: ItemTrie, banned_items=()):
        self.trie = trie
        self.node = 0  # trie node inside the current item; 0 at an item boundary
        self.depth = 0  # code tokens of the current item consumed so far
        self.awaiting_separator = False
        self.banned_under: dict[int, int] = {}  # node -> banned leaves below it
        self.banned_items: list[int] = []  # what banned_under counts: the banned history, then `items`
        self.items: list[int] = []  # completed items, in order
        for item in set(int(i) for i in banned_items):
            self._ban(item)

    def copy(self) -> "ListConstraint":
        other = object.__new__(ListConstraint)
        other.trie, other.node, other.depth = self.trie, self.node, self.depth
        other.awaiting_separator = self.awaiting_separator
        other.banned_under = dict(self.banned_under)
        other.banned_items = list(self.banned_items)
        other.items = list(self.items)
        return other

    def _ban(self, item: int) -> None:
        self.banned_items.append(item)
        for node in self.trie.item_path[item].tolist() + [0]:
            self.banned_under[node] = self.banned_under.get(node, 0) + 1

    def allowed(self) -> np.ndarray:
        """Token ids that may come next (never empty while any item is left)."""
        if self.awaiting_separator:
            return np.array([SEP], dtype=np.int64)
        nodes, tokens = self.trie.children(self.node)
        if not self.banned_under:
            return tokens
        banned = np.fromiter((self.banned_under.get(n, 0) for n in nodes.tolist()), dtype=np.int64, count=len(nodes))
        return tokens[self.trie.leaves_under[nodes] > banned]

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
        nodes, tokens = self.trie.children(self.node)
        hit = np.nonzero(tokens == token)[0]
        if len(hit) == 0:
            raise ValueError(f"token {token} is not a valid continuation here")
        self.node = int(nodes[hit[0]])
        self.depth += 1
        if self.depth < self.trie.sids.num_levels:
            return None
        item = self.trie.item_of_leaf[self.node]
        self._ban(item)
        self.items.append(item)
        self.node, self.depth = 0, 0
        self.awaiting_separator = self.trie.sids.use_separator
        return item


def mask_logits(logits: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """A copy of logits [V] with every token outside `allowed` set to -inf."""
    out = np.full_like(logits, -np.inf)
    out[allowed] = logits[allowed]
    return out
