"""Paired comparison of two drafters on the same users: is one's tau really higher than the other's?

Both drafters decode the same test users with the same target, so their per-user acceptance lengths
are paired; the user-to-user spread (long histories, easy lists) cancels in the difference. The
95% interval comes from a paired bootstrap: users resampled with replacement, both drafters' values
of a resampled user kept together.
"""

from __future__ import annotations

import numpy as np


def paired_comparison(values: list[float], baseline: list[float], resamples: int = 2000, seed: int = 0) -> dict:
    """Mean of `values` against mean of `baseline` (same users, same order): the mean difference,
    the ratio of means, and a paired-bootstrap 95% interval for each."""
    a, b = np.asarray(values, dtype=float), np.asarray(baseline, dtype=float)
    if a.shape != b.shape or a.ndim != 1 or len(a) == 0:
        raise ValueError(f"paired values need two equally long non-empty lists, got {a.shape} and {b.shape}")
    picks = np.random.default_rng(seed).integers(0, len(a), size=(resamples, len(a)))
    boot_a, boot_b = a[picks].mean(axis=1), b[picks].mean(axis=1)
    return {"users": len(a), "mean": float(a.mean()), "baseline_mean": float(b.mean()),
            "difference": float(a.mean() - b.mean()),
            "difference_ci95": [float(x) for x in np.percentile(boot_a - boot_b, [2.5, 97.5])],
            "ratio": float(a.mean() / b.mean()),
            "ratio_ci95": [float(x) for x in np.percentile(boot_a / boot_b, [2.5, 97.5])],
            "users_higher": int((a > b).sum()), "users_lower": int((a < b).sum())}
