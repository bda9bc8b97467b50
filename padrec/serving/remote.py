"""The engine's `TargetScorer`, `DraftProposer` and `DraftScorer` as calls to services that run elsewhere.

`call(inputs, output_names) -> outputs` is all a host supplies: the Triton BLS model sends a BLS request to the
`target` / `draft_<name>` / `draft_<name>_step` model; tests call the services directly. What
travels is cache rows, lengths, new tokens and fresh features, never a cache.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from padrec.decoding.interfaces import DraftBatch, DraftScores, Proposal, TargetScores
from padrec.decoding.onnx_draft import DraftGraphLayout
from padrec.decoding.tree import TreeLayout

Call = Callable[[dict[str, np.ndarray], tuple[str, ...]], dict[str, np.ndarray]]


def slot_inputs(rows: np.ndarray, start: np.ndarray, sources: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The cache rows a call addresses, the positions each keeps, and (optional: most calls copy
    nothing) the rows those positions are copied from."""
    inputs = {"rows": rows.astype(np.int64), "start": start.astype(np.int64)}
    if sources is not None:
        inputs["sources"] = sources.astype(np.int64)
    return inputs


class RemoteTarget:
    """`TargetScorer` whose forward (and cache) live behind `call`."""

    outputs = ("logits", "hidden")

    def __init__(self, call: Call):
        self.call = call

    def score(self, rows: np.ndarray, start: np.ndarray, tokens: np.ndarray, lengths: np.ndarray,
              sources: np.ndarray | None = None, tree: TreeLayout | None = None) -> TargetScores:
        inputs = {**slot_inputs(rows, start, sources), "tokens": tokens.astype(np.int64)}
        if tree is not None:  # optional too: a token tree (one-row beam search)
            inputs |= {"depths": tree.depths.astype(np.int64), "ancestors": tree.ancestors.astype(bool)}
        out = self.call(inputs, self.outputs)
        return TargetScores(out["logits"], out["hidden"])


class RemoteDraft:
    """`DraftProposer` whose draft graph (and cache) live behind `call`. Chains only, like the graph."""

    outputs = ("proposals", "q")
    proposes_trees = False

    def __init__(self, call: Call, layout: DraftGraphLayout):
        self.call = call
        self.layout = layout
        self.k_max = layout.k_max

    def propose(self, batch: DraftBatch) -> Proposal:
        out = self.call({**slot_inputs(batch.rows, batch.start), **self.layout.feeds(batch)}, self.outputs)
        return self.layout.proposal(batch, out["proposals"], out["q"])


class RemoteDraftScorer:
    """`DraftScorer` whose draft step graph (and cache) live behind `call`."""

    outputs = ("logits", "next_features")

    def __init__(self, call: Call):
        self.call = call

    def score(self, rows: np.ndarray, start: np.ndarray, features: np.ndarray, tokens: np.ndarray,
              lengths: np.ndarray, depth: int, sources: np.ndarray | None = None) -> DraftScores:
        out = self.call({**slot_inputs(rows, start, sources), "features": features.astype(np.float32, copy=False),
                         "tokens": tokens.astype(np.int64), "depth": np.full(len(rows), depth, dtype=np.int64)},
                        self.outputs)
        return DraftScores(out["logits"], out["next_features"])
