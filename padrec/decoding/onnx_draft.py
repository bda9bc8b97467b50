"""A host's draft on ONNX Runtime: an exported draft round (`DraftGraph`) with its KV cache in process.

The graph decides the tokens, walking the catalogue constraints itself; this class packs the
`DraftBatch` (constraint states included) into its inputs. Where export wrote the unforced round
beside the graph (`unforced_path`), a batch in which no row starts with a forced token runs that
one: the same proposals, `forced_room` steps sooner. Its greedy proposals are `TorchDraft`'s;
where they differ (none of it touches exactness: the engine verifies every proposal):
  - the graph proposes a fixed number of tokens (`k_max`) after at most `forced_room` forced ones; a
    row asking for fewer gets the first ones, and a row with more forced tokens than the room
    proposes nothing that round (its depth-1 pass still fills its cache);
  - a row whose list completes inside the proposal gets padding after it (never verified);
  - sampling draws from the row's generator through uniform noise, so sampled proposals differ
    from TorchDraft's while following the same distribution.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from padrec.decoding.constraints import ListConstraint
from padrec.decoding.interfaces import DraftBatch, Proposal
from padrec.decoding.onnx_session import cached_past, load_session, new_cache
from padrec.semantic_ids import PAD


@dataclass(frozen=True)
class DraftGraphLayout:
    """How a `DraftBatch` maps onto an exported draft graph's inputs, and its outputs onto a
    `Proposal`. Shared by the in-process host (`OnnxDraft`) and hosts that run the graph elsewhere
    (the Triton BLS host sends these inputs to the `draft_*` model, which owns the cache)."""

    forced_room: int  # forced tokens a round can take before proposing
    k_max: int  # proposals per round
    noise_shape: tuple[int, ...]  # [steps, V]: one row of uniform noise per step

    @classmethod
    def from_shapes(cls, shapes: dict[str, list]) -> DraftGraphLayout:
        """From the graph's input/output shapes by name (static dims are ints)."""
        return cls(int(shapes["forced"][1]), int(shapes["proposals"][1]), tuple(int(d) for d in shapes["uniform"][1:]))

    def feeds(self, batch: DraftBatch) -> dict[str, np.ndarray]:
        """The graph inputs of a batch, all but the cache (past_k, past_v, past_lengths)."""
        forced_counts = np.array([len(f) for f in batch.forced], dtype=np.int64)
        fits = forced_counts <= self.forced_room
        return {
            "features": batch.features.astype(np.float32, copy=False), "tokens": batch.tokens,
            "lengths": batch.lengths.astype(np.int64),
            # a row that does not fit proposes nothing, so it asks for no room: the graph runs the
            # shortest round that holds the other rows
            "forced": self._forced(batch.forced, fits), "forced_counts": np.where(fits, forced_counts, 0),
            **constraint_inputs(batch.constraints),
            "temperatures": batch.temperatures.astype(np.float32), "uniform": self._noise(batch),
        }

    def proposal(self, batch: DraftBatch, proposals: np.ndarray, q: np.ndarray) -> Proposal:
        """The graph's outputs as the engine's `Proposal` (rows whose forced tokens did not fit: none)."""
        fits = np.array([len(f) <= self.forced_room for f in batch.forced])
        counts = np.where(fits, np.minimum(batch.num_tokens, self.k_max), 0)
        return Proposal(proposals, counts, q if (batch.temperatures > 0).any() else None)

    def _forced(self, forced: list[list[int]], fits: np.ndarray) -> np.ndarray:
        """[B, forced_room] the rows' forced tokens, padded (rows that do not fit: all padding)."""
        out = np.full((len(forced), self.forced_room), PAD, dtype=np.int64)
        for r in np.flatnonzero(fits):
            out[r, : len(forced[r])] = forced[r]
        return out

    def _noise(self, batch: DraftBatch) -> np.ndarray:
        """[B, steps, V] uniform noise from each sampling row's generator (zeros for greedy rows)."""
        out = np.zeros((len(batch.rngs), *self.noise_shape), dtype=np.float32)
        for r in np.flatnonzero(batch.temperatures > 0):
            out[r] = batch.rngs[r].random(self.noise_shape, dtype=np.float32)
        return out


def unforced_path(path: Path) -> Path:
    """Where export writes the unforced round of the draft graph at `path` (`DraftGraph`, room 0)."""
    return path.with_name(f"{path.stem}_unforced{path.suffix}")


class OnnxDraft:
    """`DraftProposer` over an exported draft graph (and its unforced round, if export wrote one)
    and a pool of `rows` cache rows. Chains only: the graph unrolls one."""

    proposes_trees = False

    def __init__(self, path: Path, rows: int, threads: int = 1):
        self.session = load_session(path, threads)
        unforced = unforced_path(path)
        self.unforced_session = load_session(unforced, threads) if unforced.is_file() else None
        self.cache = new_cache(self.session, rows)
        shapes = {t.name: t.shape for t in (*self.session.get_inputs(), *self.session.get_outputs())}
        self.layout = DraftGraphLayout.from_shapes(shapes)
        self.k_max = self.layout.k_max

    def propose(self, batch: DraftBatch) -> Proposal:
        proposals, q = self.run(batch.rows, batch.start, self.layout.feeds(batch))
        return self.layout.proposal(batch, proposals, q)

    def run(self, rows: np.ndarray, start: np.ndarray, feeds: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """One draft round of cache rows `rows` (kept up to `start`): proposals [B, k] and q [B, k, V]."""
        rows_t, start_t = torch.from_numpy(rows), torch.from_numpy(start)
        past_k, past_v = cached_past(self.cache, rows_t, start_t)
        unforced = self.unforced_session is not None and not feeds["forced_counts"].any()
        session = self.unforced_session if unforced else self.session
        proposals, q, new_k, new_v = session.run(None, {
            **feeds, "past_k": past_k, "past_v": past_v, "past_lengths": start.astype(np.int64)})
        self.cache.write(rows_t, start_t, torch.from_numpy(new_k), torch.from_numpy(new_v))
        return proposals, q


def constraint_inputs(constraints: list[ListConstraint]) -> dict[str, np.ndarray]:
    """The draft graph's view of each row's constraint: trie node, separator due, banned items
    (padded with the number of items, an item that bans nothing; at least one column)."""
    width = max(1, *(len(c.banned_items) for c in constraints))
    banned = np.full((len(constraints), width), constraints[0].trie.sids.num_items, dtype=np.int64)
    for r, c in enumerate(constraints):
        banned[r, : len(c.banned_items)] = c.banned_items
    return {"node": np.array([c.node for c in constraints], dtype=np.int64),
            "awaiting_separator": np.array([c.awaiting_separator for c in constraints]),
            "banned": banned}
