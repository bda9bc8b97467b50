"""What a call returns: immutable, typed views of the `recommend` models' outputs."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["DecodeStats", "Recommendation", "StreamedItem"]


@dataclass(frozen=True)
class DecodeStats:
    """How the speculative decoder did on one request.

    Attributes:
        rounds: target forwards, the prefill included.
        drafted: draft tokens proposed.
        accepted: draft tokens the target accepted.
        tau: tokens per target forward, the bonus token included.
    """

    rounds: int
    drafted: int
    accepted: int
    tau: float

    @property
    def acceptance_rate(self) -> float:
        """accepted / drafted, 0.0 when nothing was drafted (plain decoding)."""
        return self.accepted / self.drafted if self.drafted else 0.0


@dataclass(frozen=True)
class Recommendation:
    """One user's recommended list.

    Attributes:
        items: external item IDs, in generation order (the first is the most likely next item).
        scores: each item's log-probability under the target, aligned with `items`.
        stats: the decoder's counters for this request.
        history_truncated: the history was longer than the model takes and only its most
            recent items were used.
        replica: the endpoint of the server that answered.
    """

    items: tuple[str, ...]
    scores: tuple[float, ...]
    stats: DecodeStats
    history_truncated: bool
    replica: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain lists and numbers, ready for `json.dumps`."""
        return {
            "items": list(self.items),
            "scores": list(self.scores),
            "stats": asdict(self.stats),
            "history_truncated": self.history_truncated,
            "replica": self.replica,
        }


@dataclass(frozen=True)
class StreamedItem:
    """One item of a streamed list, sent as soon as the server decided it.

    Attributes:
        rank: 0-based position in the list.
        item: the external item ID.
        score: its log-probability under the target.
        stats: the decoder's counters so far (running totals up to this item).
        history_truncated: as in `Recommendation`.
        replica: the endpoint of the server that sent it; a stream resumed on another replica
            after a failure names the new one from then on.
    """

    rank: int
    item: str
    score: float
    stats: DecodeStats
    history_truncated: bool
    replica: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain values, ready for `json.dumps` (one line per item in the command line)."""
        return {
            "rank": self.rank,
            "item": self.item,
            "score": self.score,
            "stats": asdict(self.stats),
            "history_truncated": self.history_truncated,
            "replica": self.replica,
        }
