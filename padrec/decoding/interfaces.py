"""What the engine needs from its hosts: requests in, results out, and a target to score tokens.

The offline host implements `TargetScorer` with a torch or ONNX Runtime model and a KV cache in
the same process; the Triton BLS host implements it with a BLS call to the `target` model, which
keeps the cache beside itself. The engine cannot tell the difference.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


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


@dataclass
class DecodeStats:
    """Per-request counters. tau = tokens produced per target forward, the bonus token included."""

    target_calls: int = 0  # forwards of the target, prefill included
    forced_tokens: int = 0  # tokens the constraints dictated (no forward of their own)
    chosen_tokens: int = 0  # tokens chosen from a target distribution

    @property
    def tau(self) -> float:
        return self.chosen_tokens / max(1, self.target_calls)


@dataclass
class DecodeResult:
    items: list[int]
    scores: list[float]  # log-probability of each item under the constrained target distribution
    tokens: list[int]  # generated tokens (codes and separators)
    stats: DecodeStats = field(default_factory=DecodeStats)


@dataclass
class TargetScores:
    logits: np.ndarray  # [B, T, V] float32
    hidden: np.ndarray  # [B, T, D] last-layer features (what drafts condition on)


class TargetScorer(Protocol):
    """Scores new tokens of several cache rows in one forward.

    Row r's cache keeps its first start[r] positions; tokens[r, :lengths[r]] are written after them
    and scored (positions beyond lengths[r] are padding). Moving start back is the rollback.
    """

    def score(self, rows: np.ndarray, start: np.ndarray, tokens: np.ndarray, lengths: np.ndarray) -> TargetScores: ...
