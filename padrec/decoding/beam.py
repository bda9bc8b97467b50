"""Constrained beam search over the next item: the quality reference for the greedy lists.

For each user the beams start from the history; each of the item's code levels expands every beam
by its allowed children and keeps the `width` best by summed log-probability. The finished beams
are distinct items, ranked by score (the TIGER-style top-K).
"""

from __future__ import annotations

import numpy as np
import torch

from padrec.decoding.constraints import ItemTrie, ListConstraint
from padrec.decoding.sampling import constrained_log_probs
from padrec.decoding.torch_target import TorchTarget
from padrec.models.target import Target
from padrec.semantic_ids import BOS, PAD


@torch.inference_mode()
def beam_search(
    model: Target, trie: ItemTrie, histories: list[list[int]], width: int, top_k: int, exclude_history: bool = True
) -> list[list[int]]:
    """Top-k items per history by beam search of the given width (one batched pass for all)."""
    sids = trie.sids
    n_users = len(histories)
    target = TorchTarget(model, n_users * width, sids)
    # prefill each user's prompt into its first row; the first level's beams all descend from it
    # and the row reordering below copies its cache to the others
    prompts = [[BOS] + sids.encode_items(h) for h in histories]
    lengths = np.array([len(p) for p in prompts])
    tokens = np.full((n_users, lengths.max()), PAD, dtype=np.int64)
    for u, p in enumerate(prompts):
        tokens[u, : len(p)] = p
    first_rows = np.arange(n_users) * width
    logits = np.zeros((n_users * width, sids.vocab_size), dtype=np.float32)
    logits[first_rows] = target.score(first_rows, np.zeros(n_users, dtype=np.int64), tokens, lengths).logits[
        np.arange(n_users), lengths - 1
    ]
    rows = np.arange(n_users * width)
    beams = [[(0.0, ListConstraint(trie, h if exclude_history else ()), [])] for h in histories]
    start = lengths.repeat(width)
    for _level in range(sids.num_levels):
        next_tokens = np.full(n_users * width, PAD, dtype=np.int64)
        for u in range(n_users):
            # every (beam, allowed token) candidate, scored; keep the `width` best
            parent, token, total = [], [], []
            for b, (score, constraint, _path) in enumerate(beams[u]):
                allowed = constraint.allowed()
                parent.append(np.full(len(allowed), b))
                token.append(allowed)
                total.append(score + constrained_log_probs(logits[u * width + b], allowed))
            parent, token, total = np.concatenate(parent), np.concatenate(token), np.concatenate(total)
            best = np.argsort(-total, kind="stable")[:width]
            new_beams = []
            for j in best.tolist():
                constraint = beams[u][parent[j]][1].copy()
                constraint.advance(int(token[j]))
                new_beams.append((float(total[j]), constraint, beams[u][parent[j]][2] + [int(token[j])], int(parent[j])))
            # reorder cache rows so that beam j continues from its parent's cache
            parents = [u * width + nb[3] for nb in new_beams]
            dest = list(range(u * width, u * width + len(new_beams)))
            filled = int(start[u * width])
            # (an item-embedding target's mark logs need no copy: beams score codes before an
            # item's last one only, and a mark looks back from an item's last token)
            for cache in (target.cache.k, target.cache.v):
                cache[:, dest, :, :filled] = cache[:, parents, :, :filled]
            beams[u] = [nb[:3] for nb in new_beams]
            next_tokens[dest] = [nb[2][-1] for nb in new_beams]
        if _level + 1 < sids.num_levels:
            out = target.score(rows, start, next_tokens[:, None], np.ones_like(start))
            logits = out.logits[:, 0]
            start = start + 1
    return [[sids.decode_item(path) for _, _, path in beams[u][:top_k]] for u in range(n_users)]
