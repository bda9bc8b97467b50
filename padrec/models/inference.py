"""Preparing a trained model for small-batch CPU inference (the torch hosts of the engine).

At batch 1 a forward multiplies a handful of rows (1 when decoding plainly, pending + draft tokens
when verifying) by every weight matrix. `F.linear` hands MKL the weight as stored, and MKL re-packs
it on every call with more than one row: at 5 rows the default target's linear layers cost about
2.5x what they cost at 1 row, although both read the same weights. Packing each weight once into
oneDNN's blocked layout makes their cost nearly flat from 1 to 8 rows. Plain and speculative
decoding run the same prepared model, so both get the gain.
"""

from __future__ import annotations

import copy
from typing import TypeVar

import torch
import torch.nn as nn

M = TypeVar("M", bound=nn.Module)

PACKED_ROWS = 8  # rows oneDNN tunes the packed layout for; 1..8 rows all run near the 1-row cost


def packing_available() -> bool:
    """True where this torch build can pre-pack linear weights (oneDNN on CPU)."""
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


class PackedLinear(nn.Module):
    """`nn.Linear` for inference with its weight pre-packed by oneDNN (no autograd)."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.packed = torch.ops.mkldnn._reorder_linear_weight(linear.weight.detach(), PACKED_ROWS)
        self.bias = None if linear.bias is None else linear.bias.detach()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._linear_pointwise(x, self.packed, self.bias, "none", [], "")


def for_inference(model: M) -> M:
    """A copy of `model` in eval mode without gradients, its Linear layers pre-packed where the
    build allows it (otherwise the copy computes exactly what `model` does). A model this returned
    is returned as is, so hosts of one model can share one copy."""
    if getattr(model, "prepared_for_inference", False):
        return model
    model = copy.deepcopy(model).eval().requires_grad_(False)
    model.prepared_for_inference = True
    if packing_available():
        for parent in list(model.modules()):
            for name, child in list(parent.named_children()):
                if isinstance(child, nn.Linear):
                    setattr(parent, name, PackedLinear(child))
    return model
