"""Paired comparison of two drafters' per-user tau: the interval covers what it should, and no more."""

import numpy as np
import pytest

from padrec.paired import paired_comparison


def test_a_constant_per_user_gain_is_found_with_a_tight_interval():
    rng = np.random.default_rng(1)
    baseline = rng.uniform(1.5, 4.0, size=400)  # a wide user-to-user spread, which pairing cancels
    result = paired_comparison(list(baseline * 1.05), list(baseline))
    assert result["ratio"] == pytest.approx(1.05)
    assert 1.04 < result["ratio_ci95"][0] <= 1.05 <= result["ratio_ci95"][1] < 1.06
    assert result["difference_ci95"][0] > 0
    assert result["users_higher"] == 400 and result["users_lower"] == 0


def test_no_difference_gives_an_interval_around_one():
    rng = np.random.default_rng(2)
    baseline = rng.uniform(1.5, 4.0, size=500)
    noisy = baseline + rng.normal(0.0, 0.3, size=500)
    result = paired_comparison(list(noisy), list(baseline))
    assert result["ratio_ci95"][0] < 1.0 < result["ratio_ci95"][1]
    assert result["difference_ci95"][0] < 0.0 < result["difference_ci95"][1]
    # an unpaired interval would be several times wider; the paired one only carries the 0.3 noise
    assert result["difference_ci95"][1] - result["difference_ci95"][0] < 4 * 0.3 / np.sqrt(500) * 1.5


def test_unequal_lengths_are_refused():
    with pytest.raises(ValueError, match="equally long"):
        paired_comparison([1.0, 2.0], [1.0])
