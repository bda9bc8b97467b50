"""What the engine needs from its hosts: requests in, results out, and a target to score tokens.

The offline host implements `TargetScorer` with a torch or ONNX Runtime model and a KV cache in
the same process; the Triton BLS host implements it with a BLS call to the `target` model, which
keeps the cache beside itself. The engine cannot tell the difference.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Protocol

import numpy as np

from padrec.semantic_ids import SemanticIds


class InvalidRequest(ValueError):
    """A request the engine cannot serve (the message names the problem)."""


@dataclass(frozen=True)
class DecodeRequest:
    history: tuple[int, ...]  # internal item indices, oldest first, already truncated
    top_n: int = 10
    num_draft_tokens: int = 0  # 0 = plain decoding
    exclude_history: bool = True
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    seed: int = 0
    # > 0: each round drafts a token tree num_draft_tokens deep, tree_width wide (greedy only), and
    # verifies its tree_budget likeliest nodes (0: all of them) in one forward
    tree_width: int = 0
    tree_budget: int = 0
    # a position-shaped tree: how many continuations each node gets at each within-item slot (one
    # number per slot; empty: tree_width everywhere), e.g. several where the draft is often wrong,
    # 1 where it is nearly always right
    tree_slot_widths: tuple[int, ...] = ()
    # a draft that knows when to stop: nodes whose path the draft gives less than this probability
    # are not drafted (with tree_width 1: a chain that stops where the draft is unsure)
    tree_min_prob: float = 0.0

    def as_chain(self, num_draft_tokens: int) -> "DecodeRequest":
        """This request drafting a chain of `num_draft_tokens` per round instead (no tree)."""
        return replace(self, num_draft_tokens=num_draft_tokens, tree_width=0, tree_budget=0, tree_slot_widths=(),
                       tree_min_prob=0.0)


@dataclass(frozen=True)
class BeamRequest:
    """A top-K request: the top_n best items by beam search of `beam_width` beams (top_n <= beam_width).

    With draft_width > 0 the search is speculative: after the first code level the draft proposes
    draft_width candidate prefixes per deeper level and the target scores them all in one forward
    (`padrec.decoding.beam`); the items and their order stay those of plain beam search."""

    history: tuple[int, ...]  # internal item indices, oldest first, already truncated
    top_n: int = 10
    beam_width: int = 20
    exclude_history: bool = True
    draft_width: int = 0  # 0 = plain beam search


def validate_history(sids: SemanticIds, history: tuple[int, ...]) -> None:
    """Raise InvalidRequest when a history is empty or names an item the catalogue does not have."""
    if not history:
        raise InvalidRequest("history is empty")
    bad = [i for i in history if not 0 <= i < sids.num_items]
    if bad:
        raise InvalidRequest(f"unknown item indices in history: {bad[:5]}")


@dataclass
class DecodeStats:
    """Per-request counters (see padrec.decoding.acceptance for accepted / bonus / tau)."""

    target_calls: int = 0  # forwards of the target, prefill included
    forced_tokens: int = 0  # tokens the constraints dictated (no forward of their own)
    chosen_tokens: int = 0  # tokens the target chose itself (bonus tokens; all tokens when plain)
    drafted: int = 0  # draft tokens proposed (all of them: the draft's cost)
    accepted: int = 0  # draft tokens accepted
    # Per depth (index j: the (j+1)-th proposal of a round) and per within-item slot: how often a
    # proposal was reached by verification (every earlier one accepted) and how often it was
    # accepted; accepted / reached is the conditional acceptance rate.
    reached_by_depth: list[int] = field(default_factory=list)
    accepted_by_depth: list[int] = field(default_factory=list)
    reached_by_slot: list[int] = field(default_factory=list)
    accepted_by_slot: list[int] = field(default_factory=list)

    @property
    def rounds(self) -> int:
        return self.target_calls

    @property
    def tau(self) -> float:
        """Tokens produced per target forward, the bonus token included (forced tokens excluded)."""
        return (self.chosen_tokens + self.accepted) / max(1, self.target_calls)

    def count_verified(self, depth: int, slot: int, accepted: bool) -> None:
        """Record one verified proposal (depth counted from 0)."""
        for counts, index, add in ((self.reached_by_depth, depth, 1), (self.accepted_by_depth, depth, int(accepted)),
                                   (self.reached_by_slot, slot, 1), (self.accepted_by_slot, slot, int(accepted))):
            counts.extend([0] * (index + 1 - len(counts)))
            counts[index] += add
        self.accepted += int(accepted)

    def as_dict(self) -> dict:
        return {"rounds": self.rounds, "drafted": self.drafted, "accepted": self.accepted, "tau": self.tau,
                "forced_tokens": self.forced_tokens, "chosen_tokens": self.chosen_tokens,
                "reached_by_depth": self.reached_by_depth, "accepted_by_depth": self.accepted_by_depth,
                "reached_by_slot": self.reached_by_slot, "accepted_by_slot": self.accepted_by_slot}


@dataclass
class DecodeResult:
    items: list[int]
    scores: list[float]  # log-probability of each item under the constrained target distribution
    tokens: list[int]  # generated tokens (codes and separators)
    stats: DecodeStats = field(default_factory=DecodeStats)
    cancelled: bool = False  # ended early at the host's request; items holds those decided by then


@dataclass
class TargetScores:
    logits: np.ndarray  # [B, T, V] float32
    hidden: np.ndarray  # [B, T, D] last-layer features (what drafts condition on)


@dataclass
class DraftBatch:
    """What a draft needs for one round, per row (all arrays indexed by row).

    The draft's cache row keeps its first start[r] positions (pairs with real target features);
    features[r, :lengths[r]] are the target's features f_t of the positions after that, and
    tokens[r, :lengths[r]] the token following each (the last one is the round's first pending
    token). `forced[r]` are further known tokens (teacher-forced, not proposed). Then the draft
    proposes num_tokens[r] tokens, walking `constraints[r]` (a copy it may advance).
    """

    rows: np.ndarray  # [B]
    start: np.ndarray  # [B]
    features: np.ndarray  # [B, T, D]
    tokens: np.ndarray  # [B, T]
    lengths: np.ndarray  # [B]
    forced: list[list[int]]
    num_tokens: np.ndarray  # [B]
    constraints: list  # ListConstraint per row, positioned after the forced tokens
    temperatures: np.ndarray  # [B]; 0 = greedy proposals
    rngs: list  # np.random.Generator per row (None when greedy)
    # Token trees (greedy rows only; None: a chain of num_tokens per row): at each of num_tokens[r]
    # depths the draft keeps the widths[r] likeliest nodes (by the draft's probability of the whole
    # path), each node of the level above giving its slot_children[r, slot] likeliest tokens (slot:
    # the level's within-item slot), and proposes the budgets[r] likeliest nodes of that tree.
    widths: np.ndarray | None = None  # [B]
    slot_children: np.ndarray | None = None  # [B, slots]
    budgets: np.ndarray | None = None  # [B]
    min_probs: np.ndarray | None = None  # [B]: the path probability below which a node is not drafted


@dataclass
class Proposal:
    tokens: np.ndarray  # [B, k] proposed tokens; row r's are the first counts[r]
    counts: np.ndarray  # [B] (fewer than asked only when the catalogue runs out)
    probs: np.ndarray | None  # [B, k, V] draft distributions they were drawn from (sampling rows only)
    # a token tree: the proposal each one continues (-1: the round's known tokens); None: chains
    parents: np.ndarray | None = None  # [B, k]


class DraftProposer(Protocol):
    """Proposes draft tokens; owns the draft's cache (rolled back through `start`). One that sets
    `proposes_trees` also answers batches with `widths` with token trees."""

    k_max: int
    proposes_trees: bool

    def propose(self, batch: DraftBatch) -> Proposal: ...


@dataclass
class DraftScores:
    logits: np.ndarray  # [B, T, V] float32, through the target's head
    features: np.ndarray  # [B, T, D] the draft's predicted next features (its input at the next depth)


class DraftScorer(Protocol):
    """Runs the draft over (feature, token) pairs of several cache rows and returns its
    distributions at every one: what speculative beam search needs (many continuations per prefix,
    not one chosen token), and what a token tree grows from (`padrec.decoding.draft_tree`). Rows,
    start, lengths and sources mean what they mean for `TargetScorer`; `depth` is the draft depth of
    every pair (1: its feature is the target's). With `tree` (a `DraftTreeStep`) the pairs are tree
    nodes: each at its own position, seeing only the cached entries it names and itself."""

    def score(self, rows: np.ndarray, start: np.ndarray, features: np.ndarray, tokens: np.ndarray,
              lengths: np.ndarray, depth: int, sources: np.ndarray | None = None, tree=None) -> DraftScores: ...


class TargetScorer(Protocol):
    """Scores new tokens of several cache rows in one forward.

    Row r's cache keeps its first start[r] positions; tokens[r, :lengths[r]] are written after them
    and scored (positions beyond lengths[r] are padding). Moving start back is the rollback.
    With `sources`, row r first takes those positions from row sources[r] (all read before any is
    written): how beam search continues each beam from its parent's cache without moving it.
    """

    def score(self, rows: np.ndarray, start: np.ndarray, tokens: np.ndarray, lengths: np.ndarray,
              sources: np.ndarray | None = None) -> TargetScores: ...


class TreeTargetScorer(TargetScorer, Protocol):
    """A `TargetScorer` that also verifies token trees: `score(..., tree=TreeLayout)` scores each
    row's tokens as a tree (`padrec.decoding.tree`), and `keep` then moves the accepted path up
    over the dropped branches, so the cache again holds one sequence."""

    def score(self, rows: np.ndarray, start: np.ndarray, tokens: np.ndarray, lengths: np.ndarray,
              sources: np.ndarray | None = None, tree=None) -> TargetScores: ...

    def keep(self, rows: np.ndarray, start: np.ndarray, kept: list[np.ndarray], tokens: list[np.ndarray]) -> None: ...
