"""The target recommender: a decoder-only transformer over semantic-ID tokens.

One forward serves training (no cache), prefill and speculative verification (a read-only cache
plus n new tokens per row). It returns logits, the last-layer hidden states (the draft's input
features) and the K/V of the new tokens, which the owner of the cache writes (see `KVCache`); the
graph itself never touches a cache, which keeps it exportable.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn as nn

from padrec.config import ModelConfig
from padrec.models.layers import Block, RMSNorm, TiedHead, attention_mask, rope_tables, run_blocks


@dataclass
class ForwardOutput:
    logits: torch.Tensor  # [B, T, V]
    hidden: torch.Tensor  # [B, T, D] last layer, after the final norm
    new_k: torch.Tensor  # [L, B, H, T, hd]
    new_v: torch.Tensor  # [L, B, H, T, hd]


class KVCache:
    """Pre-allocated K/V per layer for a pool of rows, with the caller owning the length pointers.

    A call scores T new tokens of a row starting at position `start[b]`: everything at or beyond
    `start[b]` is dropped (rejected draft tokens vanish by moving the pointer back) and the T new
    entries are written there. The buffer has `slack` spare positions for the tail of a write.
    """

    def __init__(self, n_layers: int, rows: int, n_heads: int, capacity: int, head_dim: int, slack: int = 16,
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32):
        shape = (n_layers, rows, n_heads, capacity + slack, head_dim)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.capacity = capacity
        self.slack = slack

    def view(self, rows: torch.Tensor, start: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """K/V of the given rows up to the longest start: [L, B, H, S, hd] each (read-only). `rows`
        and `start` are host (CPU) tensors wherever the cache lives: reading them costs no device sync."""
        S = int(start.max())
        block = self._consecutive(rows)
        if block is not None:
            return self.k[:, block, :, :S], self.v[:, block, :, :S]  # no copy
        rows = rows.to(self.k.device)
        return self.k[:, rows, :, :S], self.v[:, rows, :, :S]

    def write(self, rows: torch.Tensor, start: torch.Tensor, new_k: torch.Tensor, new_v: torch.Tensor) -> None:
        """Store new_k/new_v [L, B, H, T, hd] of each row at positions start[b] .. start[b] + T - 1."""
        T = new_k.shape[3]
        if int(start.max()) + T > self.k.shape[3]:
            raise ValueError(f"KV cache full: {int(start.max()) + T} positions, capacity {self.capacity}")
        if len(rows) == 1:  # a plain slice assignment: a third of an indexed write's cost at batch 1
            row, first = int(rows[0]), int(start[0])
            self.k[:, row, :, first : first + T] = new_k[:, 0]
            self.v[:, row, :, first : first + T] = new_v[:, 0]
            return
        self.write_at(rows.to(self.k.device), start.to(self.k.device), new_k, new_v)

    def write_at(self, rows: torch.Tensor, start: torch.Tensor, new_k: torch.Tensor, new_v: torch.Tensor) -> None:
        """`write` with rows and starts already on the cache's device, unchecked: no host sync, so a
        CUDA graph can hold it (the caller checks the capacity)."""
        # one indexed write of exactly the new entries: indices rows [B, 1] and positions [B, T] put
        # the indexed dims first, so the values go in as [B, T, L, H, hd]
        positions = start[:, None] + torch.arange(new_k.shape[3], device=self.k.device)
        self.k[:, rows[:, None], :, positions] = new_k.permute(1, 3, 0, 2, 4)
        self.v[:, rows[:, None], :, positions] = new_v.permute(1, 3, 0, 2, 4)

    def copy(self, sources: torch.Tensor, rows: torch.Tensor, length: int) -> None:
        """Give each of `rows` the first `length` positions of the row in `sources` beside it. All
        are read before any is written, so a permutation of rows is safe (a beam's reordering)."""
        sources, rows = sources.to(self.k.device), rows.to(self.k.device)
        self.k[:, rows, :, :length] = self.k[:, sources, :, :length]
        self.v[:, rows, :, :length] = self.v[:, sources, :, :length]

    def keep(self, row: int, start: int, indices: torch.Tensor) -> None:
        """Row `row` keeps the entries at start + indices (ascending) as its positions start, start + 1,
        ...: the path a token tree's verification accepted, moved up over the branches it dropped."""
        source = start + indices.to(self.k.device)
        n = len(indices)
        self.k[:, row, :, start : start + n] = self.k[:, row, :, source]  # the gather copies before writing
        self.v[:, row, :, start : start + n] = self.v[:, row, :, source]

    @staticmethod
    def _consecutive(rows: torch.Tensor) -> slice | None:
        """`rows` as a slice of the pool when they are consecutive and ascending (plain slicing: no copy)."""
        first = int(rows[0])
        if len(rows) == 1 or rows.tolist() == list(range(first, first + len(rows))):
            return slice(first, first + len(rows))
        return None


class Target(nn.Module):
    def __init__(self, config: ModelConfig, vocab_size: int, num_items: int = 0):
        super().__init__()
        if config.item_embedding and num_items < 1:
            raise ValueError("an item-embedding target needs the catalogue's num_items")
        self.config = config
        self.vocab_size = vocab_size
        self.num_items = num_items if config.item_embedding else 0
        self.embed = nn.Embedding(vocab_size, config.d_model)
        # row 0 (no item here) stays zero: padding_idx keeps it out of every update
        self.item_embed = nn.Embedding(num_items + 1, config.d_model, padding_idx=0) if config.item_embedding else None
        self.blocks = nn.ModuleList(
            Block(config.d_model, config.n_heads, config.d_ff, config.dropout, config.norm_eps)
            for _ in range(config.n_layers)
        )
        self.norm = RMSNorm(config.d_model, config.norm_eps)
        self.head = TiedHead()
        cos, sin = rope_tables(config.max_seq_len + 64, config.head_dim, config.rope_base)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.apply(_init_weights)
        if self.item_embed is not None:
            nn.init.zeros_(self.item_embed.weight[0])

    def forward(
        self,
        tokens: torch.Tensor,  # [B, T]
        past_k: torch.Tensor | None = None,  # [L, B, H, S, hd]
        past_v: torch.Tensor | None = None,
        past_lengths: torch.Tensor | None = None,  # [B]
        items: torch.Tensor | None = None,  # [B, T] `SemanticIds.item_marks`; item-embedding targets only
        tree: tuple[torch.Tensor, torch.Tensor] | None = None,  # a token tree: (depths [B, T], ancestors [B, T, T])
    ) -> ForwardOutput:
        """Scores T new tokens per row after its past_lengths cached ones: a sequence, or with `tree`
        a token tree, where token t sits at position past_length + depths[t] and sees the cached
        tokens, its ancestors and itself (`padrec.decoding.tree.TreeLayout`)."""
        B, T = tokens.shape
        start = past_lengths[:, None] if past_lengths is not None else tokens.new_zeros(B, 1)
        offsets = torch.arange(T, device=tokens.device) if tree is None else tree[0]
        positions = start + offsets  # [B,T]
        S = past_k.shape[3] if past_k is not None else 0
        x = self.embed(tokens)
        if self.item_embed is not None:
            if items is None:
                raise ValueError("this target embeds items: pass the item marks of the tokens")
            if self.training and self.config.item_dropout > 0:
                items = items * (torch.rand(items.shape) >= self.config.item_dropout)
            x = x + self.item_embed(items)
        x, new_k, new_v = run_blocks(self.blocks, x, positions, self.rope_cos, self.rope_sin,
                                     attention_mask(past_lengths, S, T, None if tree is None else tree[1]),
                                     past_k, past_v)
        hidden = self.norm(x)
        logits = self.head(hidden, self.head_weight)
        return ForwardOutput(logits, hidden, new_k, new_v)

    @property
    def head_weight(self) -> torch.Tensor:
        """The output head's weight: the token embedding (tied)."""
        return self.embed.weight

    def new_cache(self, rows: int, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> KVCache:
        c = self.config
        return KVCache(c.n_layers, rows, c.n_heads, c.max_seq_len, c.head_dim, device=device, dtype=dtype)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def save(self, path: Path, extra: dict | None = None) -> None:
        """fp16 weights + config: small enough to commit."""
        state = {k: v.half() for k, v in self.state_dict().items()}
        torch.save({"config": asdict(self.config), "vocab_size": self.vocab_size, "num_items": self.num_items,
                    "state": state, **(extra or {})}, path)

    @classmethod
    def load(cls, path: Path) -> "Target":
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        model = cls(ModelConfig(**ckpt["config"]), ckpt["vocab_size"], ckpt.get("num_items", 0))
        model.load_state_dict({k: v.float() for k, v in ckpt["state"].items()})
        return model.eval()


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, std=0.02)
