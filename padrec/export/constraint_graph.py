"""`ListConstraint` as tensor operations with static shapes, so the draft graph walks the exact
catalogue constraints (trie and bans) while it proposes, as `TorchDraft` does.

State per row:
    node [B]                a trie node: inside an item, the node reached so far; 0 (the root)
                            between items; `sep_node` while the separator is due
    banned_nodes [B, NB*L]  the path nodes of every banned item (the excluded history, then each
                            completed item); `NO_NODE` for padding items
Tables come from `ItemTrie`, whose children are contiguous: the children of node n are
first_child[n] + j for j < num_children[n], so one gather of `max_children` entries finds them.
Two virtual nodes turn the separator into a trie step: `sep_node` has one child, reached by SEP,
whose children are the root's, so no step needs to know whether a separator is due.

A child is allowed when some leaf below it is not banned. Node ids are unique across depths, so
the banned leaves below child c are the banned paths that contain c; it can only be at c's depth,
so that one level of each path is compared. Worked example:
items 4 and 9 banned, paths (1, 7, 20) and (2, 11, 30): at the root, child 1 has one banned leaf
below it (item 4), child 2 one (item 9), child 3 none.

A row whose every item is banned has no allowed token: its list is complete, so the engine never
verifies what the draft proposes after that, and the state of such a row is left unspecified.
Costs per step and row: `max_children` x NB comparisons and a scatter into the vocabulary; the
tables take about 10 bytes per item and trie node (Beauty: 12,101 items, 29,435 nodes).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from padrec.decoding.constraints import ItemTrie
from padrec.semantic_ids import PAD, SEP

NO_NODE = -1  # the padding item's path: equal to no node


class GraphConstraint(nn.Module):
    """Allowed tokens and state updates of a batch of list constraints, in torch ops that export."""

    def __init__(self, trie: ItemTrie):
        super().__init__()
        sids = trie.sids
        self.num_items = sids.num_items
        self.num_levels = sids.num_levels
        self.vocab_size = sids.vocab_size
        self.sep_node = trie.num_nodes  # the separator is due; its one child (sep_node + 1) acts as the root
        self.after_item = self.sep_node if sids.use_separator else 0
        self.max_children = int(trie.num_children.max())
        leaf_item = np.full(trie.num_nodes, sids.num_items)  # padding item where no item ends
        leaf_item[trie.item_path[:, -1]] = np.arange(sids.num_items)
        tables = {
            "first_child": [*trie.first_child, self.sep_node + 1, trie.first_child[0]],
            "num_children": [*trie.num_children, 1, trie.num_children[0]],
            "node_token": [*trie.node_token, PAD, SEP],
            "node_depth": [*trie.node_depth, 0, 0],
            "leaves_under": [*trie.leaves_under, 1, 1],  # virtual nodes are never banned out
            "leaf_item": [*leaf_item, sids.num_items, sids.num_items],
            "item_path": np.vstack([trie.item_path, np.full((1, sids.num_levels), NO_NODE)]),  # [N + 1, L]
        }
        for name, table in tables.items():
            self.register_buffer(name, torch.from_numpy(np.asarray(table, dtype=np.int64)), persistent=False)
        # the trie's prefix-size prior (virtual nodes: 0); None without a penalty, so such graphs keep
        # no table and no op for it
        prior = np.append(trie.node_prior, [0.0, 0.0]).astype(np.float32) if trie.prefix_size_penalty > 0 else None
        self.register_buffer("node_prior", None if prior is None else torch.from_numpy(prior), persistent=False)

    def initial(self, node: torch.Tensor, awaiting_separator: torch.Tensor, banned: torch.Tensor):
        """The state of `ListConstraint`s given as their node, whether the separator is due, and
        banned items [B, NB] (padded with `num_items`)."""
        node = torch.where(awaiting_separator, torch.full_like(node, self.sep_node), node)
        return node, self.item_path[banned].flatten(1)

    def child_nodes(self, node: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Each row's child nodes [B, max_children] (the root where there are fewer), which of them
        exist, and their tokens."""
        j = torch.arange(self.max_children, device=node.device)
        valid = j[None, :] < self.num_children[node][:, None]
        children = torch.where(valid, self.first_child[node][:, None] + j[None, :], torch.zeros_like(j)[None, :])
        return children, valid, self.node_token[children]

    def allowed(self, banned_nodes: torch.Tensor, children: tuple[torch.Tensor, torch.Tensor, torch.Tensor]):
        """[B, V] bool: the tokens each row may take next."""
        nodes, valid, tokens = children
        # a row's children all sit at one depth, so only that level of each banned path can hold them:
        # compare with it alone, a 1/L of the comparisons (a virtual node's level-0 ids match nothing)
        B = nodes.shape[0]
        level = (self.node_depth[nodes[:, 0]] - 1).clamp(min=0)  # [B] the children's column of a path
        paths = banned_nodes.view(B, -1, self.num_levels)  # [B, NB, L]
        banned_level = paths.gather(2, level[:, None, None].expand(B, paths.shape[1], 1))[:, :, 0]  # [B, NB]
        # counted in float32 (exact below 2^24 items): ONNX Runtime's int64 ReduceSum is many times slower
        banned_below = (nodes[:, :, None] == banned_level[:, None, :]).float().sum(-1)  # [B, max_children]
        live = valid & (self.leaves_under[nodes].float() > banned_below)
        # children's tokens are distinct: the scatter writes each live one once; the rest write 0 at PAD
        index = torch.where(live, tokens, torch.full_like(tokens, PAD))
        return torch.zeros(nodes.shape[0], self.vocab_size, device=nodes.device).scatter(1, index, live.float()) > 0

    def prior(self, children: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> torch.Tensor | None:
        """[B, V] float: each child token's prior (0 elsewhere), what `ListConstraint.prior` gives
        the allowed tokens; None where the trie has no prior."""
        if self.node_prior is None:
            return None
        nodes, valid, tokens = children  # a missing child is the root, whose token is PAD
        prior = self.node_prior[nodes]
        return torch.zeros(nodes.shape[0], self.vocab_size, device=nodes.device).scatter(
            1, tokens, torch.where(valid, prior, 0.0))

    def advance(self, node: torch.Tensor, banned_nodes: torch.Tensor,
                children: tuple[torch.Tensor, torch.Tensor, torch.Tensor], token: torch.Tensor,
                active: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The state after each active row takes `token`, one of its allowed tokens (inactive rows
        keep theirs); banned_nodes gains L columns: the path of the item a row completed, or none."""
        nodes, valid, tokens = children
        match = valid & (tokens == token[:, None])  # one per row
        child = nodes.gather(1, match.float().argmax(-1, keepdim=True))[:, 0]
        completed = active & (self.node_depth[child] == self.num_levels)
        node = torch.where(completed, torch.full_like(node, self.after_item), torch.where(active, child, node))
        item = torch.where(completed, self.leaf_item[child], torch.full_like(child, self.num_items))
        return node, torch.cat([banned_nodes, self.item_path[item]], dim=1)
