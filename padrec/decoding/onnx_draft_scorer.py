"""A host's `DraftScorer` on ONNX Runtime: an exported draft step (`DraftStepGraph`, and its tree
forward `DraftStepTreeGraph`) with its KV cache in process. What speculative beam search and token
trees need of the draft on the hosts that have no torch draft (the Triton `draft_<name>_step`
models, and the export checks)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from padrec.decoding.interfaces import DraftScores
from padrec.decoding.item_marks import copy_prefixes
from padrec.decoding.onnx_session import cached_past, load_session, new_cache, tree_path
from padrec.decoding.tree import DraftTreeStep


class OnnxDraftScorer:
    """`DraftScorer` over an exported draft step graph and a pool of `rows` cache rows. Where the
    step's tree forward is beside the graph (`tree_path`), `score(..., tree=...)` runs it."""

    def __init__(self, path: Path, rows: int, threads: int = 1):
        self.session = load_session(path, threads)
        self.tree_session = load_session(tree_path(path), threads) if tree_path(path).is_file() else None
        self.cache = new_cache(self.session, rows)

    def score(self, rows: np.ndarray, start: np.ndarray, features: np.ndarray, tokens: np.ndarray,
              lengths: np.ndarray, depth: int | np.ndarray, sources: np.ndarray | None = None,
              tree: DraftTreeStep | None = None) -> DraftScores:
        """`DraftScorer.score`; `depth` may also be one per row (what the served model receives)."""
        if tree is not None and self.tree_session is None:
            raise ValueError("this draft step graph has no tree forward beside it (exported before trees were)")
        rows_t, start_t = torch.from_numpy(rows), torch.from_numpy(start)
        if sources is not None:
            copy_prefixes(self.cache, None, sources, rows, start)
        past_k, past_v = cached_past(self.cache, rows_t, start_t)
        depths = np.broadcast_to(np.asarray(depth, dtype=np.int64), rows.shape).copy()
        feeds = {"features": features.astype(np.float32, copy=False), "tokens": tokens.astype(np.int64, copy=False),
                 "depth": depths, "past_k": past_k, "past_v": past_v}
        if tree is None:
            feeds["past_lengths"] = start.astype(np.int64)
        else:
            feeds |= {"positions": tree.positions.astype(np.int64), "visible": tree.visible.astype(bool)}
        logits, features_out, new_k, new_v = (self.session if tree is None else self.tree_session).run(None, feeds)
        self.cache.write(rows_t, start_t, torch.from_numpy(new_k), torch.from_numpy(new_v))
        return DraftScores(logits, features_out)
