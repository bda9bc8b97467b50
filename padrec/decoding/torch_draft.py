"""The offline host's draft: a torch `Draft` with its KV cache in the same process, on the CPU or a GPU."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from padrec.decoding.constraints import ListConstraint
from padrec.decoding.interfaces import DraftBatch, DraftScores, Proposal
from padrec.decoding.sampling import constrained_distribution, constrained_log_probs, greedy_scores
from padrec.decoding.torch_device import on_device, to_host
from padrec.models.draft import Draft, DraftOutput
from padrec.models.inference import InferenceDraftInput, for_inference
from padrec.models.layers import attention_mask
from padrec.semantic_ids import PAD, SemanticIds


class TorchDraft:
    """`DraftProposer` and `DraftScorer` over a torch `Draft` (run as prepared by `for_inference`, on `device` in
    `dtype`) and a pool of `rows` cache rows beside it.

    Each draft step's logits come back to the host, where the trie constraints choose the next token
    (a host sync per drafted token); features stay on the device between steps."""

    def __init__(self, draft: Draft, sids: SemanticIds, rows: int, device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32):
        self.draft = for_inference(draft, device, dtype)
        self.device, self.dtype = torch.device(device), dtype
        self.input = InferenceDraftInput(self.draft, sids.tokens_per_item)
        self.cache = draft.new_cache(rows, self.device, dtype)
        self.k_max = draft.config.k_max
        self.proposes_trees = True

    def _step(self, rows: torch.Tensor, start: torch.Tensor, features: torch.Tensor, tokens: torch.Tensor,
              depth: int, positions: torch.Tensor | None = None, mask: torch.Tensor | None = None) -> DraftOutput:
        """One draft forward of T new pairs per row after each row's first start[r] cache positions;
        writes their K/V. What `Draft.forward` computes (up to float rounding: the input comes from
        `InferenceDraftInput`), with the mask left out where it masks nothing: one new token of a
        single row (whose cache view is exactly its past). `rows` and `start` are host tensors.
        A tree step passes its own `positions` and `mask` (its nodes sit at one position each,
        wherever their cache entries are)."""
        past_k, past_v = self.cache.view(rows, start)
        T = tokens.shape[1]
        start_here = start.to(self.device)
        if positions is None:
            mask = None if len(rows) == 1 and T == 1 else attention_mask(start_here, past_k.shape[3], T)
            positions = start_here[:, None] + torch.arange(T, device=self.device)
        out = self.draft.decode(self.input(features, tokens, positions, depth), positions, mask, past_k, past_v)
        self.cache.write(rows, start, out.new_k, out.new_v)
        return out

    @torch.inference_mode()
    def score(self, rows: np.ndarray, start: np.ndarray, features: np.ndarray, tokens: np.ndarray,
              lengths: np.ndarray, depth: int, sources: np.ndarray | None = None) -> DraftScores:
        rows_t, start_t = torch.from_numpy(rows), torch.from_numpy(start)
        if sources is not None:
            self.cache.copy(torch.from_numpy(sources), rows_t, int(start.max()))
        out = self._step(rows_t, start_t, on_device(features, self.device, self.dtype), on_device(tokens, self.device),
                         depth)
        return DraftScores(to_host(out.logits), to_host(out.features))

    @torch.inference_mode()
    def propose(self, batch: DraftBatch) -> Proposal:
        if batch.widths is not None:
            return self._propose_trees(batch)
        B = len(batch.rows)
        rows, start = torch.from_numpy(batch.rows), torch.from_numpy(batch.start)
        # depth 1: every new pair with a real target feature, in one forward
        out = self._step(rows, start, on_device(batch.features, self.device, self.dtype),
                         on_device(batch.tokens, self.device), 1)
        last = on_device(batch.lengths - 1, self.device)
        every = torch.arange(B, device=self.device)
        feature, logits = out.features[every, last], to_host(out.logits[every, last])
        position = start + torch.from_numpy(batch.lengths)

        steps = [len(f) + int(k) for f, k in zip(batch.forced, batch.num_tokens)]
        k_max = int(batch.num_tokens.max())
        proposed = np.full((B, k_max), PAD, dtype=np.int64)
        counts = np.zeros(B, dtype=np.int64)
        probs = np.zeros((B, k_max, logits.shape[-1]), dtype=np.float32) if (batch.temperatures > 0).any() else None
        walking = [c.copy() for c in batch.constraints]
        stopped = [False] * B
        for step in range(max(steps)):
            next_tokens = np.full(B, PAD, dtype=np.int64)
            for r in range(B):
                if step >= steps[r] or stopped[r]:
                    continue
                if step < len(batch.forced[r]):
                    next_tokens[r] = batch.forced[r][step]
                    continue
                token = self._choose(batch, r, walking[r], logits[r], probs, counts[r])
                if token is None:
                    stopped[r] = True
                    continue
                proposed[r, counts[r]] = next_tokens[r] = token
                counts[r] += 1
            if step == max(steps) - 1:
                break  # the last decided token needs no forward of its own
            out = self._step(rows, position, feature[:, None], on_device(next_tokens, self.device)[:, None], step + 2)
            feature, logits = out.features[:, 0], to_host(out.logits[:, 0])
            position = position + 1
        return Proposal(proposed, counts, probs)

    def _propose_trees(self, batch: DraftBatch) -> Proposal:
        """Greedy token trees (`DraftBatch.widths`), EAGLE-2 style: one draft forward per depth over
        every kept node of every row. A node sits in the draft cache after the row's real pairs (its
        own slot, wherever its branch is) and sees those pairs, its ancestors and itself."""
        B = len(batch.rows)
        rows, start = torch.from_numpy(batch.rows), torch.from_numpy(batch.start)
        out = self._step(rows, start, on_device(batch.features, self.device, self.dtype),
                         on_device(batch.tokens, self.device), 1)
        last = batch.lengths - 1
        base = batch.start + batch.lengths  # first free slot, and the draft position of the next pair
        trees = [_DraftTree(batch.constraints[r], batch.forced[r], int(batch.num_tokens[r]), int(batch.widths[r]),
                            batch.slot_children[r].tolist(), float(batch.min_probs[r])) for r in range(B)]
        logits = to_host(out.logits[np.arange(B), last])
        expanding = [[_Open(-1, logits[r], out.features[r, last[r]], (), trees[r].root_constraint)] for r in range(B)]
        next_slot = base.copy()
        for step in range(max(t.steps for t in trees)):
            born = [t.grow(step, opened) for t, opened in zip(trees, expanding)]
            if step == max(t.steps for t in trees) - 1 or not any(born):
                break  # the deepest nodes need no forward of their own
            width = max(1, max(len(b) for b in born))
            tokens = np.full((B, width), PAD, dtype=np.int64)
            features = torch.zeros((B, width, out.features.shape[-1]), device=self.device, dtype=self.dtype)
            visible = np.zeros((B, width, int(next_slot.max())), dtype=bool)
            for r, nodes in enumerate(born):
                visible[r, :, : base[r]] = True
                for i, node in enumerate(nodes):
                    tokens[r, i] = node.token
                    features[r, i] = node.parent_feature
                    visible[r, i, list(node.ancestor_slots)] = True
            new_visible = torch.eye(width, dtype=torch.bool, device=self.device).expand(B, 1, width, width)
            mask = torch.cat([on_device(visible, self.device)[:, None], new_visible], dim=-1)
            positions = on_device(base + step, self.device)[:, None].expand(B, width)
            out = self._step(rows, torch.from_numpy(next_slot), features, on_device(tokens, self.device), step + 2,
                             positions, mask)
            step_logits = to_host(out.logits)
            expanding = [[node.opened(step_logits[r, i], out.features[r, i], int(next_slot[r]) + i)
                          for i, node in enumerate(nodes)] for r, nodes in enumerate(born)]
            next_slot = next_slot + np.array([len(b) for b in born])
        chosen = [t.proposal(int(batch.budgets[r])) for r, t in enumerate(trees)]
        n = max(1, max(len(c[0]) for c in chosen))
        proposed = np.full((B, n), PAD, dtype=np.int64)
        parents = np.full((B, n), -1, dtype=np.int64)
        for r, (tokens_r, parents_r) in enumerate(chosen):
            proposed[r, : len(tokens_r)], parents[r, : len(parents_r)] = tokens_r, parents_r
        return Proposal(proposed, np.array([len(c[0]) for c in chosen], dtype=np.int64), None, parents)

    @staticmethod
    def _choose(batch: DraftBatch, r: int, walking: ListConstraint, logits: np.ndarray, probs: np.ndarray | None,
                index: int) -> int | None:
        """Row r's next proposal from its draft logits, walking its constraint (None when its list is
        complete); a sampled one records the distribution it was drawn from in probs[r, index]."""
        allowed, prior = walking.allowed(), walking.prior()
        if len(allowed) == 0 or walking.exhausted():
            return None
        if batch.temperatures[r] > 0:
            q = constrained_distribution(logits, allowed, float(batch.temperatures[r]), prior=prior)
            token = int(batch.rngs[r].choice(len(q), p=q))
            probs[r, index] = q
        else:
            token = int(allowed[np.argmax(greedy_scores(logits, allowed, prior))])
        walking.advance(token)
        return token


@dataclass
class _Open:
    """A tree node whose children can be drafted: the draft's distribution after it, its output
    feature (the children's input), the cache slots its children may see, and its constraint."""

    index: int  # its proposal index (-1: the round's known tokens)
    logits: np.ndarray  # [V]
    feature: torch.Tensor  # [D]
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

    @property
    def parent_feature(self) -> torch.Tensor:
        return self.parent.feature

    @property
    def ancestor_slots(self) -> tuple[int, ...]:
        return self.parent.slots

    def opened(self, logits: np.ndarray, feature: torch.Tensor, slot: int) -> _Open:
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
