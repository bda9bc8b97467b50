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
    has its tree forward: a call with a tree to one without fails there).

    `keep` sends nothing: a row's kept path travels with its next call (`kept`, `kept_tokens`),
    which the target applies before it scores, so a token-tree round costs one target call, not
    two. A row whose next call does not continue right after the kept path (its list ended, and the
    row's next request starts over) drops it: that path is never read."""

    outputs = ("logits", "hidden")

    def __init__(self, call: Call):
        self.call = call
        self.kept: dict[int, tuple[int, np.ndarray, np.ndarray]] = {}  # row -> (start, call indices, tokens)

    def score(self, rows: np.ndarray, start: np.ndarray, tokens: np.ndarray, lengths: np.ndarray,
              sources: np.ndarray | None = None, tree: TreeLayout | None = None) -> TargetScores:
        inputs = {**slot_inputs(rows, start, sources), "tokens": tokens.astype(np.int64)}
        if tree is not None:  # optional too: a token tree (one-row beam search, tree drafting)
            inputs |= {"depths": tree.depths.astype(np.int64), "ancestors": tree.ancestors.astype(bool)}
        inputs |= self._kept_inputs(rows, start)
        out = self.call(inputs, self.outputs)
        return TargetScores(out["logits"], out["hidden"])

    def keep(self, rows: np.ndarray, start: np.ndarray, kept: list[np.ndarray], tokens: list[np.ndarray]) -> None:
        """`TreeTargetScorer.keep`, sent with each row's next call."""
        for row, first, indices, path in zip(rows.tolist(), start.tolist(), kept, tokens):
            self.kept[row] = (first, np.asarray(indices, dtype=np.int64), np.asarray(path, dtype=np.int64))

    def _kept_inputs(self, rows: np.ndarray, start: np.ndarray) -> dict[str, np.ndarray]:
        """The kept paths of `rows` that their call continues (padded: -1, PAD), or nothing."""
        if not self.kept:  # chains and plain decoding keep nothing
            return {}
        paths = [self.kept.pop(row, None) for row in rows.tolist()]
        paths = [p if p is not None and p[0] + len(p[1]) == s else None for p, s in zip(paths, start.tolist())]
        if not any(p is not None for p in paths):
            return {}
        width = max(len(p[1]) for p in paths if p is not None)
        indices = np.full((len(rows), width), -1, dtype=np.int64)
        path_tokens = np.full((len(rows), width), PAD, dtype=np.int64)
        for b, p in enumerate(paths):
            if p is not None:
                indices[b, : len(p[1])], path_tokens[b, : len(p[2])] = p[1], p[2]
        return {"kept": indices, "kept_tokens": path_tokens}


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
