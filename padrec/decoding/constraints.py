"""Catalogue constraints for list generation.

`ItemTrie` is a prefix tree over every item's code tokens, so only existing items can be generated.
`ListConstraint` walks it for one list: it knows which tokens may come next given the tokens so far,
bans items already in the list (and, optionally, the user's history), and forces the separator.
A prefix stays allowed only while some item below it is not banned, so generation can never walk
into a dead end.
"""

from __future__ import annotations

import numpy as np

from padrec.semantic_ids import SEP, SemanticIds


class ItemTrie:
    """Nodes are numbered from the root (0); a leaf at depth L is an item."""

    def __init__(self, sids: SemanticIds):
        self.sids = sids
        children: list[dict[int, int]] = [{}]
        paths = np.zeros((sids.num_items, sids.num_levels), dtype=np.int64)
        for item, tokens in enumerate(sids.item_tokens.tolist()):
            node = 0
            for depth, token in enumerate(tokens):
                nxt = children[node].get(token)
                if nxt is None:
                    nxt = len(children)
                    children[node][token] = nxt
                    children.append({})
                node = nxt
                paths[item, depth] = node
        self.item_path = paths  # [N, L] node reached after each of the item's tokens
        self.child_tokens = [np.fromiter(c.keys(), dtype=np.int64, count=len(c)) for c in children]
        self.child_nodes = [np.fromiter(c.values(), dtype=np.int64, count=len(c)) for c in children]
        self.leaves_under = np.zeros(len(children), dtype=np.int64)
        np.add.at(self.leaves_under, paths.reshape(-1), 1)
        self.leaves_under[0] = sids.num_items
        self.item_of_leaf = {int(leaf): item for item, leaf in enumerate(paths[:, -1])}

    @property
    def num_nodes(self) -> int:
        return len(self.child_tokens)


class ListConstraint:
    """Which tokens may follow, for one generated list. Cheap to copy for speculation."""

    def __init__(self, trie: ItemTrie, banned_items=()):
        self.trie = trie
        self.node = 0  # trie node inside the current item; 0 at an item boundary
        self.depth = 0  # code tokens of the current item consumed so far
        self.awaiting_separator = False
        self.banned_under: dict[int, int] = {}  # node -> banned leaves below it
        self.items: list[int] = []  # completed items, in order
        for item in set(int(i) for i in banned_items):
            self._ban(item)

    def copy(self) -> "ListConstraint":
        other = object.__new__(ListConstraint)
        other.trie, other.node, other.depth = self.trie, self.node, self.depth
        other.awaiting_separator = self.awaiting_separator
        other.banned_under = dict(self.banned_under)
        other.items = list(self.items)
        return other

    def _ban(self, item: int) -> None:
        for node in self.trie.item_path[item].tolist() + [0]:
            self.banned_under[node] = self.banned_under.get(node, 0) + 1

    def allowed(self) -> np.ndarray:
        """Token ids that may come next (never empty while any item is left)."""
        if self.awaiting_separator:
            return np.array([SEP], dtype=np.int64)
        nodes = self.trie.child_nodes[self.node]
        if not self.banned_under:
            return self.trie.child_tokens[self.node]
        banned = np.fromiter((self.banned_under.get(n, 0) for n in nodes.tolist()), dtype=np.int64, count=len(nodes))
        return self.trie.child_tokens[self.node][self.trie.leaves_under[nodes] > banned]

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
        tokens = self.trie.child_tokens[self.node]
        hit = np.nonzero(tokens == token)[0]
        if len(hit) == 0:
            raise ValueError(f"token {token} is not a valid continuation here")
        self.node = int(self.trie.child_nodes[self.node][hit[0]])
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
