"""Training windows: cutting sequences, and shuffling their tails."""

import numpy as np
import pytest

from padrec.training.batching import item_windows, shuffle_tails


def test_windows_cover_a_long_sequence_and_end_at_its_end():
    windows = item_windows([list(range(40))], window=30, stride=15)
    assert windows == [list(range(0, 30)), list(range(10, 40))]


def test_shuffled_tails_keep_the_heads_and_the_tail_items():
    rng = np.random.default_rng(0)
    windows = [list(range(100, 130)), [1, 2, 3]]
    shuffled = [shuffle_tails(windows, 10, rng) for _ in range(20)]
    for long, short in shuffled:
        assert long[:20] == windows[0][:20] and sorted(long[20:]) == windows[0][20:]
        assert sorted(short) == [1, 2, 3]  # shorter than the tail: all of it is the tail
    assert len({tuple(long[20:]) for long, _ in shuffled}) > 1  # a fresh order each call
    assert shuffle_tails(windows, 0, rng) == windows
    with pytest.raises(ValueError, match="shuffle_tail_items"):
        shuffle_tails(windows, -1, rng)
