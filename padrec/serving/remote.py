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
from padrec.decoding.tree import DraftTreeStep, TreeLayout
from padrec.semantic_ids import PAD

Call = Callable[[dict[str, np.ndarray], tuple[str, ...]], dict[str, np.ndarray]]


def slot_inputs(rows: np.ndarray, start: np.ndarray, sources: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The cache rows a call addresses, the positions each keeps, and (optional: most calls copy
    nothing) the rows those positions are copied from."""
    inputs = {"rows": rows.astype(np.int64), "start": start.astype(np.int64)}
    if sources is not None:
        inputs["sources"] = sources.astype(np.int64)
    return inputs


class RemoteTarget:
    """`TreeTargetScorer` whose forward (and cache) live behind `call` (trees where the target model
    has its tree forward: a call with a tree to one without fails there)."""

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

    def keep(self, rows: np.ndarray, start: np.ndarray, kept: list[np.ndarray], tokens: list[np.ndarray]) -> None:
        """`TreeTargetScorer.keep`: the kept call indices and their tokens, padded (-1, PAD), and no outputs."""
        width = max(len(k) for k in kept)
        indices = np.full((len(kept), width), -1, dtype=np.int64)
        path = np.full((len(kept), width), PAD, dtype=np.int64)
        for b, (k, t) in enumerate(zip(kept, tokens)):
            indices[b, : len(k)], path[b, : len(t)] = k, t
        self.call({**slot_inputs(rows, start), "tokens": path, "kept": indices}, ())


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
              lengths: np.ndarray, depth: int, sources: np.ndarray | None = None,
              tree: DraftTreeStep | None = None) -> DraftScores:
        inputs = {**slot_inputs(rows, start, sources), "features": features.astype(np.float32, copy=False),
                  "tokens": tokens.astype(np.int64), "depth": np.full(len(rows), depth, dtype=np.int64)}
        if tree is not None:  # optional: token-tree nodes (`padrec.decoding.draft_tree`)
            inputs |= {"positions": tree.positions.astype(np.int64), "visible": tree.visible.astype(bool)}
        out = self.call(inputs, self.outputs)
        return DraftScores(out["logits"], out["next_features"])
