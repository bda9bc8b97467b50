"""Preparing a trained model for small-batch CPU inference (the torch hosts of the engine).

At batch 1 a forward multiplies a handful of rows (1-3 when decoding plainly, pending + draft
tokens when verifying) by every weight matrix, and the kernel that does it best depends on the
number of rows. `F.linear` hands MKL the weight as stored, which MKL re-packs on every call with
more than one row: at 5 rows the default target's linear layers cost about 2.5x what they cost at
1 row, although both read the same weights. Measured on the project's CPU, for every shape of the
default target and draft: up to 2 rows, a product with the weight stored transposed ([in, out],
contiguous) is fastest; from 3 rows on, the weight packed once into oneDNN's blocked layout, whose
cost is then nearly flat up to 8 rows. `InferenceLinear` keeps both layouts and picks per call.
Plain and speculative decoding run the same prepared model, so both get the gain.
"""

from __future__ import annotations

import copy
from typing import TypeVar

import torch
import torch.nn as nn

from padrec.models.layers import TiedHead

M = TypeVar("M", bound=nn.Module)

PACKED_ROWS = 8  # rows oneDNN tunes the packed layout for
GEMV_ROWS = 2  # up to this many rows, the transposed weight beats the packed one


def packing_available() -> bool:
    """True where this torch build can pre-pack linear weights (oneDNN on CPU)."""
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


class InferenceLinear(nn.Module):
    """A linear layer y = x W^T + b for inference (no autograd), W kept transposed and oneDNN-packed."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None):
        super().__init__()
        weight = weight.detach()
        self.in_features = weight.shape[1]
        self.weight_t = weight.t().contiguous()
        self.packed = torch.ops.mkldnn._reorder_linear_weight(weight, PACKED_ROWS)
        self.bias = None if bias is None else bias.detach()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.numel() <= GEMV_ROWS * self.in_features:
            y = x @ self.weight_t
            return y if self.bias is None else y + self.bias
        return torch.ops.mkldnn._linear_pointwise(x, self.packed, self.bias, "none", [], "")


class InferenceTiedHead(nn.Module):
    """`TiedHead` for inference: an `InferenceLinear` of the tied weight, prepared once. The weight
    argument (the same tensor, passed by the owner on every call) goes unused."""

    def __init__(self, weight: torch.Tensor):
        super().__init__()
        self.linear = InferenceLinear(weight)

    def forward(self, hidden: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return self.linear(hidden)


def for_inference(model: M) -> M:
    """A copy of `model` in eval mode without gradients, its Linear layers and tied heads
    `InferenceLinear` where the build allows it (otherwise the copy computes exactly what `model` does). A model this returned
    is returned as is, so hosts of one model can share one copy."""
    if getattr(model, "prepared_for_inference", False):
        return model
    model = copy.deepcopy(model).eval().requires_grad_(False)
    model.prepared_for_inference = True
    if packing_available():
        for parent in list(model.modules()):
            for name, child in list(parent.named_children()):
                if isinstance(child, nn.Linear):
                    setattr(parent, name, InferenceLinear(child.weight, child.bias))
                elif isinstance(child, TiedHead):
                    setattr(parent, name, InferenceTiedHead(parent.head_weight))
    return model
