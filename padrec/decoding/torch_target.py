"""The offline host's target: a torch model with its KV cache in the same process."""

from __future__ import annotations

import numpy as np
import torch

from padrec.decoding.interfaces import TargetScores
from padrec.decoding.item_marks import ItemMarkLog
from padrec.models.inference import for_inference
from padrec.models.target import Target
from padrec.semantic_ids import SemanticIds


class TorchTarget:
    """`TargetScorer` over a torch `Target` (run as prepared by `for_inference`) and a pool of
    `rows` cache rows. An item-embedding target needs the catalogue's `sids` for its item marks."""

    def __init__(self, model: Target, rows: int, sids: SemanticIds | None = None):
        self.model = for_inference(model)
        self.cache = model.new_cache(rows)
        self.item_marks = ItemMarkLog.for_host(model.item_embed is not None, sids, rows, self.cache.k.shape[3],
                                               "this target")

    @torch.inference_mode()
    def score(self, rows: np.ndarray, start: np.ndarray, tokens: np.ndarray, lengths: np.ndarray) -> TargetScores:
        rows_t, start_t = torch.from_numpy(rows), torch.from_numpy(start)
        past_k, past_v = self.cache.view(rows_t, start_t)
        items = None if self.item_marks is None else torch.from_numpy(self.item_marks.marks(rows, start, tokens, lengths))
        out = self.model(torch.from_numpy(tokens), past_k, past_v, start_t, items)
        self.cache.write(rows_t, start_t, out.new_k, out.new_v)
        return TargetScores(out.logits.numpy(), out.hidden.numpy())
