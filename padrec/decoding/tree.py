"""Token trees: many draft continuations verified in one target forward.

A call's tokens are laid out as a tree by their parents: parents[t] is the index (in the same call)
of the token before t on its path, or -1 where t follows the row's last cached token. A plain
sequence is the chain parents[t] = t - 1. Token t then sits at position start + depths[t] (its
ancestors in the call) and attends to the cached tokens, its ancestors and itself: siblings share
a position and never see each other, so every branch is scored as if it were the only one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TreeLayout:
    """What a target forward needs to score a batch of token trees (rows padded to one length T)."""

    depths: np.ndarray  # [B, T] int64: ancestors of each token in the call
    ancestors: np.ndarray  # [B, T, T] bool: ancestors[b, t, u] = u is t or one of its ancestors

    @classmethod
    def from_parents(cls, parents: np.ndarray) -> "TreeLayout":
        """The layout of parents [B, T] (padding: any parent, e.g. -1: it sees only itself)."""
        B, T = parents.shape
        if ((parents >= np.arange(T)[None, :]) & (parents >= 0)).any():
            raise ValueError("a token's parent must come before it in the call")
        ancestors = np.broadcast_to(np.eye(T, dtype=bool), (B, T, T)).copy()
        depths = np.zeros((B, T), dtype=np.int64)
        for t in range(T):  # parents come first, so their rows are complete when t reads them
            rows = np.flatnonzero(parents[:, t] >= 0)
            parent = parents[rows, t]
            ancestors[rows, t] |= ancestors[rows, parent]
            depths[rows, t] = depths[rows, parent] + 1
        return cls(depths, ancestors)


def chain_parents(length: int) -> np.ndarray:
    """The parents of a plain sequence of `length` tokens: each follows the one before."""
    return np.arange(length, dtype=np.int64) - 1


def path_to(parents: np.ndarray, node: int) -> list[int]:
    """Indices from the root down to `node` (inclusive) along `parents`."""
    path = []
    while node >= 0:
        path.append(node)
        node = int(parents[node])
    return path[::-1]


@dataclass(frozen=True)
class DraftTreeStep:
    """Where one draft step's new tree nodes sit (`padrec.decoding.draft_tree`): their draft positions
    and the cached entries each may see. A node's own entry is written after the cache view, one slot
    per node wherever its branch is, so `visible` names the row's real pairs and the node's
    ancestors; the node also sees itself, never its siblings."""

    positions: np.ndarray  # [B, T] int64: each node's draft position (its depth after the row's pairs)
    visible: np.ndarray  # [B, T, S] bool: the cache entries (view of S = the longest start) each node sees
