"""The list-generation loop shared by every host: propose, score, verify/accept.

Each row keeps `pending` tokens: decided, but not yet fed to the target. A round
  1. propose: the draft (if the row asked for draft tokens) extends pending by k guesses;
  2. score: one batched target call scores every active row's pending + draft tokens;
  3. verify/accept: the acceptance rule keeps the longest agreeing prefix of the guesses, then the
     target's own bonus token; tokens the constraints force (the separator, a code with a single
     allowed continuation) are appended without a forward and ride along with the next call.
Plain decoding is the same loop with k = 0, so it gets the same structural shortcuts as the
speculative path it is measured against. Rows finish independently; each keeps its own k.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from padrec.config import DecodeConfig
from padrec.decoding.acceptance import greedy_accepts, rejection_step
from padrec.decoding.constraints import ItemTrie, ListConstraint
from padrec.decoding.interfaces import (
    DecodeRequest, DecodeResult, DraftBatch, DraftProposer, InvalidRequest, Proposal, TargetScorer,
    validate_history,
)
from padrec.decoding.sampling import choose_token, constrained_distribution, constrained_log_probs
from padrec.decoding.tree import TreeLayout, chain_parents
from padrec.semantic_ids import BOS, PAD


@dataclass
class _Row:
    """Decoding state of one request."""

    request: DecodeRequest
    cache_row: int
    constraint: ListConstraint
    result: DecodeResult
    rng: np.random.Generator | None
    pending: list[int]
    committed: int = 0  # positions of this row in the target's cache
    item_logp: float = 0.0  # log-probability of the item being generated, so far
    done: bool = False
    # target features not yet given to the draft, and the token following each
    fresh_features: list[np.ndarray] = field(default_factory=list)
    fresh_tokens: list[int] = field(default_factory=list)
    draft_committed: int = 0  # positions of this row in the draft's cache (real features only)
    on_item: Callable[[DecodeResult], None] | None = None  # told of each finished item


class ListDecoder:
    """Generates recommendation lists with a target and, optionally, a draft."""

    def __init__(self, trie: ItemTrie, target: TargetScorer, max_seq_len: int, max_top_n: int = 50,
                 proposer: DraftProposer | None = None, max_tree_nodes: int = DecodeConfig.max_tree_nodes):
        self.trie = trie
        self.sids = trie.sids
        self.target = target
        self.proposer = proposer
        self.max_seq_len = max_seq_len
        self.max_top_n = max_top_n
        self.max_tree_nodes = max_tree_nodes

    @property
    def verifies_trees(self) -> bool:
        """Whether requests may ask for token trees: the draft grows them and the target keeps a path."""
        return getattr(self.proposer, "proposes_trees", False) and callable(getattr(self.target, "keep", None))

    @property
    def k_max(self) -> int:
        return self.proposer.k_max if self.proposer else 0

    def validate(self, request: DecodeRequest) -> None:
        """Raise InvalidRequest naming the first problem with a request."""
        validate_history(self.sids, request.history)
        if not 1 <= request.top_n <= self.max_top_n:
            raise InvalidRequest(f"top_n must be in 1..{self.max_top_n}, got {request.top_n}")
        if not 0 <= request.num_draft_tokens <= self.k_max:
            raise InvalidRequest(
                f"num_draft_tokens must be in 0..{self.k_max}, got {request.num_draft_tokens}"
                + ("" if self.proposer else " (this decoder has no draft)"))
        if request.temperature < 0 or not 0 < request.top_p <= 1:
            raise InvalidRequest("temperature must be >= 0 and top_p in (0, 1]")
        self._validate_tree(request)
        needed = 1 + (len(request.history) + request.top_n) * self.sids.tokens_per_item
        if needed > self.max_seq_len:
            raise InvalidRequest(f"history of {len(request.history)} items plus top_n {request.top_n} "
                                 f"needs {needed} positions; the model has {self.max_seq_len}")

    def _validate_tree(self, request: DecodeRequest) -> None:
        width, budget = request.tree_width, request.tree_budget
        if width == 0:
            if budget != 0 or request.tree_slot_widths or request.tree_min_prob != 0:
                raise InvalidRequest("tree_budget, tree_slot_widths and tree_min_prob need tree_width > 0")
            return
        slot_widths = request.tree_slot_widths
        if slot_widths and (len(slot_widths) != self.sids.tokens_per_item or min(slot_widths) < 1):
            raise InvalidRequest(f"tree_slot_widths needs one width >= 1 per slot ({self.sids.tokens_per_item}), "
                                 f"got {list(slot_widths)}")
        k = request.num_draft_tokens
        drafted = width * k  # the most nodes a round can draft
        if width < 0 or k == 0 or drafted > self.max_tree_nodes:
            raise InvalidRequest(f"tree_width must be >= 0, with num_draft_tokens > 0 and at most "
                                 f"{self.max_tree_nodes} drafted nodes a round; got tree_width {width}, "
                                 f"num_draft_tokens {k}: up to {drafted}")
        if not 0 <= budget <= drafted:
            raise InvalidRequest(f"tree_budget must be in 0..{drafted} (the nodes a round can draft), got {budget}")
        if not 0 <= request.tree_min_prob < 1:
            raise InvalidRequest(f"tree_min_prob must be in [0, 1), got {request.tree_min_prob}")
        if request.temperature > 0:
            raise InvalidRequest("token trees are greedy only (temperature 0): sampling verifies chains")
        if not self.verifies_trees:
            raise InvalidRequest("this decoder's draft or target cannot verify token trees (tree_width must be 0)")

    def generate(self, requests: list[DecodeRequest], cache_rows: list[int],
                 on_item: Callable[[int, DecodeResult], None] | None = None,
                 cancelled: Callable[[int], bool] | None = None) -> list[DecodeResult]:
        """Decode a batch of requests, each in its own cache row (of the target and the draft).

        on_item(i, result) hears of each item of request i as soon as it is decided (what a
        streaming host sends on): `result` is the request's result so far, its last item the new
        one, its stats running totals. cancelled(i), asked before every round, ends request i early
        (its result keeps the items decided so far and says `cancelled`).
        """
        for request in requests:
            self.validate(request)
        rows = [self._start(req, cache_row, _bind(on_item, i)) for i, (req, cache_row) in enumerate(zip(requests, cache_rows))]
        active = _unfinished(rows, cancelled)
        while active:
            self._round(active)
            active = _unfinished(rows, cancelled)
        return [row.result for row in rows]

    def _start(self, request: DecodeRequest, cache_row: int,
               on_item: Callable[[DecodeResult], None] | None = None) -> _Row:
        row = _Row(
            request=request,
            cache_row=cache_row,
            constraint=ListConstraint(self.trie, request.history if request.exclude_history else ()),
            result=DecodeResult(items=[], scores=[], tokens=[]),
            rng=np.random.default_rng(request.seed) if request.temperature > 0 else None,
            pending=[BOS] + self.sids.encode_items(list(request.history)),
            on_item=on_item,
        )
        self._extend_forced(row)
        return row

    # --- one round --------------------------------------------------------------------------------

    def _round(self, rows: list[_Row]) -> None:
        drafts = self._propose(rows)
        guesses, qs, guess_parents = zip(*(drafts.get(id(r), ([], None, None)) for r in rows))
        fed = [r.pending + g for r, g in zip(rows, guesses)]
        lengths = np.array([len(f) for f in fed])
        tokens = np.full((len(rows), lengths.max()), PAD, dtype=np.int64)
        for i, f in enumerate(fed):
            tokens[i, : len(f)] = f
        start = np.array([r.committed for r in rows])
        cache_rows = np.array([r.cache_row for r in rows])
        # parents of each call token (padding: -1); None when every row sends a chain
        parents = None
        if any(p is not None for p in guess_parents):
            parents = np.full(tokens.shape, -1, dtype=np.int64)
            for i, (row, g) in enumerate(zip(rows, guess_parents)):
                parents[i, : len(fed[i])] = _call_parents(len(row.pending), len(guesses[i]), g)
        if parents is None:
            scores = self.target.score(cache_rows, start, tokens, lengths)
        else:
            scores = self.target.score(cache_rows, start, tokens, lengths, tree=TreeLayout.from_parents(parents))
        kept = [self._verify(row, scores.logits[i], scores.hidden[i], fed[i],
                             None if parents is None else parents[i, : len(fed[i])], qs[i])
                for i, row in enumerate(rows)]
        if parents is not None:
            self.target.keep(cache_rows, start, kept, [np.asarray(f)[k] for f, k in zip(fed, kept)])

    def _propose(self, rows: list[_Row]) -> dict[int, tuple[list[int], np.ndarray | None, np.ndarray | None]]:
        """Per row (by id) that asked for draft tokens and has draft state (not at prefill): its
        guesses, when sampling the draft distributions they were drawn from, and for a token tree
        each guess's parent among them (-1: the known tokens). Chains and trees go to the draft
        separately."""
        wanted = [r for r in rows if r.request.num_draft_tokens > 0 and r.fresh_tokens]
        if not wanted or self.proposer is None:
            return {}
        out = {}
        for trees in (False, True):
            group = [r for r in wanted if (r.request.tree_width > 0) == trees]
            if group:
                out.update(self._propose_group(group, trees))
        return out

    def _propose_group(self, wanted: list[_Row], trees: bool) -> dict:
        k = np.array([min(r.request.num_draft_tokens, self._tokens_left(r)) for r in wanted])
        n_fresh = np.array([len(r.fresh_tokens) for r in wanted])
        dim = wanted[0].fresh_features[0].shape[-1]
        features = np.zeros((len(wanted), n_fresh.max(), dim), dtype=np.float32)
        tokens = np.full((len(wanted), n_fresh.max()), PAD, dtype=np.int64)
        for i, r in enumerate(wanted):
            features[i, : n_fresh[i]] = r.fresh_features
            tokens[i, : n_fresh[i]] = r.fresh_tokens
        batch = DraftBatch(
            rows=np.array([r.cache_row for r in wanted]),
            start=np.array([r.draft_committed for r in wanted]),
            features=features, tokens=tokens, lengths=n_fresh,
            forced=[r.pending[1:] for r in wanted],
            num_tokens=k,
            constraints=[r.constraint for r in wanted],
            temperatures=np.array([r.request.temperature for r in wanted]),
            rngs=[r.rng for r in wanted],
            widths=np.array([r.request.tree_width for r in wanted]) if trees else None,
            slot_children=np.array([r.request.tree_slot_widths or (r.request.tree_width,) * self.sids.tokens_per_item
                                    for r in wanted]) if trees else None,
            budgets=np.array([r.request.tree_budget for r in wanted]) if trees else None,
            min_probs=np.array([r.request.tree_min_prob for r in wanted]) if trees else None,
        )
        proposal: Proposal = self.proposer.propose(batch)
        out = {}
        for i, r in enumerate(wanted):
            r.draft_committed += int(n_fresh[i])
            r.fresh_features, r.fresh_tokens = [], []
            n = proposal.counts[i]
            q = proposal.probs[i] if proposal.probs is not None else None
            parents = proposal.parents[i, :n] if proposal.parents is not None else None
            out[id(r)] = (proposal.tokens[i, :n].tolist(), q, parents)
        return out

    def _verify(self, row: _Row, logits: np.ndarray, hidden: np.ndarray, fed: list[int],
                parents: np.ndarray | None, q) -> np.ndarray:
        """Accept the longest path of guesses the target agrees with, then its bonus token.

        `fed` is the call's tokens: the row's pending ones, then its guesses, a chain or (with
        `parents`, each call token's parent in the call) a tree. Returns the call indices the
        target's cache keeps: the pending tokens and the accepted path."""
        p = len(row.pending)
        stats = row.result.stats
        stats.target_calls += 1
        stats.drafted += len(fed) - p
        children_of = _children_of(p, len(fed), parents)
        kept = list(range(p))
        at = p - 1  # the call index whose logits predict the next token
        bonus = None
        for j in range(len(fed) - p):
            children = children_of.get(at)
            if not children:
                break
            allowed, prior = row.constraint.allowed(), row.constraint.prior()
            slot = row.constraint.slot
            if row.rng is None:
                token, logp = choose_token(logits[at], allowed, 0.0, 1.0, None, prior)
                child = next((c for c in children if greedy_accepts(token, fed[c])), None)
            else:  # sampling verifies chains: one child
                (child,) = children
                target_p = constrained_distribution(logits[at], allowed, row.request.temperature,
                                                    row.request.top_p, prior)
                ok, token = rejection_step(target_p, q[j].astype(np.float64), fed[child], row.rng)
                logp = _log_prob(logits[at], allowed, token)
                child = child if ok else None
            stats.count_verified(j, slot, child is not None)
            if child is None:
                bonus = (token, logp)
                break
            kept.append(child)
            at = child
            self._accept(row, token, logp)
            if row.done:
                break
        # the target's cache now holds pending + accepted guesses; their features are real
        row.committed += len(kept)
        row.pending = []
        if row.done:
            return np.array(kept)
        drafting = row.request.num_draft_tokens > 0
        if drafting:
            row.fresh_features.extend(hidden[kept])
            row.fresh_tokens.extend(fed[c] for c in kept[1:])
        if bonus is None:
            bonus = choose_token(logits[at], row.constraint.allowed(), row.request.temperature,
                                 row.request.top_p, row.rng, row.constraint.prior())
        stats.chosen_tokens += 1
        self._accept(row, *bonus)
        if drafting:
            row.fresh_tokens.append(bonus[0])
        self._extend_forced(row)
        return np.array(kept)

    # --- bookkeeping ------------------------------------------------------------------------------

    def _tokens_left(self, row: _Row) -> int:
        """Tokens still to generate after the pending ones (the last item needs no separator)."""
        total = row.request.top_n * self.sids.tokens_per_item - int(self.sids.use_separator)
        return max(0, total - len(row.result.tokens))

    def _accept(self, row: _Row, token: int, logp: float) -> None:
        """Append one decided token to the row's list, finishing the row at top_n items."""
        row.pending.append(token)
        row.result.tokens.append(token)
        row.item_logp += logp
        item = row.constraint.advance(token)
        if item is None:
            return
        row.result.items.append(item)
        row.result.scores.append(row.item_logp)
        if row.on_item is not None:
            row.on_item(row.result)
        row.item_logp = 0.0
        if len(row.result.items) >= row.request.top_n or row.constraint.exhausted():
            row.done = True

    def _extend_forced(self, row: _Row) -> None:
        """Append tokens the constraints force (probability 1 after masking: log-prob 0)."""
        while not row.done:
            allowed = row.constraint.allowed()
            if len(allowed) != 1:
                return
            row.result.stats.forced_tokens += 1
            self._accept(row, int(allowed[0]), 0.0)


def _call_parents(pending: int, guesses: int, guess_parents: np.ndarray | None) -> np.ndarray:
    """Each call token's parent in the call: the pending tokens in a chain, then the guesses, a
    chain after them or (guess_parents, -1 = the last pending token) a tree."""
    if guess_parents is None:
        return chain_parents(pending + guesses)
    return np.concatenate([chain_parents(pending), np.where(guess_parents < 0, pending - 1, guess_parents + pending)])


def _children_of(pending: int, length: int, parents: np.ndarray | None) -> dict[int, list[int]]:
    """Each call index's guesses (their call indices), from the last pending token on: one pass over
    a tree's parents, or each guess the next one's parent in a chain."""
    if parents is None:
        return {c: [c + 1] for c in range(pending - 1, length - 1)}
    children: dict[int, list[int]] = {}
    for c, parent in enumerate(parents[pending:length].tolist(), start=pending):
        children.setdefault(parent, []).append(c)
    return children


def _unfinished(rows: list[_Row], cancelled: Callable[[int], bool] | None) -> list[_Row]:
    """The rows still decoding, after ending those whose request (by index) the host cancelled."""
    if cancelled is not None:
        for i, row in enumerate(rows):
            if not row.done and cancelled(i):
                row.done = row.result.cancelled = True
    return [row for row in rows if not row.done]


def _bind(on_item: Callable[[int, DecodeResult], None] | None, index: int) -> Callable[[DecodeResult], None] | None:
    """on_item with the request's index filled in."""
    if on_item is None:
        return None
    return lambda result: on_item(index, result)


def _log_prob(logits: np.ndarray, allowed: np.ndarray, token: int) -> float:
    """log-probability of `token` under the constrained target distribution at temperature 1."""
    return float(constrained_log_probs(logits, allowed)[np.nonzero(allowed == token)[0][0]])
