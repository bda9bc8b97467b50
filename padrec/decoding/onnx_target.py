"""A host's target on ONNX Runtime: an exported target graph with its KV cache in the same process."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from padrec.decoding.interfaces import TargetScores
from padrec.decoding.onnx_session import cached_past, load_session, new_cache


class OnnxTarget:
    """`TargetScorer` over an exported target graph (`padrec export`) and a pool of `rows` cache rows."""

    def __init__(self, path: Path, rows: int, threads: int = 1):
        self.session = load_session(path, threads)
        self.cache = new_cache(self.session, rows)

    def score(self, rows: np.ndarray, start: np.ndarray, tokens: np.ndarray, lengths: np.ndarray) -> TargetScores:
        rows_t, start_t = torch.from_numpy(rows), torch.from_numpy(start)
        past_k, past_v = cached_past(self.cache, rows_t, start_t)
        logits, hidden, new_k, new_v = self.session.run(
            None, {"tokens": tokens, "past_k": past_k, "past_v": past_v, "past_lengths": start})
        self.cache.write(rows_t, start_t, torch.from_numpy(new_k), torch.from_numpy(new_v))
        return TargetScores(logits, hidden)
