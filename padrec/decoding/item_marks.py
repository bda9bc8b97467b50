"""The item marks an item-embedding target reads beside its tokens, for hosts that feed it a few
new tokens per call: a separator's mark names the item whose codes came before it, possibly in
earlier calls, so the host keeps each cache row's tokens (rolled back by the same start pointer
as the cache)."""

from __future__ import annotations

import numpy as np
import torch

from padrec.decoding.tree import TreeLayout
from padrec.models.target import KVCache
from padrec.semantic_ids import SemanticIds


class ItemMarkLog:
    """Each cache row's tokens so far, and the marks (`SemanticIds.item_marks`) of new ones."""

    def __init__(self, sids: SemanticIds, rows: int, capacity: int):
        self.sids = sids
        self.tokens = np.zeros((rows, capacity), dtype=np.int64)

    @classmethod
    def for_host(cls, embeds_items: bool, sids: SemanticIds | None, rows: int, capacity: int,
                 target: str) -> "ItemMarkLog | None":
        """The log a target host needs: None for a target without item embeddings; an error naming
        `target` when one with them comes without the catalogue's semantic IDs."""
        if not embeds_items:
            return None
        if sids is None:
            raise ValueError(f"{target} embeds items: its host needs the semantic IDs (sids) to mark them")
        return cls(sids, rows, capacity)

    def copy(self, sources: np.ndarray, rows: np.ndarray, length: int) -> None:
        """Each of `rows` takes the first `length` tokens of its row in `sources` (as `KVCache.copy`)."""
        self.tokens[rows, :length] = self.tokens[sources, :length]

    def marks(self, rows: np.ndarray, start: np.ndarray, tokens: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """[B, T] marks of tokens[b, :lengths[b]] written at start[b] of row rows[b] (0 beyond)."""
        out = np.zeros(tokens.shape, dtype=np.int64)
        back = self.sids.num_levels  # an item's codes: all a mark looks back at
        for b, (row, s, n) in enumerate(zip(rows.tolist(), start.tolist(), lengths.tolist())):
            self.tokens[row, s : s + n] = tokens[b, :n]
            lo = max(0, s - back)
            out[b, :n] = self.sids.item_marks(self.tokens[row, lo : s + n], lo)[s - lo :]
        return out


    def tree_marks(self, rows: np.ndarray, start: np.ndarray, tokens: np.ndarray, tree: TreeLayout) -> np.ndarray:
        """[B, T] marks of a token tree scored after start[b] of row rows[b]: each token's mark as if
        its path were the sequence. Only an item's last slot can carry a mark, so only the tokens
        there are looked at. The log is left alone: `keep` writes the path that was kept."""
        out = np.zeros(tokens.shape, dtype=np.int64)
        back = self.sids.num_levels
        last_slots = self.sids.slot_at(start[:, None] + tree.depths) == self.sids.tokens_per_item - 1
        for b, t in zip(*np.nonzero(last_slots)):
            row, s = int(rows[b]), int(start[b])
            lo = max(0, s - back)
            path = np.concatenate([self.tokens[row, lo:s], tokens[b, tree.ancestors[b, t]]])
            out[b, t] = self.sids.item_marks(path, lo)[-1]
        return out

    def keep(self, row: int, start: int, tokens: np.ndarray) -> None:
        """Row `row` holds `tokens` from position `start` on (the path a tree verification kept)."""
        self.tokens[row, start : start + len(tokens)] = tokens


def copy_prefixes(cache: KVCache, item_marks: ItemMarkLog | None, sources: np.ndarray, rows: np.ndarray,
                  start: np.ndarray) -> None:
    """A target host's part of `TargetScorer.score(..., sources)`: rows take their sources' first
    start positions, in the cache and (item-embedding targets) in the mark log."""
    if sources.shape != rows.shape:
        raise ValueError(f"sources must match rows, got {sources.shape} and {rows.shape}")
    length = int(start.max())
    cache.copy(torch.from_numpy(sources), torch.from_numpy(rows), length)
    if item_marks is not None:
        item_marks.copy(sources, rows, length)


def keep_paths(cache: KVCache, item_marks: ItemMarkLog | None, rows: np.ndarray, start: np.ndarray,
               kept: list[np.ndarray], tokens: list[np.ndarray]) -> None:
    """A target host's `TreeTargetScorer.keep`: after a tree call, row rows[b] keeps the call's
    tokens kept[b] (call indices, root first, whose token ids are tokens[b]) as its positions
    start[b] onwards, in the cache and (item-embedding targets) in the mark log."""
    for row, first, indices, path in zip(rows.tolist(), start.tolist(), kept, tokens):
        cache.keep(row, first, torch.from_numpy(np.asarray(indices, dtype=np.int64)))
        if item_marks is not None:
            item_marks.keep(row, first, path)
