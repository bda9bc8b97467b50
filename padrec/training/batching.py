"""Token sequences of user histories, packed into length-bucketed batches (little padding)."""

from __future__ import annotations

import numpy as np
import torch

from padrec.semantic_ids import BOS, PAD, SemanticIds


def item_windows(sequences, window: int, stride: int) -> list[list[int]]:
    """Cut each item sequence into windows of at most `window` items, `stride` apart.

    Worked example, 40 items with window 30 and stride 15: items 0..29 and 10..39 (the last window
    is aligned to the end, so no window is shorter than it needs to be).
    """
    out = []
    for seq in sequences:
        if len(seq) < 2:
            continue
        if len(seq) <= window:
            out.append(list(seq))
            continue
        starts = list(range(0, len(seq) - window, stride)) + [len(seq) - window]
        out.extend(list(seq[s : s + window]) for s in starts)
    return out


def shuffle_tails(windows: list[list[int]], n: int, rng: np.random.Generator) -> list[list[int]]:
    """Each window with its last `n` items (all of a shorter one) in a random order."""
    if n < 0:
        raise ValueError(f"shuffle_tail_items must be >= 0, got {n}")
    return [w[:-n] + rng.permutation(w[-n:]).tolist() for w in windows] if n > 0 else windows


def to_tokens(sids: SemanticIds, item_lists) -> list[np.ndarray]:
    """BOS followed by every item's tokens."""
    return [np.asarray([BOS] + sids.encode_items(items), dtype=np.int64) for items in item_lists]


def length_buckets(lengths: list[int], tokens_per_batch: int, rng: np.random.Generator | None) -> list[np.ndarray]:
    """Indices grouped so that batch_size x longest <= tokens_per_batch; shuffled if rng is given."""
    order = np.argsort(lengths, kind="stable")
    if rng is not None:  # shuffle within equal lengths too, so batches differ between epochs
        jitter = rng.random(len(lengths))
        order = np.lexsort((jitter, np.asarray(lengths)))
    batches, current, longest = [], [], 0
    for i in order:
        longest_if_added = max(longest, lengths[i])
        if current and longest_if_added * (len(current) + 1) > tokens_per_batch:
            batches.append(np.asarray(current))
            current, longest_if_added = [], lengths[i]
        current.append(i)
        longest = longest_if_added
    if current:
        batches.append(np.asarray(current))
    if rng is not None:
        rng.shuffle(batches)
    return batches


def pad(seqs: list[np.ndarray]) -> torch.Tensor:
    """Right-padded [B, longest] tensor of token sequences."""
    out = np.full((len(seqs), max(len(s) for s in seqs)), PAD, dtype=np.int64)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = s
    return torch.from_numpy(out)
