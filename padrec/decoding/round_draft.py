"""A torch host's draft that runs a whole draft round on its device: the round export writes
(`padrec.export.graphs.DraftGraph`), run as torch modules rather than through ONNX.

`TorchDraft` brings each draft step's logits back to the host, where the trie constraints choose
the next token: a device sync per drafted token. Here the catalogue constraints are tensor ops
(`GraphConstraint`) inside the round, so a round copies its small inputs to the device once and
its proposals back once. Its proposals are the exported draft's (`OnnxDraft` documents where they
differ from `TorchDraft`'s; exactness never depends on them: the engine verifies every proposal).
"""

from __future__ import annotations

from functools import partial

import numpy as np
import torch

from padrec.decoding.constraints import ItemTrie
from padrec.decoding.cuda_graphs import GraphedCalls, bucket, cache_bucket, padded
from padrec.decoding.interfaces import DraftBatch, Proposal
from padrec.decoding.onnx_draft import DraftGraphLayout
from padrec.decoding.torch_device import on_device, to_host
from padrec.export.graphs import DraftGraph, unforced_round
from padrec.models.draft import Draft
from padrec.models.inference import for_inference
from padrec.semantic_ids import PAD


class RoundDraft:
    """`DraftProposer` over a `Draft` (prepared by `for_inference` on `device` in `dtype`) whose
    rounds propose `proposals` tokens after at most `forced_room` forced ones, with a pool of
    `rows` cache rows beside it. Chains only, like the exported round. With `graphs`, rounds run
    padded to static shapes, as CUDA graphs on a GPU (`padrec.decoding.cuda_graphs`)."""

    proposes_trees = False

    def __init__(self, draft: Draft, trie: ItemTrie, rows: int, proposals: int, forced_room: int,
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32, graphs: bool = False):
        self.device, self.dtype = torch.device(device), dtype
        prepared = for_inference(draft, self.device, dtype)
        self.round = DraftGraph(prepared, trie, proposals, forced_room).to(self.device).eval()
        self.unforced = unforced_round(self.round).to(self.device)
        self.cache = draft.new_cache(rows + int(graphs), self.device, dtype)
        self.scratch_row = rows  # where padding rows read and write, with graphs
        self.num_items = trie.sids.num_items
        self.calls = ({False: GraphedCalls(partial(self._round_rows, self.round), self.device),
                       True: GraphedCalls(partial(self._round_rows, self.unforced), self.device)} if graphs else None)
        self.k_max = proposals
        self.layout = DraftGraphLayout(forced_room, proposals, (self.round.steps, draft.vocab_size))

    @torch.inference_mode()
    def propose(self, batch: DraftBatch) -> Proposal:
        feeds = self.layout.feeds(batch)
        sampling = bool((batch.temperatures > 0).any())
        unforced = not feeds["forced_counts"].any()
        if self.calls is not None:
            proposals, q = self._propose_static(batch, feeds, sampling, unforced)
        else:
            rows, start = torch.from_numpy(batch.rows), torch.from_numpy(batch.start)
            past_k, past_v = self.cache.view(rows, start)
            graph = self.unforced if unforced else self.round
            proposals, q, new_k, new_v = graph(past_k=past_k, past_v=past_v, past_lengths=start.to(self.device),
                                               **self._inputs(feeds, sampling, len(batch.rows)))
            self.cache.write(rows, start, new_k, new_v)
        # the proposals' copy back is where the host waits for the device: once a round
        return self.layout.proposal(batch, proposals.cpu().numpy(), to_host(q) if sampling else np.zeros(0))

    def _inputs(self, feeds: dict[str, np.ndarray], sampling: bool, rows: int) -> dict[str, torch.Tensor]:
        """The round's inputs on the device; greedy rows ignore the noise, so an all-greedy batch sends none."""
        inputs = {name: on_device(value, self.device, self.dtype if name == "features" else None)
                  for name, value in feeds.items() if name != "uniform"}
        inputs["uniform"] = (on_device(feeds["uniform"], self.device) if sampling else
                             torch.zeros(rows, *self.layout.noise_shape, device=self.device))
        return inputs

    def _propose_static(self, batch: DraftBatch, feeds: dict[str, np.ndarray], sampling: bool,
                        unforced: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """A round padded to its bucket: batch, fresh pairs and banned items to powers of two (fresh
        pairs only as far as the cache's slack holds them); padding rows are empty greedy lists."""
        (B, T), NB = batch.tokens.shape, feeds["banned"].shape[1]
        Bp, Tp, rows, start = cache_bucket(self.cache, batch.rows, batch.start, T, self.scratch_row)
        fill = {"features": 0.0, "tokens": PAD, "lengths": 1, "forced": PAD, "forced_counts": 0, "node": 0,
                "awaiting_separator": False, "banned": self.num_items, "temperatures": 0.0, "uniform": 0.0}
        shapes = {"features": (Bp, Tp, feeds["features"].shape[2]), "tokens": (Bp, Tp), "banned": (Bp, bucket(NB))}
        feeds = {name: padded(value, shapes.get(name, (Bp, *value.shape[1:])), fill[name])
                 for name, value in feeds.items()}
        proposals, q = self.calls[unforced]((Bp, Tp, bucket(NB)), rows=on_device(rows, self.device),
                                            start=on_device(start, self.device),
                                            **self._inputs(feeds, sampling, Bp))
        return proposals[:B], q[:B]

    def _round_rows(self, graph: DraftGraph, rows: torch.Tensor, start: torch.Tensor,
                    **inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`graph` over cache rows `rows` (device tensors throughout, so a CUDA graph holds it): reads
        each row's whole capacity, masked by its length, and writes the fresh pairs' K/V."""
        past_k, past_v = self.cache.k.index_select(1, rows), self.cache.v.index_select(1, rows)
        proposals, q, new_k, new_v = graph(past_k=past_k, past_v=past_v, past_lengths=start, **inputs)
        self.cache.write_at(rows, start, new_k, new_v)
        return proposals, q
