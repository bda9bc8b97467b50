"""A torch host's draft that runs a whole draft round on its device: the round export writes
(`padrec.export.graphs.DraftGraph`), run as torch modules rather than through ONNX.

`TorchDraft` brings each draft step's logits back to the host, where the trie constraints choose
the next token: a device sync per drafted token. Here the catalogue constraints are tensor ops
(`GraphConstraint`) inside the round, so a round copies its small inputs to the device once and
its proposals back once. Its proposals are the exported draft's (`OnnxDraft` documents where they
differ from `TorchDraft`'s; exactness never depends on them: the engine verifies every proposal).
"""

from __future__ import annotations

import numpy as np
import torch

from padrec.decoding.constraints import ItemTrie
from padrec.decoding.interfaces import DraftBatch, Proposal
from padrec.decoding.onnx_draft import DraftGraphLayout
from padrec.decoding.torch_device import on_device, to_host
from padrec.export.graphs import DraftGraph, unforced_round
from padrec.models.draft import Draft
from padrec.models.inference import for_inference


class RoundDraft:
    """`DraftProposer` over a `Draft` (prepared by `for_inference` on `device` in `dtype`) whose
    rounds propose `proposals` tokens after at most `forced_room` forced ones, with a pool of
    `rows` cache rows beside it. Chains only, like the exported round."""

    proposes_trees = False

    def __init__(self, draft: Draft, trie: ItemTrie, rows: int, proposals: int, forced_room: int,
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32):
        self.device, self.dtype = torch.device(device), dtype
        prepared = for_inference(draft, self.device, dtype)
        self.round = DraftGraph(prepared, trie, proposals, forced_room).to(self.device).eval()
        self.unforced = unforced_round(self.round).to(self.device)
        self.cache = draft.new_cache(rows, self.device, dtype)
        self.k_max = proposals
        self.layout = DraftGraphLayout(forced_room, proposals, (self.round.steps, draft.vocab_size))

    @torch.inference_mode()
    def propose(self, batch: DraftBatch) -> Proposal:
        feeds = self.layout.feeds(batch)
        rows, start = torch.from_numpy(batch.rows), torch.from_numpy(batch.start)
        past_k, past_v = self.cache.view(rows, start)
        sampling = bool((batch.temperatures > 0).any())
        inputs = {name: on_device(value, self.device, self.dtype if name == "features" else None)
                  for name, value in feeds.items() if name != "uniform"}
        # greedy rows ignore the noise: an all-greedy batch sends none across
        uniform = (on_device(feeds["uniform"], self.device) if sampling else
                   torch.zeros(len(batch.rows), *self.layout.noise_shape, device=self.device))
        graph = self.unforced if not feeds["forced_counts"].any() else self.round
        proposals, q, new_k, new_v = graph(past_k=past_k, past_v=past_v, past_lengths=start.to(self.device),
                                           uniform=uniform, **inputs)
        self.cache.write(rows, start, new_k, new_v)
        # the proposals' copy back is where the host waits for the device: once a round
        return self.layout.proposal(batch, proposals.cpu().numpy(), to_host(q) if sampling else np.zeros(0))
