"""The stateful halves of the target and draft: a graph plus the KV cache it owns.

A Triton `target` / `draft_<name>` / `draft_<name>_step` model wraps one of these; a request names cache rows and how
much of each to keep (`start`), and carries only new tokens and, for the draft, fresh target
features: caches never travel. Tensors: the graph's own inputs and outputs with the cache ones
replaced by `rows` and `start` (`padrec.export.repository.stateful_io`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from padrec.decoding.onnx_draft import OnnxDraft
from padrec.decoding.onnx_draft_scorer import OnnxDraftScorer
from padrec.decoding.onnx_target import OnnxTarget
from padrec.decoding.tree import DraftTreeStep, TreeLayout
from padrec.semantic_ids import SemanticIds

SLOT_INPUTS = ("rows", "start")


class TargetService:
    """Scores new tokens of cache rows (as a token tree when the request has `depths` and
    `ancestors`); rolling back is sending a smaller `start`. With `kept` a request first finishes the
    tree call before it: row b keeps that call's indices kept[b] (padded with -1), whose tokens are
    kept_tokens[b], as its positions up to start[b] (`TreeTargetScorer.keep`; `RemoteTarget`)."""

    def __init__(self, onnx_path: Path, rows: int, threads: int = 1):
        # <repository>/target/<version>/model.onnx: the catalogue sits at the repository's root
        catalogue = onnx_path.parents[2] / "semantic_ids.npz"
        sids = SemanticIds.load(catalogue) if catalogue.is_file() else None
        self.target = OnnxTarget(onnx_path, rows, threads, sids)

    def handle(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        sources = _checked_slots(inputs, self.target.cache.k.shape[1])
        if "kept" in inputs:
            counts = (inputs["kept"] >= 0).sum(axis=1)
            keeping = np.flatnonzero(counts)
            self.target.keep(inputs["rows"][keeping], (inputs["start"] - counts)[keeping],
                             [inputs["kept"][b, : counts[b]] for b in keeping],
                             [inputs["kept_tokens"][b, : counts[b]] for b in keeping])
        tree = TreeLayout(inputs["depths"], inputs["ancestors"]) if "depths" in inputs else None
        scores = self.target.score(inputs["rows"], inputs["start"], inputs["tokens"], _every_position(inputs),
                                   sources, tree)
        return {"logits": scores.logits, "hidden": scores.hidden}


class DraftService:
    """Runs one draft round of cache rows."""

    def __init__(self, onnx_path: Path, rows: int, threads: int = 1):
        self.draft = OnnxDraft(onnx_path, rows, threads)

    def handle(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        _check_rows(inputs["rows"], inputs["start"], self.draft.cache.k.shape[1])
        feeds = {name: value for name, value in inputs.items() if name not in SLOT_INPUTS}
        proposals, q = self.draft.run(inputs["rows"], inputs["start"], feeds)
        return {"proposals": proposals, "q": q}


class DraftStepService:
    """Runs one draft step of cache rows (speculative beam search's `DraftScorer`), each row
    optionally continued from another's kept positions (`sources`), as the target's are; a step over
    token-tree nodes when the request has `positions` and `visible` (`DraftTreeStep`)."""

    def __init__(self, onnx_path: Path, rows: int, threads: int = 1):
        self.draft = OnnxDraftScorer(onnx_path, rows, threads)

    def handle(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        sources = _checked_slots(inputs, self.draft.cache.k.shape[1])
        tree = DraftTreeStep(inputs["positions"], inputs["visible"]) if "positions" in inputs else None
        scores = self.draft.score(inputs["rows"], inputs["start"], inputs["features"], inputs["tokens"],
                                  _every_position(inputs), inputs["depth"], sources, tree)
        return {"logits": scores.logits, "next_features": scores.features}


def _checked_slots(inputs: dict[str, np.ndarray], capacity: int) -> np.ndarray | None:
    """Check a request's `rows`, `start` and optional `sources` against a pool of `capacity` rows;
    the sources (None when the request copies nothing)."""
    _check_rows(inputs["rows"], inputs["start"], capacity)
    sources = inputs.get("sources")
    if sources is not None:
        _check_rows(sources, inputs["start"], capacity, distinct=False)
    return sources


def _every_position(inputs: dict[str, np.ndarray]) -> np.ndarray:
    """Lengths scoring every new position of each row: the graphs take no lengths, so rows' padding
    positions are scored too (nobody reads them)."""
    tokens = inputs["tokens"]
    return np.full(len(tokens), tokens.shape[1], dtype=np.int64)


def _check_rows(rows: np.ndarray, start: np.ndarray, capacity: int, distinct: bool = True) -> None:
    """Rows and starts must address the pool (a caller bug, reported rather than crashing the model);
    rows written to must be distinct, rows copied from (`sources`) need not be."""
    if rows.ndim != 1 or start.shape != rows.shape or rows.size == 0:
        raise ValueError(f"rows and start must be equal-length vectors, got {rows.shape} and {start.shape}")
    if rows.min() < 0 or rows.max() >= capacity or (distinct and len(set(rows.tolist())) != rows.size):
        kind = "distinct slots" if distinct else "slots"
        raise ValueError(f"rows must be {kind} in 0..{capacity - 1}, got {rows.tolist()}")
