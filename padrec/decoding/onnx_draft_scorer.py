"""A host's `DraftScorer` on ONNX Runtime: an exported draft step (`DraftStepGraph`) with its KV cache
in process. What speculative beam search needs of the draft on the hosts that have no torch draft
(the Triton `draft_<name>_step` models, and the export checks)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from padrec.decoding.interfaces import DraftScores
from padrec.decoding.item_marks import copy_prefixes
from padrec.decoding.onnx_session import cached_past, load_session, new_cache


class OnnxDraftScorer:
    """`DraftScorer` over an exported draft step graph and a pool of `rows` cache rows."""

    def __init__(self, path: Path, rows: int, threads: int = 1):
        self.session = load_session(path, threads)
        self.cache = new_cache(self.session, rows)

    def score(self, rows: np.ndarray, start: np.ndarray, features: np.ndarray, tokens: np.ndarray,
              lengths: np.ndarray, depth: int | np.ndarray, sources: np.ndarray | None = None) -> DraftScores:
        """`DraftScorer.score`; `depth` may also be one per row (what the served model receives)."""
        rows_t, start_t = torch.from_numpy(rows), torch.from_numpy(start)
        if sources is not None:
            copy_prefixes(self.cache, None, sources, rows, start)
        past_k, past_v = cached_past(self.cache, rows_t, start_t)
        depths = np.broadcast_to(np.asarray(depth, dtype=np.int64), rows.shape).copy()
        logits, features_out, new_k, new_v = self.session.run(None, {
            "features": features.astype(np.float32, copy=False), "tokens": tokens.astype(np.int64, copy=False),
            "depth": depths, "past_k": past_k, "past_v": past_v, "past_lengths": start.astype(np.int64)})
        self.cache.write(rows_t, start_t, torch.from_numpy(new_k), torch.from_numpy(new_v))
        return DraftScores(logits, features_out)
