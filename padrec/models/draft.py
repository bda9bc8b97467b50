"""The draft: EAGLE-style feature prediction, plus PAD-Rec's position awareness.

At position t the draft reads the target's last-layer feature f_t and the embedding of the token
that follows it, x_{t+1}, and predicts the next feature f_{t+1}; the target's (frozen) output head
turns that into next-token logits. At depth >= 2 of a draft round the feature is the draft's own
prediction, which is where errors compound.

PAD-Rec adds two signals to the fused input z = fc([embed(x_{t+1}); f_t]):
  (a) item position: z += alpha * E_item[slot of the token being predicted], alpha learnable;
      a token's meaning depends on its slot inside its item (code level 0..L-1, or separator),
      read from the position (`predicted_slots`), which tells it whatever the token ids do;
  (b) step position: z += sigmoid(W_g f_t) * E_step[draft depth], a gate computed from the
      current feature decides how much the depth matters for this context. Depths beyond those
      training unrolls (`DraftConfig.step_depths`) share the deepest trained embedding.
With both off this is the plain EAGLE-style baseline: one code path, switched by `DraftConfig`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn as nn

from padrec.config import DraftConfig, ModelConfig
from padrec.models.layers import Block, RMSNorm, TiedHead, attention_mask, rope_tables, run_blocks
from padrec.models.target import KVCache, Target


def predicted_slots(draft_positions: torch.Tensor, tokens_per_item: int) -> torch.Tensor:
    """The within-item slot of the token a draft position predicts.

    Draft position t holds the pair (f_t, x_{t+1}) and predicts x_{t+2}, which sits at sequence
    position t + 2 (BOS is at 0), so its slot is `SemanticIds.slot_at(t + 2)` = (t + 1) mod
    tokens_per_item. Worked example with 4 code levels and separators: position 0 (x_1, the first
    item's level-0 code) predicts slot 1; position 3 (its level-3 code) the separator, slot 4;
    position 4 (that separator) the next item's level 0. Read from positions, not tokens, so it
    holds when code levels share one vocabulary.
    """
    return (draft_positions + 1) % tokens_per_item


@dataclass
class DraftOutput:
    features: torch.Tensor  # [B, T, D] predicted next features
    logits: torch.Tensor  # [B, T, V] through the target's head
    new_k: torch.Tensor  # [n_layers, B, H, T, hd]
    new_v: torch.Tensor


class Draft(nn.Module):
    def __init__(self, config: DraftConfig, target_config: ModelConfig, vocab_size: int, num_slots: int):
        super().__init__()
        self.config = config
        self.target_config = target_config
        self.vocab_size = vocab_size
        self.num_slots = num_slots
        d = target_config.d_model
        # the target's token embedding doubles as its output head; frozen, copied in by from_target
        self.register_buffer("token_embedding", torch.zeros(vocab_size, d))
        self.fc = nn.Linear(2 * d, d, bias=False)
        if config.item_position:
            self.item_embedding = nn.Embedding(num_slots, d)
            self.item_coefficient = nn.Parameter(torch.tensor(config.item_coefficient_init))
        if config.step_position:
            self.step_embedding = nn.Embedding(config.k_max + 1, d)  # depth 1..k_max (0 unused)
            self.step_gate = nn.Linear(d, d)
        self.blocks = nn.ModuleList(
            Block(d, target_config.n_heads, target_config.d_ff, 0.0, target_config.norm_eps)
            for _ in range(config.n_layers)
        )
        self.norm = RMSNorm(d, target_config.norm_eps)
        self.head = TiedHead()
        cos, sin = rope_tables(target_config.max_seq_len + 64, target_config.head_dim, target_config.rope_base)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        for name, module in self.named_modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                position = name in ("item_embedding", "step_embedding")
                nn.init.normal_(module.weight, std=config.position_init_std if position else 0.02)

    @classmethod
    def from_target(cls, config: DraftConfig, target: Target, num_slots: int) -> "Draft":
        draft = cls(config, target.config, target.vocab_size, num_slots)
        draft.token_embedding.copy_(target.embed.weight.detach())
        return draft

    def fuse(self, features: torch.Tensor, tokens: torch.Tensor, slots: torch.Tensor, depth: torch.Tensor) -> torch.Tensor:
        """The draft's input z [B, T, D] from f_t, x_{t+1} and the two PAD-Rec position signals."""
        z = self.fc(torch.cat([self.token_embedding[tokens], features], dim=-1))
        if self.config.item_position:
            z = z + self.item_coefficient * self.item_embedding(slots)
        if self.config.step_position:
            gate = torch.sigmoid(self.step_gate(features))
            z = z + gate * self.step_embedding(depth.clamp(1, min(self.config.step_depths, self.config.k_max)))
        return z

    def decode(self, z, positions, mask, past_k=None, past_v=None) -> DraftOutput:
        """The decoder layer(s) over z at the given positions, with an explicit attention mask."""
        z, new_k, new_v = run_blocks(self.blocks, z, positions, self.rope_cos, self.rope_sin, mask, past_k, past_v)
        predicted = self.norm(z)
        return DraftOutput(predicted, self.head(predicted, self.head_weight), new_k, new_v)

    def forward(
        self,
        features: torch.Tensor,  # [B, T, D] f_t (target's, or the draft's own at depth >= 2)
        tokens: torch.Tensor,  # [B, T] x_{t+1}
        slots: torch.Tensor,  # [B, T] within-item slot of x_{t+2}, the token being predicted
        depth: torch.Tensor,  # [B, T] draft depth, 1 = conditioned on a real target feature
        past_k: torch.Tensor | None = None,  # [n_layers, B, H, S, hd]
        past_v: torch.Tensor | None = None,
        past_lengths: torch.Tensor | None = None,  # [B]
    ) -> DraftOutput:
        B, T, _ = features.shape
        start = past_lengths[:, None] if past_lengths is not None else tokens.new_zeros(B, 1)
        positions = start + torch.arange(T, device=tokens.device)  # pair t sits at draft position t
        S = past_k.shape[3] if past_k is not None else 0
        return self.decode(self.fuse(features, tokens, slots, depth), positions,
                           attention_mask(past_lengths, S, T), past_k, past_v)

    @property
    def head_weight(self) -> torch.Tensor:
        """The output head's weight: the target's token embedding (frozen)."""
        return self.token_embedding

    def new_cache(self, rows: int, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> KVCache:
        c = self.target_config
        return KVCache(self.config.n_layers, rows, c.n_heads, c.max_seq_len, c.head_dim, device=device, dtype=dtype)

    def save(self, path: Path, extra: dict | None = None) -> None:
        state = {k: v.half() for k, v in self.state_dict().items()}
        torch.save({"config": asdict(self.config), "target_config": asdict(self.target_config),
                    "vocab_size": self.vocab_size, "num_slots": self.num_slots, "state": state, **(extra or {})}, path)

    @classmethod
    def load(cls, path: Path) -> "Draft":
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        draft = cls(DraftConfig(**ckpt["config"]), ModelConfig(**ckpt["target_config"]), ckpt["vocab_size"],
                    ckpt["num_slots"])
        draft.load_state_dict({k: v.float() for k, v in ckpt["state"].items()})
        return draft.eval()
