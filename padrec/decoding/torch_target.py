"""The offline host's target: a torch model with its KV cache in the same process."""

from __future__ import annotations

import numpy as np
import torch

from padrec.decoding.interfaces import TargetScores
from padrec.models.inference import for_inference
from padrec.models.target import Target


class TorchTarget:
    """`TargetScorer` over a torch `Target` (run as prepared by `for_inference`) and a pool of
    `rows` cache rows."""

    def __init__(self, model: Target, rows: int):
        self.model = for_inference(model)
        self.cache = model.new_cache(rows)

    @torch.inference_mode()
    def score(self, rows: np.ndarray, start: np.ndarray, tokens: np.ndarray, lengths: np.ndarray) -> TargetScores:
        rows_t, start_t = torch.from_numpy(rows), torch.from_numpy(start)
        past_k, past_v = self.cache.view(rows_t, start_t)
        out = self.model(torch.from_numpy(tokens), past_k, past_v, start_t)
        self.cache.write(rows_t, start_t, out.new_k, out.new_v)
        return TargetScores(out.logits.numpy(), out.hidden.numpy())
