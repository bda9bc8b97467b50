"""Constrained beam search over the next item: a history's top-K items, ranked by the target.

For each request the beams start from the history; each of the item's code levels expands every
beam by the tokens its trie prefix allows and keeps the `beam_width` best by summed log-probability
under the constrained target distribution. The finished beams are distinct items, ranked by score
(the TIGER-style top-K).

Like `ListDecoder`, it calls a `TargetScorer` and nothing else, so the offline hosts and the Triton
BLS model run the same search. A request holds `beam_width` cache rows: its prompt is prefilled once,
into the first, and each level's one batched forward continues every surviving beam in a row of its
own from its parent's row (`score(..., sources=parents)`): no prefix is scored twice and no cache
leaves the target. The last code level needs no forward of its own: its scores come from the
forward after the level before.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from padrec.decoding.constraints import ItemTrie, ListConstraint
from padrec.decoding.interfaces import (
    BeamRequest, DecodeResult, DecodeStats, InvalidRequest, TargetScorer, validate_history,
)
from padrec.decoding.sampling import constrained_log_probs
from padrec.semantic_ids import BOS, PAD


@dataclass
class _Beam:
    score: float  # summed constrained log-probability of the codes so far
    constraint: ListConstraint  # positioned after the codes so far
    codes: list[int]


class BeamDecoder:
    """Top-K items per history by constrained beam search with a target."""

    def __init__(self, trie: ItemTrie, target: TargetScorer, max_seq_len: int, max_beam_width: int = 20):
        self.trie = trie
        self.sids = trie.sids
        self.target = target
        self.max_seq_len = max_seq_len
        self.max_beam_width = max_beam_width

    def validate(self, request: BeamRequest) -> None:
        """Raise InvalidRequest naming the first problem with a request."""
        validate_history(self.sids, request.history)
        if not 1 <= request.beam_width <= self.max_beam_width:
            raise InvalidRequest(f"beam_width must be in 1..{self.max_beam_width}, got {request.beam_width}")
        if not 1 <= request.top_n <= request.beam_width:
            raise InvalidRequest(f"top_n must be in 1..beam_width ({request.beam_width}), got {request.top_n}")
        needed = 1 + len(request.history) * self.sids.tokens_per_item + self.sids.num_levels
        if needed > self.max_seq_len:
            raise InvalidRequest(f"history of {len(request.history)} items needs {needed} positions; "
                                 f"the model has {self.max_seq_len}")

    def generate(self, requests: list[BeamRequest], cache_rows: list[list[int]]) -> list[DecodeResult]:
        """Search a batch of requests; request i uses cache rows cache_rows[i] (beam_width of them).
        Each result's items are its top_n, best first, with their scores; its stats count forwards."""
        for request, rows in zip(requests, cache_rows, strict=True):
            self.validate(request)
            if len(rows) != request.beam_width:
                raise ValueError(f"a beam request of width {request.beam_width} needs as many cache rows, got {len(rows)}")
        prompts = [[BOS] + self.sids.encode_items(list(r.history)) for r in requests]
        logits = self._prefill(prompts, [rows[0] for rows in cache_rows])  # [R, V]: one parent per request
        beams = [[_Beam(0.0, ListConstraint(self.trie, r.history if r.exclude_history else ()), [])]
                 for r in requests]
        stats = [DecodeStats(target_calls=1) for _ in requests]
        for level in range(self.sids.num_levels):
            parents = [self._expand(u, beams, logits[u], r.beam_width) for u, r in enumerate(requests)]
            if level + 1 == self.sids.num_levels:
                break
            # the new beam j of request u continues in row j of u, from the row of its parent
            rows, sources, tokens, beam_of = [], [], [], []
            for u, (own, parent_of) in enumerate(zip(cache_rows, parents)):
                for j, (beam, parent) in enumerate(zip(beams[u], parent_of)):
                    rows.append(own[j])
                    sources.append(own[parent])
                    tokens.append(beam.codes[-1])
                    beam_of.append(u)
                stats[u].target_calls += 1
            start = np.array([len(prompts[u]) + level for u in beam_of], dtype=np.int64)
            out = self.target.score(np.array(rows, dtype=np.int64), start, np.array(tokens, dtype=np.int64)[:, None],
                                    np.ones(len(rows), dtype=np.int64), sources=np.array(sources, dtype=np.int64))
            logits = _split(out.logits[:, 0], [len(b) for b in beams])
        return [self._result(r, b, s) for r, b, s in zip(requests, beams, stats)]

    def _prefill(self, prompts: list[list[int]], rows: list[int]) -> np.ndarray:
        """Logits of the next token after each prompt, [R, 1, V] (a parent of one beam each)."""
        lengths = np.array([len(p) for p in prompts], dtype=np.int64)
        tokens = np.full((len(prompts), lengths.max()), PAD, dtype=np.int64)
        for u, p in enumerate(prompts):
            tokens[u, : len(p)] = p
        out = self.target.score(np.array(rows, dtype=np.int64), np.zeros(len(prompts), dtype=np.int64), tokens, lengths)
        return out.logits[np.arange(len(prompts)), lengths - 1][:, None]

    def _expand(self, u: int, beams: list[list[_Beam]], logits: np.ndarray, width: int) -> list[int]:
        """Replace request u's beams by the `width` best one-code extensions (logits[b]: beam b's
        next-token logits); returns the parent index of each new beam."""
        parent, token, total = [], [], []
        for b, beam in enumerate(beams[u]):
            allowed = beam.constraint.allowed()
            parent.append(np.full(len(allowed), b))
            token.append(allowed)
            total.append(beam.score + constrained_log_probs(logits[b], allowed))
        parent, token, total = np.concatenate(parent), np.concatenate(token), np.concatenate(total)
        best = np.argsort(-total, kind="stable")[:width].tolist()  # stable: ties keep trie order
        new = []
        for j in best:
            constraint = beams[u][parent[j]].constraint.copy()
            constraint.advance(int(token[j]))
            new.append(_Beam(float(total[j]), constraint, beams[u][parent[j]].codes + [int(token[j])]))
        beams[u] = new
        return [int(parent[j]) for j in best]

    def _result(self, request: BeamRequest, beams: list[_Beam], stats: DecodeStats) -> DecodeResult:
        top = beams[: request.top_n]
        items = [self.sids.decode_item(b.codes) for b in top]
        return DecodeResult(items=items, scores=[b.score for b in top],
                            tokens=[t for item in items for t in self.sids.encode_item(item)], stats=stats)


def _split(logits: np.ndarray, counts: list[int]) -> list[np.ndarray]:
    """Per request, the rows of `logits` that belong to its beams (in order)."""
    return np.split(logits, np.cumsum(counts)[:-1])
