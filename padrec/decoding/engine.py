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

from padrec.decoding.acceptance import greedy_accepts, rejection_step
from padrec.decoding.constraints import ItemTrie, ListConstraint
from padrec.decoding.interfaces import (
    DecodeRequest, DecodeResult, DraftBatch, DraftProposer, InvalidRequest, Proposal, TargetScorer,
    validate_history,
)
from padrec.decoding.sampling import choose_token, constrained_distribution, constrained_log_probs
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
                 proposer: DraftProposer | None = None):
        self.trie = trie
        self.sids = trie.sids
        self.target = target
        self.proposer = proposer
        self.max_seq_len = max_seq_len
        self.max_top_n = max_top_n

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
        needed = 1 + (len(request.history) + request.top_n) * self.sids.tokens_per_item
        if needed > self.max_seq_len:
            raise InvalidRequest(f"history of {len(request.history)} items plus top_n {request.top_n} "
                                 f"needs {needed} positions; the model has {self.max_seq_len}")

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
        guesses, qs = zip(*(drafts.get(id(r), ([], None)) for r in rows))
        fed = [r.pending + g for r, g in zip(rows, guesses)]
        lengths = np.array([len(f) for f in fed])
        tokens = np.full((len(rows), lengths.max()), PAD, dtype=np.int64)
        for i, f in enumerate(fed):
            tokens[i, : len(f)] = f
        start = np.array([r.committed for r in rows])
        scores = self.target.score(np.array([r.cache_row for r in rows]), start, tokens, lengths)
        for i, row in enumerate(rows):
            self._verify(row, scores.logits[i], scores.hidden[i], guesses[i], qs[i])

    def _propose(self, rows: list[_Row]) -> dict[int, tuple[list[int], np.ndarray | None]]:
        """Per row (by id) that asked for draft tokens and has draft state (not at prefill): its
        guesses and, when sampling, the draft distributions they were drawn from."""
        wanted = [r for r in rows if r.request.num_draft_tokens > 0 and r.fresh_tokens]
        if not wanted or self.proposer is None:
            return {}
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
        )
        proposal: Proposal = self.proposer.propose(batch)
        out = {}
        for i, r in enumerate(wanted):
            r.draft_committed += int(n_fresh[i])
            r.fresh_features, r.fresh_tokens = [], []
            q = proposal.probs[i] if proposal.probs is not None else None
            out[id(r)] = (proposal.tokens[i, : proposal.counts[i]].tolist(), q)
        return out

    def _verify(self, row: _Row, logits: np.ndarray, hidden: np.ndarray, guesses: list[int], q) -> None:
        """Accept the longest agreeing prefix of the guesses, then the target's bonus token."""
        p = len(row.pending)
        stats = row.result.stats
        stats.target_calls += 1
        stats.drafted += len(guesses)
        fed = row.pending + guesses
        accepted = 0
        bonus = None
        for j, guess in enumerate(guesses):
            allowed, prior = row.constraint.allowed(), row.constraint.prior()
            slot = row.constraint.slot
            if row.rng is None:
                token, logp = choose_token(logits[p - 1 + j], allowed, 0.0, 1.0, None, prior)
                ok = greedy_accepts(token, guess)
            else:
                target_p = constrained_distribution(logits[p - 1 + j], allowed, row.request.temperature,
                                                    row.request.top_p, prior)
                ok, token = rejection_step(target_p, q[j].astype(np.float64), guess, row.rng)
                logp = _log_prob(logits[p - 1 + j], allowed, token)
            stats.count_verified(j, slot, ok)
            if not ok:
                bonus = (token, logp)
                break
            accepted += 1
            self._accept(row, token, logp)
            if row.done:
                break
        # the target's cache now holds pending + accepted guesses; their features are real
        row.committed += p + accepted
        row.pending = []
        if row.done:
            return
        drafting = row.request.num_draft_tokens > 0
        if drafting:
            row.fresh_features.extend(hidden[: p + accepted])
            row.fresh_tokens.extend(fed[1 : p + accepted])
        if bonus is None:
            bonus = choose_token(logits[p - 1 + accepted], row.constraint.allowed(), row.request.temperature,
                                 row.request.top_p, row.rng, row.constraint.prior())
        stats.chosen_tokens += 1
        self._accept(row, *bonus)
        if drafting:
            row.fresh_tokens.append(bonus[0])
        self._extend_forced(row)

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
