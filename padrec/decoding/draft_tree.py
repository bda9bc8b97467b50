"""Greedy token trees from any draft that scores steps (`DraftScorer`), EAGLE-2 style.

A round's tree grows one depth per draft forward over every kept node of every row: each node of
the level above offers its likeliest allowed tokens, and the level keeps the `width` likeliest by
the draft's probability of the whole path. A node sits in the draft cache after the row's real
pairs (its own slot, wherever its branch is) and sees those pairs, its ancestors and itself
(`DraftTreeStep`), so the draft scores each branch as if it were alone. The round proposes the
`budget` likeliest nodes as a tree (`Proposal.parents`).

The offline torch draft (`TorchDraft`) and the ONNX Runtime / served draft step
(`OnnxDraftScorer`, `RemoteDraftScorer`) are both `DraftScorer`s, so every host grows the same
trees. `TreeDrafting` pairs a draft that proposes chains in one call (an exported round) with a
scorer that grows trees.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from padrec.decoding.constraints import ListConstraint
from padrec.decoding.interfaces import DraftBatch, DraftProposer, DraftScorer, Proposal
from padrec.decoding.sampling import constrained_log_probs
from padrec.decoding.tree import DraftTreeStep
from padrec.semantic_ids import PAD


def propose_trees(batch: DraftBatch, scorer: DraftScorer) -> Proposal:
    """The token trees of a batch with `widths` (module docstring), one `scorer` call per depth."""
    B = len(batch.rows)
    out = scorer.score(batch.rows, batch.start, batch.features, batch.tokens, batch.lengths, 1)
    last = batch.lengths - 1
    base = batch.start + batch.lengths  # first free slot, and the draft position of the next pair
    trees = [_DraftTree(batch.constraints[r], batch.forced[r], int(batch.num_tokens[r]), int(batch.widths[r]),
                        batch.slot_children[r].tolist(), float(batch.min_probs[r])) for r in range(B)]
    expanding = [[_Open(-1, out.logits[r, last[r]], out.features[r, last[r]], (), trees[r].root_constraint)]
                 for r in range(B)]
    next_slot = base.copy()
    steps = max(t.steps for t in trees)
    for step in range(steps):
        born = [t.grow(step, opened) for t, opened in zip(trees, expanding)]
        if step == steps - 1 or not any(born):
            break  # the deepest nodes need no forward of their own
        width = max(1, max(len(b) for b in born))
        tokens = np.full((B, width), PAD, dtype=np.int64)
        features = np.zeros((B, width, out.features.shape[-1]), dtype=np.float32)
        visible = np.zeros((B, width, int(next_slot.max())), dtype=bool)
        for r, nodes in enumerate(born):
            visible[r, :, : base[r]] = True
            for i, node in enumerate(nodes):
                tokens[r, i] = node.token
                features[r, i] = node.parent.feature
                visible[r, i, list(node.parent.slots)] = True
        positions = np.repeat((base + step)[:, None], width, axis=1)
        out = scorer.score(batch.rows, next_slot, features, tokens, np.full(B, width), step + 2,
                           tree=DraftTreeStep(positions, visible))
        expanding = [[node.opened(out.logits[r, i], out.features[r, i], int(next_slot[r]) + i)
                      for i, node in enumerate(nodes)] for r, nodes in enumerate(born)]
        next_slot = next_slot + np.array([len(b) for b in born])
    chosen = [t.proposal(int(batch.budgets[r])) for r, t in enumerate(trees)]
    n = max(1, max(len(c[0]) for c in chosen))
    proposed = np.full((B, n), PAD, dtype=np.int64)
    parents = np.full((B, n), -1, dtype=np.int64)
    for r, (tokens_r, parents_r) in enumerate(chosen):
        proposed[r, : len(tokens_r)], parents[r, : len(parents_r)] = tokens_r, parents_r
    return Proposal(proposed, np.array([len(c[0]) for c in chosen], dtype=np.int64), None, parents)


class TreeDrafting:
    """A `DraftProposer` whose chains come from `chains` (e.g. an exported draft round, one call) and
    whose token trees come from `scorer`'s steps. The two keep caches of their own; a request
    drafts either chains or trees throughout, so each row's draft cache is only ever one of them."""

    proposes_trees = True

    def __init__(self, chains: DraftProposer, scorer: DraftScorer):
        self.chains, self.scorer = chains, scorer
        self.k_max = chains.k_max

    def propose(self, batch: DraftBatch) -> Proposal:
        return self.chains.propose(batch) if batch.widths is None else propose_trees(batch, self.scorer)


@dataclass
class _Open:
    """A tree node whose children can be drafted: the draft's distribution after it, its output
    feature (the children's input), the cache slots its children may see, and its constraint."""

    index: int  # its proposal index (-1: the round's known tokens)
    logits: np.ndarray  # [V]
    feature: np.ndarray  # [D]
    slots: tuple[int, ...]  # cache slots of its ancestors and itself (beyond the row's real pairs)
    constraint: ListConstraint  # positioned after its token
    log_prob: float = 0.0  # the draft's log-probability of its path


@dataclass
class _Born:
    """A node drafted at this step, before its forward."""

    token: int
    index: int  # proposal index (-1: a known, forced token)
    parent: _Open
    constraint: ListConstraint
    log_prob: float

    def opened(self, logits: np.ndarray, feature: np.ndarray, slot: int) -> _Open:
        return _Open(self.index, logits, feature, (*self.parent.slots, slot), self.constraint, self.log_prob)


class _DraftTree:
    """One row's token tree while the draft grows it: the round's known (forced) tokens first, as a
    chain, then `depth` levels of proposals, each the `width` likeliest children of the level above
    by path probability; a node's children are its c likeliest allowed tokens, c = children[slot]
    for the within-item slot of the level's tokens. A node whose path the draft gives less than
    `min_prob` is not drafted: the tree stops growing where the draft expects to be wrong."""

    def __init__(self, constraint: ListConstraint, forced: list[int], depth: int, width: int, children: list[int],
                 min_prob: float = 0.0):
        self.root_constraint = constraint  # after the forced tokens; only the last known token reads it
        self.forced = list(forced)
        self.depth, self.width, self.children = depth, width, children
        self.min_log_prob = np.log(min_prob) if min_prob > 0 else -np.inf
        self.steps = len(self.forced) + depth
        self.tokens: list[int] = []
        self.parents: list[int] = []
        self.log_probs: list[float] = []

    def grow(self, step: int, opened: list[_Open]) -> list[_Born]:
        """The nodes born at `step` from the nodes `opened` at the step before."""
        if step >= self.steps:
            return []
        if step < len(self.forced):
            (parent,) = opened
            return [_Born(self.forced[step], -1, parent, self.root_constraint, 0.0)]
        candidates = []
        for parent in opened:
            allowed = parent.constraint.allowed()
            if len(allowed) == 0 or parent.constraint.exhausted():
                continue
            log_probs = constrained_log_probs(parent.logits, allowed, 1.0, parent.constraint.prior())
            children = self.children[parent.constraint.slot]
            for i in np.argsort(-log_probs, kind="stable")[:children].tolist():
                if parent.log_prob + log_probs[i] >= self.min_log_prob:
                    candidates.append((parent.log_prob + float(log_probs[i]), int(allowed[i]), parent))
        candidates.sort(key=lambda c: -c[0])  # stable: ties keep the parent's and the token's order
        born = []
        for log_prob, token, parent in candidates[: self.width]:
            constraint = parent.constraint.copy()
            constraint.advance(token)
            born.append(_Born(token, len(self.tokens), parent, constraint, log_prob))
            self.tokens.append(token)
            self.parents.append(parent.index)
            self.log_probs.append(log_prob)
        return born

    def proposal(self, budget: int) -> tuple[list[int], list[int]]:
        """The `budget` likeliest nodes (0: all), a tree again (a node is never likelier than its
        parent, and ties go to the earlier node), as tokens and parents re-indexed among them."""
        order = sorted(range(len(self.tokens)), key=lambda i: (-self.log_probs[i], i))
        kept = sorted(order[:budget] if budget else order)
        new_index = {old: new for new, old in enumerate(kept)}
        return [self.tokens[i] for i in kept], [new_index.get(self.parents[i], -1) for i in kept]
