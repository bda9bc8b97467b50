"""The offline host's target: a torch model with its KV cache in the same process, on the CPU or a GPU."""

from __future__ import annotations

import numpy as np
import torch

from padrec.decoding.cuda_graphs import GraphedCalls, cache_bucket, padded
from padrec.decoding.interfaces import TargetScores
from padrec.decoding.item_marks import ItemMarkLog, copy_prefixes, keep_paths
from padrec.decoding.torch_device import on_device, to_host
from padrec.decoding.tree import TreeLayout
from padrec.models.inference import for_inference
from padrec.models.target import Target
from padrec.semantic_ids import PAD, SemanticIds


class TorchTarget:
    """`TargetScorer` over a torch `Target` (run as prepared by `for_inference`, on `device` in
    `dtype`) and a pool of `rows` cache rows beside it. An item-embedding target needs the
    catalogue's `sids` for its item marks.

    A call copies its tokens to the device and its logits and features back: the one host sync of a
    round, which the acceptance decision needs anyway. Cache pointers stay on the host.

    With `graphs`, chain and plain calls run padded to static shapes, as CUDA graphs on a GPU
    (`padrec.decoding.cuda_graphs`; the pool gains a scratch row for the padding); token trees and
    beam calls that copy prefixes run as without."""

    def __init__(self, model: Target, rows: int, sids: SemanticIds | None = None,
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32, graphs: bool = False):
        self.model = for_inference(model, device, dtype)
        self.device = torch.device(device)
        self.cache = model.new_cache(rows + int(graphs), self.device, dtype)
        self.scratch_row = rows  # where padding rows read and write, with graphs
        self.calls = GraphedCalls(self._forward_rows, self.device) if graphs else None
        self.item_marks = ItemMarkLog.for_host(model.item_embed is not None, sids, rows, self.cache.k.shape[3],
                                               "this target")

    @torch.inference_mode()
    def score(self, rows: np.ndarray, start: np.ndarray, tokens: np.ndarray, lengths: np.ndarray,
              sources: np.ndarray | None = None, tree: TreeLayout | None = None) -> TargetScores:
        if self.calls is not None and sources is None and tree is None:
            return self._score_static(rows, start, tokens, lengths)
        rows_t, start_t = torch.from_numpy(rows), torch.from_numpy(start)
        if sources is not None:
            copy_prefixes(self.cache, self.item_marks, sources, rows, start)
        past_k, past_v = self.cache.view(rows_t, start_t)
        items = None
        if self.item_marks is not None:
            marks = (self.item_marks.marks(rows, start, tokens, lengths) if tree is None else
                     self.item_marks.tree_marks(rows, start, tokens, tree))
            items = on_device(marks, self.device)
        layout = None if tree is None else (on_device(tree.depths, self.device), on_device(tree.ancestors, self.device))
        out = self.model(on_device(tokens, self.device), past_k, past_v, start_t.to(self.device), items, layout)
        self.cache.write(rows_t, start_t, out.new_k, out.new_v)
        return TargetScores(to_host(out.logits), to_host(out.hidden))

    def _score_static(self, rows: np.ndarray, start: np.ndarray, tokens: np.ndarray,
                      lengths: np.ndarray) -> TargetScores:
        """`score` padded to its bucket: batch and new tokens to powers of two (new tokens only as far
        as the cache's slack holds them), the cache read over its whole capacity."""
        B, T = tokens.shape
        padded_batch, padded_tokens, padded_rows, padded_start = cache_bucket(self.cache, rows, start, T,
                                                                              self.scratch_row)
        shape = (padded_batch, padded_tokens)
        inputs = {"tokens": padded(tokens.astype(np.int64), shape, PAD), "rows": padded_rows, "start": padded_start}
        if self.item_marks is not None:
            inputs["items"] = padded(self.item_marks.marks(rows, start, tokens, lengths), shape, 0)
        logits, hidden = self.calls(shape, **{name: on_device(a, self.device) for name, a in inputs.items()})
        return TargetScores(to_host(logits[:B, :T]), to_host(hidden[:B, :T]))

    def _forward_rows(self, tokens: torch.Tensor, rows: torch.Tensor, start: torch.Tensor,
                      items: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The target over cache rows `rows` (device tensors throughout, so a CUDA graph holds it):
        reads each row's whole capacity, masked by its length, and writes the new K/V."""
        past_k, past_v = self.cache.k.index_select(1, rows), self.cache.v.index_select(1, rows)
        out = self.model(tokens, past_k, past_v, start, items)
        self.cache.write_at(rows, start, out.new_k, out.new_v)
        return out.logits, out.hidden

    def keep(self, rows: np.ndarray, start: np.ndarray, kept: list[np.ndarray], tokens: list[np.ndarray]) -> None:
        """`TreeTargetScorer.keep` (`keep_paths`)."""
        keep_paths(self.cache, self.item_marks, rows, start, kept, tokens)
