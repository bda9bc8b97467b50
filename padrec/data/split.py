"""Leave-one-out split in time order.

For a user with items s_1 .. s_n: training uses s_1 .. s_{n-2}; validation predicts s_{n-1} from the
history before it; test predicts s_n from the history before it. Histories keep the most recent
`max_history` items. Model selection looks at validation targets only, never at test targets.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from padrec.config import SplitConfig
from padrec.data.datasets import Dataset


@dataclass
class Example:
    """One held-out prediction: the user's (truncated) history and the item that came next."""

    user: str
    history: list[int]  # internal item indices, oldest first
    target: int


@dataclass
class Split:
    """Internal item indices 0..num_items-1 (in `item_ids` order) and the three parts."""

    item_ids: list[str]  # internal index -> external item id
    train: dict[str, list[int]]  # user -> training items (full, untruncated)
    valid: list[Example]
    test: list[Example]

    @property
    def num_items(self) -> int:
        return len(self.item_ids)

    def item_popularity(self) -> np.ndarray:
        """Interaction counts per item over the training sequences."""
        counts = np.zeros(self.num_items, dtype=np.int64)
        for seq in self.train.values():
            np.add.at(counts, seq, 1)
        return counts


def leave_one_out(dataset: Dataset, config: SplitConfig = SplitConfig()) -> Split:
    """Split every user with at least `config.min_sequence` items; shorter users are dropped."""
    item_ids = dataset.items
    index = {item: i for i, item in enumerate(item_ids)}
    train, valid, test = {}, [], []
    for user, seq in dataset.sequences.items():
        if len(seq) < config.min_sequence:
            continue
        items = [index[i] for i in seq]
        train[user] = items[:-2]
        valid.append(Example(user, items[:-2][-config.max_history :], items[-2]))
        test.append(Example(user, items[:-1][-config.max_history :], items[-1]))
    return Split(item_ids=item_ids, train=train, valid=valid, test=test)
