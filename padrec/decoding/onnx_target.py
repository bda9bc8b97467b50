"""A host's target on ONNX Runtime: an exported target graph with its KV cache in the same process,
and the target's tree forward beside it where export wrote one (`tree_path`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from padrec.decoding.interfaces import TargetScores
from padrec.decoding.item_marks import ItemMarkLog, copy_prefixes, keep_paths
from padrec.decoding.onnx_session import cached_past, load_session, new_cache, tree_path
from padrec.decoding.tree import TreeLayout
from padrec.semantic_ids import SemanticIds


class OnnxTarget:
    """`TargetScorer` over an exported target graph (`padrec export`) and a pool of `rows` cache rows.
    The graph of an item-embedding target needs the catalogue's `sids` for its item marks. Where
    the tree forward is beside the graph, `score(..., tree=...)` scores token trees with it and
    `keep` keeps the path verification accepted (a `TreeTargetScorer`)."""

    def __init__(self, path: Path, rows: int, threads: int = 1, sids: SemanticIds | None = None):
        self.session = load_session(path, threads)
        self.tree_session = load_session(tree_path(path), threads) if tree_path(path).is_file() else None
        self.cache = new_cache(self.session, rows)
        embeds_items = "items" in {i.name for i in self.session.get_inputs()}
        self.item_marks = ItemMarkLog.for_host(embeds_items, sids, rows, self.cache.k.shape[3], str(path))

    def score(self, rows: np.ndarray, start: np.ndarray, tokens: np.ndarray, lengths: np.ndarray,
              sources: np.ndarray | None = None, tree: TreeLayout | None = None) -> TargetScores:
        if tree is not None and self.tree_session is None:
            raise ValueError("this target graph has no tree forward beside it (exported before trees were)")
        rows_t, start_t = torch.from_numpy(rows), torch.from_numpy(start)
        if sources is not None:
            copy_prefixes(self.cache, self.item_marks, sources, rows, start)
        past_k, past_v = cached_past(self.cache, rows_t, start_t)
        feeds = {"tokens": tokens, "past_k": past_k, "past_v": past_v, "past_lengths": start}
        if self.item_marks is not None:
            feeds["items"] = (self.item_marks.marks(rows, start, tokens, lengths) if tree is None else
                              self.item_marks.tree_marks(rows, start, tokens, tree))
        if tree is not None:
            feeds |= {"depths": tree.depths, "ancestors": tree.ancestors}
        logits, hidden, new_k, new_v = (self.session if tree is None else self.tree_session).run(None, feeds)
        self.cache.write(rows_t, start_t, torch.from_numpy(new_k), torch.from_numpy(new_v))
        return TargetScores(logits, hidden)

    def keep(self, rows: np.ndarray, start: np.ndarray, kept: list[np.ndarray], tokens: list[np.ndarray]) -> None:
        """`TreeTargetScorer.keep` (`keep_paths`)."""
        keep_paths(self.cache, self.item_marks, rows, start, kept, tokens)
