"""Preparing a trained model for small-batch CPU inference (the torch hosts of the engine).

At batch 1 a forward multiplies a handful of rows (1-3 when decoding plainly, pending + draft
tokens when verifying) by every weight matrix. `F.linear` hands MKL the weight as stored, and at
more than 2 rows MKL re-arranges it on every call: at 6 rows the default target's linear layers cost
1.1-1.5x what a product with the weight stored transposed ([in, out], contiguous) costs.
`InferenceLinear` keeps the weight that way. oneDNN's pre-packed layout, which an earlier
session used from 3 rows on, carries about 14 us of fixed cost per call on this project's Intel Xeon
(AMX): it lost to the transposed product in 82 of 84 layer shapes x row counts up to 64
(docs/experiments/linear_kernels.py, docs/findings.md "Linear kernels at batch 1"), and
verification forwards, with 5-7 rows, paid it in every layer.
Plain and speculative decoding run the same prepared model, so both get the gain.

`InferenceDraftInput` is the draft's input (`Draft.fuse`) prepared the same way, for the hosts that
know each position's slot (`predicted_slots`); it is what keeps PAD-Rec's two position terms from
costing a draft step more than the EAGLE-style draft's input does.
"""

from __future__ import annotations

import copy
from typing import TypeVar

import torch
import torch.nn as nn

from padrec.models.draft import Draft, predicted_slots
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


def linear_weight(layer: nn.Module) -> torch.Tensor:
    """The [out, in] weight of an `nn.Linear` or of an `InferenceLinear` made from one."""
    return layer.weight_t.t() if isinstance(layer, InferenceLinear) else layer.weight.detach()


class InferenceDraftInput(nn.Module):
    """`Draft.fuse` for inference, where the slot of the token being predicted follows from the
    draft position (`predicted_slots`, as on every host) and the depth is one number per call.

    fuse computes fc([E[x]; f]) + alpha * E_item[slot] + sigmoid(W_g f + b_g) * E_step[depth].
    Everything that depends on the token and the slot alone, the token's half of fc plus the item
    term, is one row of a [slots x V, D] table (row slot * V + x; [V, D] without the item term);
    the feature's half of fc and the gate's projection are one product with f; the step embedding
    of every depth is looked up once, here. A call is then 3-6 small ops instead of the 10-14 of
    `fuse`, the same sum up to float rounding.
    """

    def __init__(self, draft: Draft, tokens_per_item: int):
        super().__init__()
        config, d = draft.config, draft.target_config.d_model
        fc = linear_weight(draft.fc)  # [D, 2D] over [token embedding; feature]
        table = draft.token_embedding @ fc[:, :d].t()  # [V, D]
        feature_weights = [fc[:, d:]]
        self.tokens_per_item = tokens_per_item
        self.by_slot = config.item_position
        if self.by_slot:
            item = draft.item_coefficient.detach() * draft.item_embedding.weight.detach()  # [slots, D]
            table = (table[None] + item[:, None]).reshape(-1, d)  # [slots x V, D]
        self.vocab_size = draft.vocab_size
        self.gated = config.step_position
        if self.gated:
            feature_weights.append(linear_weight(draft.step_gate))
            self.gate_bias = draft.step_gate.bias.detach()
            # depths beyond the deepest trained one share its embedding, as in fuse
            self.deepest = min(config.step_depths, config.k_max)
            self.step_table = draft.step_embedding.weight.detach()[:self.deepest + 1]  # [deepest + 1, D] by depth
        self.table = table.contiguous()
        self.feature_weight_t = torch.cat(feature_weights).t().contiguous()  # [D, D or 2D]
        self.d_model = d

    def forward(self, features: torch.Tensor, tokens: torch.Tensor, positions: torch.Tensor,
                depth: int | torch.Tensor) -> torch.Tensor:
        """z [B, T, D] for features f_t [B, T, D], tokens x_{t+1} [B, T] at draft positions t
        [B, T] (or [B, 1], broadcast), all at draft `depth`: one number, or one per row ([B], what
        an exported graph takes as an input)."""
        rows = tokens
        if self.by_slot:
            rows = predicted_slots(positions, self.tokens_per_item) * self.vocab_size + tokens
        projected = features @ self.feature_weight_t
        if not self.gated:
            return self.table[rows] + projected
        gate = torch.sigmoid(projected[..., self.d_model :] + self.gate_bias)
        if isinstance(depth, torch.Tensor):
            step = self.step_table[depth.clamp(max=self.deepest)][:, None]  # [B, 1, D]
        else:
            step = self.step_table[min(depth, self.deepest)]
        return self.table[rows] + projected[..., : self.d_model] + gate * step


class InferenceTiedHead(nn.Module):
    """`TiedHead` for inference: an `InferenceLinear` of the tied weight, prepared once. The weight
    argument (the same tensor, passed by the owner on every call) goes unused."""

    def __init__(self, weight: torch.Tensor):
        super().__init__()
        self.linear = InferenceLinear(weight)

    def forward(self, hidden: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return self.linear(hidden)


def for_inference(model: M, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> M:
    """A copy of `model` in eval mode without gradients, its Linear layers and tied heads
    `InferenceLinear`, its weights (and buffers) on `device` in `dtype`. A model this returned for
    the same device and dtype is returned as is, so hosts of one model can share one copy."""
    device = torch.device(device)
    if getattr(model, "prepared_for_inference", None) == (device, dtype):
        return model
    model = copy.deepcopy(model).eval().requires_grad_(False)
    model.prepared_for_inference = (device, dtype)
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.Linear):
                setattr(parent, name, InferenceLinear(child.weight, child.bias))
            elif isinstance(child, TiedHead):
                setattr(parent, name, InferenceTiedHead(parent.head_weight))
    return _move(model, device, dtype)


def _move(model: M, device: torch.device, dtype: torch.dtype) -> M:
    """`model` with every tensor attribute on `device` in `dtype`: `nn.Module.to` moves parameters and
    buffers, not the plain tensors that `InferenceLinear` keeps."""
    model.to(device=device, dtype=dtype)
    for module in model.modules():
        for name, value in list(vars(module).items()):
            if isinstance(value, torch.Tensor) and value.is_floating_point():
                setattr(module, name, value.to(device=device, dtype=dtype))
    return model
