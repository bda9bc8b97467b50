"""Building blocks shared by the target and the draft: RMSNorm, rotary positions, attention
with a length-masked read-only cache, SwiGLU.

Attention is written as matmul + softmax with a boolean mask (no fused kernel), so the same code
trains in torch and exports to ONNX graphs that TensorRT parses (see export/).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # divided by the root, not multiplied by rsqrt (nor F.rms_norm, exported the same way): this
        # is the pattern ONNX Runtime fuses into one SimplifiedLayerNormalization node instead of 7
        return x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rope_tables(max_len: int, head_dim: int, base: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin of shape [max_len, head_dim], laid out for `apply_rope`: the angle of pair i at
    entries 2i and 2i + 1, sin with the sign of its term (-sin, +sin)."""
    inv_freq = 1.0 / base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    angles = torch.outer(torch.arange(max_len, dtype=torch.float32), inv_freq)
    sin = angles.sin()
    return angles.cos().repeat_interleave(2, dim=-1), torch.stack((-sin, sin), dim=-1).flatten(-2)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate pairs (x1, x2) of x [..., T, hd] by per-position angles: (x1 cos - x2 sin,
    x2 cos + x1 sin); cos/sin from `rope_tables`, indexed by position and broadcastable to x.

    Written as x * cos + swap(x) * sin with each pair swapped: half the ops of rotating the halves
    separately, and bitwise the same result (a + b * -s is a - b * s in IEEE arithmetic).
    """
    swapped = x.unflatten(-1, (-1, 2)).flip(-1).flatten(-2)
    return x * cos + swapped * sin


def attention_mask(past_lengths: torch.Tensor | None, past_capacity: int, new_len: int,
                   new_visible: torch.Tensor | None = None) -> torch.Tensor:
    """Boolean [B or 1, 1, T, S + T]: query t may see past key j < length and new keys 0..t, or,
    with `new_visible` [B, T, T] (a token tree: each token sees its ancestors and itself), the new
    keys that says.

    Worked example, a row with past length 2 in a cache slice of 3, two new tokens:
        query 0: [1 1 0 | 1 0]
        query 1: [1 1 0 | 1 1]
    """
    device = past_lengths.device if past_lengths is not None else None
    if new_visible is None:
        new = torch.ones(new_len, new_len, dtype=torch.bool, device=device).tril()[None, None]  # [1,1,T,T]
    else:
        new = new_visible[:, None]  # [B,1,T,T]
    if past_lengths is None:
        return new
    past = torch.arange(past_capacity, device=device)[None, :] < past_lengths[:, None]  # [B,S]
    past = past[:, None, None, :].expand(-1, 1, new_len, past_capacity)  # [B,1,T,S]
    return torch.cat([past, new.expand(past.shape[0], 1, new_len, new_len)], dim=-1)


def tree_step_mask(visible: torch.Tensor) -> torch.Tensor:
    """Boolean [B, 1, T, S + T] for a draft step over token-tree nodes: node t sees the cached entries
    visible[b, t] [B, T, S] and, of the new ones, only itself (its ancestors are among the cached)."""
    T = visible.shape[1]
    arange = torch.arange(T, device=visible.device)
    own = (arange[:, None] == arange[None, :]).expand(visible.shape[0], T, T)
    return torch.cat([visible, own], dim=-1)[:, None]


class Attention(nn.Module):
    def __init__(self, d_model: int, n_heads: int, dropout: float):
        super().__init__()
        self.n_heads = n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.out = nn.Linear(d_model, d_model, bias=False)
        self.dropout = dropout

    def forward(self, x, cos, sin, mask, past_k=None, past_v=None):
        """x [B, T, D]; past_k/v [B, H, S, hd] (read-only); mask from `attention_mask`, or None where
        every query sees every key. Returns y [B, T, D] and this call's k, v."""
        B, T, D = x.shape
        qkv = self.qkv(x).view(B, T, 3, self.n_heads, D // self.n_heads).permute(2, 0, 3, 1, 4)  # [3,B,H,T,hd]
        q, k = apply_rope(qkv[:2], cos, sin)  # q and k in one rotation
        v = qkv[2]
        scale = q.shape[-1] ** -0.5
        # scores against the past and the new keys separately: concatenating the (large) past K/V
        # would copy the whole cache on every call; concatenating the scores copies T x (S + T)
        scores = q @ k.transpose(-1, -2)  # [B,H,T,T]
        if past_k is not None:
            scores = torch.cat([q @ past_k.transpose(-1, -2), scores], dim=-1)  # [B,H,T,S+T]
        scores = scores * scale if mask is None else torch.where(mask, scores * scale, torch.finfo(scores.dtype).min)
        weights = _dropout(scores.softmax(-1), self.dropout, self.training)
        if past_v is None:
            y = weights @ v
        else:
            S = past_v.shape[2]
            y = weights[..., :S] @ past_v + weights[..., S:] @ v
        return self.out(y.transpose(1, 2).reshape(B, T, D)), k, v


class TiedHead(nn.Module):
    """The output head tied to a token embedding owned elsewhere: logits = hidden @ weight^T.

    A module without parameters of its own (the state dict is unchanged), so that inference can
    swap in a prepared copy (`padrec.models.inference`); its owner exposes the weight as `head_weight`.
    """

    def forward(self, hidden: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return hidden @ weight.T


class SwiGLU(nn.Module):
    def __init__(self, d_model: int, d_ff: int):
        super().__init__()
        self.gate_up = nn.Linear(d_model, 2 * d_ff, bias=False)
        self.down = nn.Linear(d_ff, d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.down(F.silu(gate) * up)


class Block(nn.Module):
    """Pre-norm decoder layer: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float, eps: float):
        super().__init__()
        self.attn_norm = RMSNorm(d_model, eps)
        self.attn = Attention(d_model, n_heads, dropout)
        self.mlp_norm = RMSNorm(d_model, eps)
        self.mlp = SwiGLU(d_model, d_ff)
        self.dropout = dropout

    def forward(self, x, cos, sin, mask, past_k=None, past_v=None):
        h, k, v = self.attn(self.attn_norm(x), cos, sin, mask, past_k, past_v)
        x = x + _dropout(h, self.dropout, self.training)
        x = x + _dropout(self.mlp(self.mlp_norm(x)), self.dropout, self.training)
        return x, k, v


def _dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """F.dropout, skipped outright where it is the identity (inference: a call per use is
    measurable at batch 1)."""
    return F.dropout(x, p, training) if training and p > 0 else x


def run_blocks(blocks, x, positions, rope_cos, rope_sin, mask, past_k=None, past_v=None):
    """x [B, T, D] through decoder blocks at absolute `positions` [B, T], with an optional read-only
    cache past_k/v [L, B, H, S, hd]; returns x and the new K/V stacked per layer [L, B, H, T, hd]."""
    cos, sin = rope_cos[positions][:, None], rope_sin[positions][:, None]  # [B,1,T,hd]
    ks, vs = [], []
    for i, block in enumerate(blocks):
        x, k, v = block(x, cos, sin, mask, *((past_k[i], past_v[i]) if past_k is not None else ()))
        ks.append(k)
        vs.append(v)
    return x, torch.stack(ks), torch.stack(vs)
