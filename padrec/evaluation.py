"""Recall@K and NDCG@K of generated lists against each user's held-out item."""

from __future__ import annotations

import numpy as np
from tqdm import tqdm

from padrec.data.split import Example, Split
from padrec.decoding.beam import BeamDecoder
from padrec.decoding.constraints import ItemTrie
from padrec.decoding.engine import ListDecoder
from padrec.decoding.interfaces import BeamRequest, DecodeRequest
from padrec.decoding.torch_target import TorchTarget
from padrec.models.target import Target


def ranking_metrics(lists: list[list[int]], targets: list[int], ks=(5, 10)) -> dict[str, float]:
    """Mean Recall@K and NDCG@K with one relevant item per user (leave-one-out)."""
    out = {}
    for k in ks:
        hits = [lst[:k].index(t) if t in lst[:k] else -1 for lst, t in zip(lists, targets)]
        out[f"recall@{k}"] = float(np.mean([h >= 0 for h in hits]))
        out[f"ndcg@{k}"] = float(np.mean([1.0 / np.log2(h + 2) if h >= 0 else 0.0 for h in hits]))
    return out


def popularity_lists(split: Split, examples: list[Example], n: int, exclude_history: bool = True) -> list[list[int]]:
    """The n most popular training items, minus each user's history when excluded."""
    ranked = np.argsort(-split.item_popularity(), kind="stable")[: n + max(len(e.history) for e in examples)]
    lists = []
    for e in examples:
        seen = set(e.history) if exclude_history else set()
        lists.append([int(i) for i in ranked if i not in seen][:n])
    return lists


def generated_lists(
    model: Target, trie: ItemTrie, examples: list[Example], top_n: int = 10, batch_size: int = 64,
    progress: bool = True, **decode_options,
) -> list[list[int]]:
    """Lists from the target's constrained decoding (greedy unless decode_options say otherwise)."""
    decoder = ListDecoder(trie, TorchTarget(model, batch_size, trie.sids), model.config.max_seq_len)
    lists = []
    for start in tqdm(range(0, len(examples), batch_size), desc="generate", disable=not progress):
        chunk = examples[start : start + batch_size]
        requests = [DecodeRequest(tuple(e.history), top_n=top_n, **decode_options) for e in chunk]
        lists.extend(r.items for r in decoder.generate(requests, list(range(len(chunk)))))
    return lists


def beam_lists(
    model: Target, trie: ItemTrie, examples: list[Example], width: int = 20, top_n: int = 10,
    users_per_batch: int = 16, progress: bool = True,
) -> list[list[int]]:
    """Top-n items by beam search of `width` beams (`BeamDecoder` on the torch target), a batch of
    users at a time."""
    decoder = BeamDecoder(trie, TorchTarget(model, users_per_batch * width, trie.sids), model.config.max_seq_len,
                          width)
    lists = []
    for start in tqdm(range(0, len(examples), users_per_batch), desc="beam", disable=not progress):
        chunk = examples[start : start + users_per_batch]
        requests = [BeamRequest(tuple(e.history), top_n=top_n, beam_width=width) for e in chunk]
        rows = [list(range(u * width, (u + 1) * width)) for u in range(len(chunk))]
        lists.extend(r.items for r in decoder.generate(requests, rows))
    return lists


def best_setting(metrics: dict[float, dict[str, float]], key: str = "recall@10",
                 tiebreak: str = "ndcg@10") -> float:
    """The setting (e.g. a prior's BETA) whose lists score highest on `key`, then on `tiebreak`;
    among exact ties the smallest, the one that changes the target's own decoding least."""
    return max(metrics, key=lambda s: (metrics[s][key], metrics[s][tiebreak], -s))
