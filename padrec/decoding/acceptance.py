"""The acceptance rule of speculative decoding, as pure functions.

A round verifies draft tokens d_1..d_k against the target's distributions p_1..p_{k+1} (one per
position, all computed by one forward). Definitions used throughout padrec:
  - accepted tokens: the longest prefix d_1..d_a that the rule keeps;
  - bonus token: the target's own token at position a + 1, chosen from p_{a+1} (greedy), or from
    the residual distribution after a rejection (sampling), or from p_{k+1} when all k passed;
  - tau: tokens produced per target forward = accepted + 1 (the bonus), averaged over rounds.

Greedy: d_j is accepted iff it equals the target's argmax at position j, so the output is exactly
the target's greedy output. Sampling (Leviathan et al. 2023; Chen et al. 2023): accept d_j with
probability min(1, p_j(d_j) / q_j(d_j)); on rejection draw from norm(max(0, p_j - q_j)). The
output is then distributed exactly as sampling from the target alone, for any draft q.
Constraints (catalogue trie, no repeats) are applied to p before the rule, so they hold too.
"""

from __future__ import annotations

import numpy as np


def greedy_accepts(target_token: int, draft_token: int) -> bool:
    """Greedy verification of one position: keep the draft token iff the target would choose it."""
    return target_token == draft_token


def rejection_step(p: np.ndarray, q: np.ndarray, draft_token: int, rng: np.random.Generator) -> tuple[bool, int]:
    """One position of speculative sampling over full-vocabulary distributions p (target), q (draft).

    Returns (accepted, token): the draft token if accepted, else a sample from the residual.
    """
    q_d = q[draft_token]
    if q_d > 0 and rng.random() * q_d < p[draft_token]:  # u < p/q without dividing by zero
        return True, draft_token
    residual = np.maximum(p - q, 0.0)
    total = residual.sum()
    if total <= 0:  # p == q up to rounding: any rejection is a rounding artefact; fall back to p
        residual, total = p, p.sum()
    return False, int(rng.choice(len(p), p=residual / total))
