"""Preparing a trained model for small-batch CPU inference (the torch hosts of the engine).

At batch 1 a forward multiplies a handful of rows (1-3 when decoding plainly, pending + draft
tokens when verifying) by every weight matrix. `F.linear` hands MKL the weight as stored, and at
more than 2 rows MKL re-arranges it on every call: at 6 rows the default target's linear layers cost
1.1-1.5x what a product with the weight stored transposed ([in, out], contiguous) costs.
`InferenceLinear` keeps the weight that way. oneDNN's pre-packed layout, which an earlier
session used from 3 rows on, carries about 14 us of fixed cost per call on this project's Intel Xeon
(AMX): it lost to the transposed product in 82 of 84 layer shapes x row counts up to 64
(results/experiments/linear_kernels.py, results/README.md "Linear kernels at batch 1"), and
verification forwards, with 5-7 rows, paid it in every layer.
Plain and speculative decoding run the same prepared model, so both get the gain.
"""

from __future__ import annotations

import copy
from typing import TypeVar

import torch
import torch.nn as nn

from padrec.models.layers import TiedHead

M = TypeVar("M", bound=nn.Module)


class InferenceLinear(nn.Module):
    """A linear layer y = x W^T + b for inference (no autograd), W kept transposed."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None):
        super().__init__()
        self.weight_t = weight.detach().t().contiguous()
        self.bias = None if bias is None else bias.detach()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x @ self.weight_t
        return y if self.bias is None else y + self.bias


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
    `InferenceLinear`. A model this returned is returned as is, so hosts of one model can share one
    copy."""
    if getattr(model, "prepared_for_inference", False):
        return model
    model = copy.deepcopy(model).eval().requires_grad_(False)
    model.prepared_for_inference = True
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.Linear):
                setattr(parent, name, InferenceLinear(child.weight, child.bias))
            elif isinstance(child, TiedHead):
                setattr(parent, name, InferenceTiedHead(parent.head_weight))
    return model
