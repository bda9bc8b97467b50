"""Choosing a token from the target's constrained distribution: greedy or sampled.

`prior` (per allowed token, from `ListConstraint.prior()`; None = none) is added to the model's
log-probabilities before tempering, so greedy picks and samples follow it; the log-probability a
chosen token is scored with is always the model's own.
"""

from __future__ import annotations

import numpy as np


def constrained_log_probs(logits: np.ndarray, allowed: np.ndarray, temperature: float = 1.0,
                          prior: np.ndarray | None = None) -> np.ndarray:
    """log-softmax of (logits[allowed] + prior) / temperature: the distribution restricted to allowed tokens."""
    z = logits[allowed].astype(np.float64)
    if prior is not None:
        z += prior
    z /= temperature
    z -= z.max()
    return z - np.log(np.exp(z).sum())


def top_p_filter(log_probs: np.ndarray, top_p: float) -> np.ndarray:
    """Keep the smallest set of most likely entries whose mass reaches top_p; renormalise."""
    if top_p >= 1.0:
        return log_probs
    order = np.argsort(-log_probs, kind="stable")
    mass = np.cumsum(np.exp(log_probs[order]))
    keep = order[: int(np.searchsorted(mass, top_p) + 1)]
    out = np.full_like(log_probs, -np.inf)
    out[keep] = log_probs[keep] - np.log(np.exp(log_probs[keep]).sum())
    return out


def constrained_distribution(logits: np.ndarray, allowed: np.ndarray, temperature: float, top_p: float = 1.0,
                             prior: np.ndarray | None = None) -> np.ndarray:
    """Full-vocabulary probabilities: zero outside `allowed`, tempered and top-p filtered inside."""
    probs = np.zeros(len(logits), dtype=np.float64)
    probs[allowed] = np.exp(top_p_filter(constrained_log_probs(logits, allowed, temperature, prior), top_p))
    return probs / probs.sum()


def greedy_scores(logits: np.ndarray, allowed: np.ndarray, prior: np.ndarray | None = None) -> np.ndarray:
    """What greedy decoding compares among the allowed tokens: their logits, plus the prior."""
    return logits[allowed] if prior is None else logits[allowed] + prior


def choose_token(
    logits: np.ndarray, allowed: np.ndarray, temperature: float, top_p: float, rng: np.random.Generator | None,
    prior: np.ndarray | None = None,
) -> tuple[int, float]:
    """The next token and its log-probability under the constrained target distribution.

    temperature 0 is greedy (ties go to the lowest token id); otherwise a sample at that
    temperature after top-p filtering. The returned log-probability is always at temperature 1
    and without the prior, so scores are comparable across decoding settings.
    """
    scores = constrained_log_probs(logits, allowed)
    if temperature <= 0.0:
        pick = int(np.argmax(greedy_scores(logits, allowed, prior)))
    else:
        probs = constrained_distribution(logits, allowed, temperature, top_p, prior)[allowed]
        pick = int(rng.choice(len(allowed), p=probs))
    return int(allowed[pick]), float(scores[pick])
