"""The list-generation loop shared by every host.

Each row keeps `pending` tokens: decided, but not yet fed to the target. A round feeds every active
row's pending tokens in one batched target call, chooses the next token from the logits at each
row's last pending position, then appends whatever the constraints force (the separator, a code
with a single allowed continuation) without a forward of its own. Those forced tokens simply ride
along with the next call, so plain decoding gets the same structural shortcuts as any speculative
path measured against it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from padrec.decoding.constraints import ItemTrie, ListConstraint
from padrec.decoding.interfaces import DecodeRequest, DecodeResult, InvalidRequest, TargetScorer
from padrec.decoding.sampling import choose_token
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
    committed: int = 0  # positions of this row already in the target's cache
    item_logp: float = 0.0  # log-probability of the item being generated, so far
    done: bool = False


class ListDecoder:
    """Generates recommendation lists with a target (and, for speculation, a draft)."""

    def __init__(self, trie: ItemTrie, target: TargetScorer, max_seq_len: int, max_top_n: int = 50):
        self.trie = trie
        self.sids = trie.sids
        self.target = target
        self.max_seq_len = max_seq_len
        self.max_top_n = max_top_n

    def validate(self, request: DecodeRequest) -> None:
        """Raise InvalidRequest naming the first problem with a request."""
        if not request.history:
            raise InvalidRequest("history is empty")
        bad = [i for i in request.history if not 0 <= i < self.sids.num_items]
        if bad:
            raise InvalidRequest(f"unknown item indices in history: {bad[:5]}")
        if not 1 <= request.top_n <= self.max_top_n:
            raise InvalidRequest(f"top_n must be in 1..{self.max_top_n}, got {request.top_n}")
        if request.num_draft_tokens != 0:
            raise InvalidRequest("num_draft_tokens > 0 needs a draft; this decoder has none")
        if request.temperature < 0 or not 0 < request.top_p <= 1:
            raise InvalidRequest("temperature must be >= 0 and top_p in (0, 1]")
        needed = 1 + (len(request.history) + request.top_n) * self.sids.tokens_per_item
        if needed > self.max_seq_len:
            raise InvalidRequest(f"history of {len(request.history)} items plus top_n {request.top_n} "
                                 f"needs {needed} positions; the model has {self.max_seq_len}")

    def generate(self, requests: list[DecodeRequest], cache_rows: list[int]) -> list[DecodeResult]:
        """Decode a batch of requests, each in its own target cache row; rows finish independently."""
        for request in requests:
            self.validate(request)
        rows = [self._start(req, cache_row) for req, cache_row in zip(requests, cache_rows)]
        active = [row for row in rows if not row.done]
        while active:
            self._round(active)
            active = [row for row in active if not row.done]
        return [row.result for row in rows]

    def _start(self, request: DecodeRequest, cache_row: int) -> _Row:
        banned = request.history if request.exclude_history else ()
        constraint = ListConstraint(self.trie, banned)
        row = _Row(
            request=request,
            cache_row=cache_row,
            constraint=constraint,
            result=DecodeResult(items=[], scores=[], tokens=[]),
            rng=np.random.default_rng(request.seed) if request.temperature > 0 else None,
            pending=[BOS] + self.sids.encode_items(list(request.history)),
        )
        self._extend_forced(row)
        return row

    def _round(self, rows: list[_Row]) -> None:
        """One batched target call over every active row's pending tokens; one choice per row."""
        lengths = np.array([len(r.pending) for r in rows])
        tokens = np.full((len(rows), lengths.max()), PAD, dtype=np.int64)
        for i, r in enumerate(rows):
            tokens[i, : len(r.pending)] = r.pending
        start = np.array([r.committed for r in rows])
        scores = self.target.score(np.array([r.cache_row for r in rows]), start, tokens, lengths)
        for i, row in enumerate(rows):
            row.committed += len(row.pending)
            row.pending = []
            row.result.stats.target_calls += 1
            logits = scores.logits[i, lengths[i] - 1]
            token, logp = choose_token(
                logits, row.constraint.allowed(), row.request.temperature, row.request.top_p, row.rng
            )
            row.result.stats.chosen_tokens += 1
            self._accept(row, token, logp)
            self._extend_forced(row)

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
