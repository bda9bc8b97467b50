"""Constrained beam search over the next item: a history's top-K items, ranked by the target;
plain, or speculative with a draft and exactly the same result.

For each request the beams start from the history; each of the item's code levels expands every
beam by the tokens its trie prefix allows and keeps the `beam_width` best by summed log-probability
under the constrained target distribution. The finished beams are distinct items, ranked by score
(the TIGER-style top-K).

A beam's children can be ranked once the target's next-token logits after its codes are known
(its *scores*). Plain search gets them level by level: one batched forward per level, each beam in
a cache row of its own, continued from its parent's row (`score(..., sources=...)`: no prefix is
scored twice and no cache leaves the target). Speculative search (a request's draft_width > 0)
gets most of them at once: after the first level the draft runs its own beam search of
draft_width prefixes per deeper level (`DraftScorer`: the draft's distributions, several
continuations per prefix), and one target forward scores every path of that tree, each in a row.
Each level is then expanded exactly as plain search would (the target's own scores, the same
order of candidates); a beam the tree missed is scored by a forward of its own (a fallback), unless
its children cannot make the width: a child scores at most its parent, so a beam scoring below
the width-th child already ranked is skipped. What differs from plain search is only how many
forwards the scores took, and float rounding (a prefix scored inside a longer path rather than on
its own), which can reorder candidates whose scores tie to within about 1e-6.

With `one_row` the same searches score differently: each call lays a request's prefixes out as a
token tree in the request's one target cache row, after the prompt (`TreeTargetScorer`,
`padrec.decoding.tree`: siblings never see each other, so each prefix is scored as if alone), every
prefix recomputed from the prompt's cache. A forward on this CPU costs per row far more than per
token (docs/findings.md), so one row of 60 tokens is cheaper than 20 rows of 1; and the request
holds one target row instead of one per beam (the draft still keeps a row per node it expands).

Like `ListDecoder`, it calls only its scorers, so the offline hosts and the Triton BLS model run
the same search. A beam whose prefix allows a single code (its log-probability is 0) needs no
scores of its own, in either mode.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from padrec.decoding.constraints import ItemTrie, ListConstraint
from padrec.decoding.interfaces import (
    BeamRequest, DecodeResult, DecodeStats, DraftScorer, InvalidRequest, TargetScorer, validate_history,
)
from padrec.decoding.sampling import constrained_log_probs
from padrec.decoding.tree import TreeLayout
from padrec.semantic_ids import BOS, PAD

Codes = tuple[int, ...]


@dataclass
class _Beam:
    score: float  # summed constrained log-probability of the codes so far (target's; draft's estimate in a tree)
    constraint: ListConstraint  # positioned after the codes so far
    codes: Codes


@dataclass
class _Search:
    """One request's search: its beams, the target scores known so far, what its cache rows hold."""

    request: BeamRequest
    rows: list[int]  # its cache rows, of the target and of the draft
    prompt: list[int]
    beams: list[_Beam]
    stats: DecodeStats = field(default_factory=DecodeStats)
    scores: dict[Codes, np.ndarray] = field(default_factory=dict)  # next-token target logits after each prefix
    log_probs: dict[Codes, np.ndarray] = field(default_factory=dict)  # those scores over each prefix's allowed codes
    paths: dict[int, Codes] = field(default_factory=dict)  # target cache row -> codes it holds after the prompt
    prompt_features: np.ndarray | None = None  # the target's features of the prompt (drafting only)

    @property
    def drafting(self) -> bool:
        return self.request.draft_width > 0


@dataclass
class _Feed:
    """New tokens for one target cache row: `codes[len(kept):]` after the prompt and `kept` (copied from `source`)."""

    row: int
    source: int
    kept: Codes
    codes: Codes


class BeamDecoder:
    """Top-K items per history by constrained beam search with a target, and optionally a draft."""

    def __init__(self, trie: ItemTrie, target: TargetScorer, max_seq_len: int, max_beam_width: int = 20,
                 draft: DraftScorer | None = None, max_draft_width: int = 0, one_row: bool = False):
        self.trie = trie
        self.one_row = one_row  # needs a target that scores trees (`TreeTargetScorer`)
        self.sids = trie.sids
        self.target = target
        self.draft = draft
        self.max_seq_len = max_seq_len
        self.max_beam_width = max_beam_width
        self.max_draft_width = max_draft_width if draft is not None else 0

    def rows_needed(self, request: BeamRequest) -> int:
        """Cache rows a request holds (`beam_rows`; with `one_row`, `one_row_rows`)."""
        if self.one_row:
            return one_row_rows(request.beam_width, request.draft_width)
        return beam_rows(self.sids.num_levels, request.beam_width, request.draft_width)

    def validate(self, request: BeamRequest) -> None:
        """Raise InvalidRequest naming the first problem with a request."""
        validate_history(self.sids, request.history)
        if not 1 <= request.beam_width <= self.max_beam_width:
            raise InvalidRequest(f"beam_width must be in 1..{self.max_beam_width}, got {request.beam_width}")
        if not 1 <= request.top_n <= request.beam_width:
            raise InvalidRequest(f"top_n must be in 1..beam_width ({request.beam_width}), got {request.top_n}")
        if not 0 <= request.draft_width <= self.max_draft_width:
            raise InvalidRequest(f"draft_width must be in 0..{self.max_draft_width}, got {request.draft_width}"
                                 + ("" if self.draft else " (this decoder has no draft)"))
        needed = 1 + len(request.history) * self.sids.tokens_per_item + self._positions_after_prompt(request)
        if needed > self.max_seq_len:
            raise InvalidRequest(f"history of {len(request.history)} items needs {needed} positions; "
                                 f"the model has {self.max_seq_len}")

    def _positions_after_prompt(self, request: BeamRequest) -> int:
        """Cache positions a request's calls write after its prompt: a beam's codes, or with
        `one_row` the largest tree a call can lay out (every beam's path at the last scored level,
        or the draft's tree)."""
        levels = self.sids.num_levels
        if not self.one_row:
            return levels
        return max(request.beam_width * (levels - 1), request.beam_width + request.draft_width * max(0, levels - 2))

    def generate(self, requests: list[BeamRequest], cache_rows: list[list[int]],
                 cancelled: Callable[[int], bool] | None = None) -> list[DecodeResult]:
        """Search a batch of requests; request i uses cache rows cache_rows[i] (`rows_needed` of them).
        Each result's items are its top_n, best first, with their scores; its stats count target
        forwards (target_calls), drafted prefixes (drafted) and the levels after the draft's tree
        that needed no forward of their own (accepted). cancelled(i), asked before every level, ends
        request i's search there: its result has no items and says `cancelled`."""
        for request, rows in zip(requests, cache_rows, strict=True):
            self.validate(request)
            if len(rows) != self.rows_needed(request):
                raise ValueError(f"this beam request needs {self.rows_needed(request)} cache rows, got {len(rows)}")
        searches = [_Search(r, list(rows), [BOS] + self.sids.encode_items(list(r.history)),
                            [_Beam(0.0, ListConstraint(self.trie, r.history if r.exclude_history else ()), ())])
                    for r, rows in zip(requests, cache_rows)]
        self._prefill(searches)
        stopped: set[int] = set()
        for level in range(self.sids.num_levels):
            if cancelled is not None:
                stopped |= {i for i in range(len(searches)) if i not in stopped and cancelled(i)}
            active = [s for i, s in enumerate(searches) if i not in stopped]
            if not active:
                break
            if level == 1:
                self._score_first_level(active)
            elif level > 1:
                self._score_missing(active)
            for s in active:
                self._expand(s)
        return [DecodeResult([], [], [], s.stats, cancelled=True) if i in stopped else self._result(s)
                for i, s in enumerate(searches)]

    # --- the target's scores ---------------------------------------------------------------------

    def _prefill(self, searches: list[_Search]) -> None:
        """Score each prompt in its request's first row: the scores of the empty prefix."""
        lengths = np.array([len(s.prompt) for s in searches], dtype=np.int64)
        tokens = np.full((len(searches), lengths.max()), PAD, dtype=np.int64)
        for u, s in enumerate(searches):
            tokens[u, : len(s.prompt)] = s.prompt
        out = self.target.score(np.array([s.rows[0] for s in searches], dtype=np.int64),
                                np.zeros(len(searches), dtype=np.int64), tokens, lengths)
        for u, s in enumerate(searches):
            s.stats.target_calls += 1
            s.scores[()] = out.logits[u, lengths[u] - 1]
            s.paths[s.rows[0]] = ()
            if s.drafting:
                s.prompt_features = out.hidden[u, : lengths[u]]

    def _score_missing(self, searches: list[_Search]) -> None:
        """One forward for the beams whose children could make the width but have no scores yet
        (plain search, and the fallback of a speculative one)."""
        pending = []
        for s in searches:
            missing = [b.codes for b in self._missing(s)]
            if missing:
                pending.append((s, missing))
            elif s.drafting:
                s.stats.accepted += 1  # a level the draft's tree covered
        self._score(pending)

    def _score(self, pending: list[tuple[_Search, list[Codes]]]) -> None:
        """One target forward scoring each request's paths (and every prefix of them on the way)."""
        if self.one_row:
            self._score_trees(pending)
        else:
            self._score_feeds([(s, self._place(s, paths)) for s, paths in pending])

    def _score_trees(self, pending: list[tuple[_Search, list[Codes]]]) -> None:
        """`_score` with `one_row`: each request's paths as one token tree in its first row, after the
        prompt: every prefix once, parents before children. Scores already known are kept (a prefix
        scored again in a larger tree differs only by float rounding)."""
        trees = [(s, _prefixes(paths)) for s, paths in pending if paths]
        if not trees:
            return
        lengths = np.array([len(nodes) for _, nodes in trees], dtype=np.int64)
        tokens = np.full((len(trees), lengths.max()), PAD, dtype=np.int64)
        parents = np.full((len(trees), lengths.max()), -1, dtype=np.int64)  # -1: after the prompt (and padding)
        for u, (_, nodes) in enumerate(trees):
            index = {node: i for i, node in enumerate(nodes)}
            tokens[u, : len(nodes)] = [node[-1] for node in nodes]
            parents[u, : len(nodes)] = [index.get(node[:-1], -1) for node in nodes]
        out = self.target.score(np.array([s.rows[0] for s, _ in trees], dtype=np.int64),
                                np.array([len(s.prompt) for s, _ in trees], dtype=np.int64), tokens, lengths,
                                tree=TreeLayout.from_parents(parents))
        for u, (s, nodes) in enumerate(trees):
            s.stats.target_calls += 1
            for i, node in enumerate(nodes):
                s.scores.setdefault(node, out.logits[u, i])

    def _missing(self, s: _Search) -> list[_Beam]:
        """The beams of s whose scores the next expansion needs and nobody has: those with more than
        one allowed code, no scores, and a score at least the width-th best child already ranked."""
        ranked = _children(s.beams, lambda beam, allowed: self._log_probs(s, beam, allowed))[2]
        unknown = [b for b in s.beams if len(b.constraint.allowed()) > 1 and b.codes not in s.scores]
        width = s.request.beam_width
        if unknown and len(ranked) >= width:
            floor = np.partition(np.asarray(ranked), len(ranked) - width)[len(ranked) - width]
            unknown = [b for b in unknown if b.score >= floor]
        return unknown

    def _place(self, s: _Search, paths: list[Codes]) -> list[_Feed]:
        """A cache row for each path, fed from the row holding the longest prefix of it; rows that
        hold what a beam not being fed still needs are kept."""
        fed = set(paths)
        keep = {self._longest_prefix(s, b.codes)[0] for b in s.beams if not any(p[: len(b.codes)] == b.codes for p in fed)}
        free = [r for r in s.rows if r not in keep]
        feeds = []
        for row, codes in zip(free, paths, strict=False):
            source, kept = self._longest_prefix(s, codes)
            feeds.append(_Feed(row, source, kept, codes))
        if len(feeds) < len(paths):
            raise RuntimeError(f"{len(paths)} paths and {len(free)} free cache rows")  # rows_needed guarantees room
        return feeds

    @staticmethod
    def _longest_prefix(s: _Search, codes: Codes) -> tuple[int, Codes]:
        """The cache row holding the longest prefix of `codes`, and that prefix."""
        best_row, best = None, -1
        for row, held in s.paths.items():
            n = 0
            while n < min(len(held), len(codes)) and held[n] == codes[n]:
                n += 1
            if n > best:
                best_row, best = row, n
        return best_row, codes[:best]

    def _score_feeds(self, feeds: list[tuple[_Search, list[_Feed]]]) -> None:
        """One target forward of every feed; records the scores after each new prefix and what each row holds."""
        flat = [(s, f) for s, fs in feeds for f in fs]
        if not flat:
            return
        new = [f.codes[len(f.kept):] for _, f in flat]
        lengths = np.array([len(n) for n in new], dtype=np.int64)
        tokens = np.full((len(flat), lengths.max()), PAD, dtype=np.int64)
        for i, n in enumerate(new):
            tokens[i, : len(n)] = n
        start = np.array([len(s.prompt) + len(f.kept) for s, f in flat], dtype=np.int64)
        out = self.target.score(np.array([f.row for _, f in flat], dtype=np.int64), start, tokens, lengths,
                                sources=np.array([f.source for _, f in flat], dtype=np.int64))
        for s, fs in feeds:
            s.stats.target_calls += int(bool(fs))
        for i, (s, f) in enumerate(flat):
            s.paths[f.row] = f.codes
            for j in range(len(new[i])):
                s.scores[f.codes[: len(f.kept) + j + 1]] = out.logits[i, j]

    # --- the draft's tree ------------------------------------------------------------------------

    def _score_first_level(self, searches: list[_Search]) -> None:
        """One target forward for the first level's beams: a plain request's beams, a speculative
        request's draft tree (one path per leaf)."""
        pending = [(s, [b.codes for b in self._missing(s)]) for s in searches if not s.drafting]
        drafting = [s for s in searches if s.drafting]
        if drafting:
            self._draft_prompts(drafting)
            trees = [_Tree.rooted(s) for s in drafting]
            for depth in range(1, self.sids.num_levels - 1):
                self._draft_step(trees, depth)
            pending += [(t.search, _leaves([n.codes for n in t.nodes])) for t in trees]
        self._score(pending)

    def _draft_prompts(self, searches: list[_Search]) -> None:
        """The draft reads each prompt (the target's features, each beside the token after it) into
        the request's first row: what every path of its tree continues from."""
        lengths = np.array([len(s.prompt) - 1 for s in searches], dtype=np.int64)
        dim = searches[0].prompt_features.shape[-1]
        features = np.zeros((len(searches), lengths.max(), dim), dtype=np.float32)
        tokens = np.full((len(searches), lengths.max()), PAD, dtype=np.int64)
        for u, s in enumerate(searches):
            features[u, : lengths[u]] = s.prompt_features[:-1]
            tokens[u, : lengths[u]] = s.prompt[1:]
        self.draft.score(np.array([s.rows[0] for s in searches], dtype=np.int64),
                         np.zeros(len(searches), dtype=np.int64), features, tokens, lengths, 1)

    def _draft_step(self, trees: list["_Tree"], depth: int) -> None:
        """One draft forward of every tree's frontier (node j in its request's row j, continued from
        its parent's row), then each tree grows by the draft_width best children of its frontier by
        parent score + draft log-probability."""
        flat = [(t, j) for t in trees for j in range(len(t.frontier))]
        if not flat:
            return
        rows = np.array([t.search.rows[j] for t, j in flat], dtype=np.int64)
        start = np.array([len(t.search.prompt) - 2 + depth for t, _ in flat], dtype=np.int64)
        features = np.stack([t.features[j] for t, j in flat])[:, None].astype(np.float32, copy=False)
        tokens = np.array([t.frontier[j].codes[-1] for t, j in flat], dtype=np.int64)[:, None]
        sources = np.array([t.sources[j] for t, j in flat], dtype=np.int64)
        out = self.draft.score(rows, start, features, tokens, np.ones(len(flat), dtype=np.int64), depth, sources)
        offset = 0
        for t in trees:
            n = len(t.frontier)
            t.grow(out.logits[offset : offset + n, 0], out.features[offset : offset + n, 0])
            offset += n

    # --- expanding and finishing -----------------------------------------------------------------

    def _expand(self, s: _Search) -> None:
        """Replace s's beams by the beam_width best one-code extensions under the target's scores
        (beams without scores were shown unable to contribute by `_missing`)."""
        parent, token, total = _children(s.beams, lambda beam, allowed: self._log_probs(s, beam, allowed))
        s.beams, _ = _best(s.beams, parent, token, total, s.request.beam_width)

    @staticmethod
    def _log_probs(s: _Search, beam: _Beam, allowed: np.ndarray) -> np.ndarray | None:
        """The target's constrained log-probabilities of a beam's allowed codes (0 for a single one),
        None while its scores are unknown; computed once per prefix."""
        if len(allowed) == 1:
            return np.zeros(1)
        if beam.codes not in s.log_probs and beam.codes in s.scores:
            s.log_probs[beam.codes] = constrained_log_probs(s.scores[beam.codes], allowed)
        return s.log_probs.get(beam.codes)

    def _result(self, s: _Search) -> DecodeResult:
        top = s.beams[: s.request.top_n]
        items = [self.sids.decode_item(list(b.codes)) for b in top]
        return DecodeResult(items=items, scores=[b.score for b in top],
                            tokens=[t for item in items for t in self.sids.encode_item(item)], stats=s.stats)


@dataclass
class _Tree:
    """A speculative request's draft tree while the draft grows it, level by level."""

    search: _Search
    nodes: list[_Beam]  # every node so far (prefix-closed; scores: the draft's estimates below the first level)
    frontier: list[_Beam]  # the deepest level's nodes
    features: list[np.ndarray]  # per frontier node, the feature the draft reads beside its last code
    sources: list[int]  # per frontier node, the draft row holding its parent's pairs

    @classmethod
    def rooted(cls, s: _Search) -> "_Tree":
        """The tree of a request's first-level beams, each read after the prompt's last feature."""
        return cls(s, list(s.beams), list(s.beams), [s.prompt_features[-1]] * len(s.beams), [s.rows[0]] * len(s.beams))

    def grow(self, logits: np.ndarray, features: np.ndarray) -> None:
        """Add the draft_width best children of the frontier (logits[j], features[j]: the draft's
        output at frontier node j); they become the frontier."""
        logits_of = {id(node): logits[j] for j, node in enumerate(self.frontier)}
        chosen, parents = _best(self.frontier, *_children(self.frontier, lambda node, allowed: constrained_log_probs(
            logits_of[id(node)], allowed)), self.search.request.draft_width)
        self.features = [features[p] for p in parents]
        self.sources = [self.search.rows[p] for p in parents]
        self.frontier = chosen
        self.nodes.extend(chosen)
        self.search.stats.drafted += len(chosen)


def beam_rows(num_levels: int, beam_width: int, draft_width: int) -> int:
    """Cache rows a beam request holds: one per beam, and one per prefix the draft adds beyond the
    first level (the draft's tree has at most one path, hence one row, per node)."""
    return beam_width + draft_width * max(0, num_levels - 2)


def one_row_rows(beam_width: int, draft_width: int) -> int:
    """Cache rows a `one_row` request holds: the target's one, and the draft's row per node it
    expands at once (a level's beams, then its draft_width prefixes), when it drafts."""
    return max(beam_width, draft_width) if draft_width else 1


def _prefixes(paths: list[Codes]) -> list[Codes]:
    """Every non-empty prefix of `paths`, once, shorter first (so parents come before children)."""
    return sorted({path[:n] for path in paths for n in range(1, len(path) + 1)}, key=lambda c: (len(c), c))


def _children(nodes: list[_Beam], log_probs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every allowed one-code extension of `nodes` whose log-probability is known: parent index,
    code and summed score, in node then trie order. log_probs(node, allowed) gives a node's
    log-probabilities over its allowed codes, or None to leave it out."""
    parent, token, total = [np.zeros(0, dtype=np.int64)], [np.zeros(0, dtype=np.int64)], [np.zeros(0)]
    for j, node in enumerate(nodes):
        allowed = node.constraint.allowed()
        logp = log_probs(node, allowed) if len(allowed) else None
        if logp is not None:
            parent.append(np.full(len(allowed), j))
            token.append(allowed)
            total.append(node.score + logp)
    return np.concatenate(parent), np.concatenate(token), np.concatenate(total)


def _best(beams: list[_Beam], parent: np.ndarray, token: np.ndarray, total: np.ndarray,
          width: int) -> tuple[list[_Beam], list[int]]:
    """The `width` best candidates (beam parent[i] + code token[i], scoring total[i]) as beams, and
    the index of each one's parent. The sort is stable: ties keep parent, then trie order."""
    best = np.argsort(-total, kind="stable")[:width].tolist()
    out = []
    for j in best:
        constraint = beams[parent[j]].constraint.copy()
        constraint.advance(int(token[j]))
        out.append(_Beam(float(total[j]), constraint, beams[parent[j]].codes + (int(token[j]),)))
    return out, [int(parent[j]) for j in best]


def _leaves(nodes: list[Codes]) -> list[Codes]:
    """The nodes of a prefix-closed tree that are no other node's prefix (each a path to score)."""
    inner = {n[:-1] for n in nodes}
    return [n for n in nodes if n not in inner]
