"""The inference building blocks: rotary positions, the KV cache's reads and writes, and the
prepared (transposed-weight) copy of a model the torch hosts run."""

import numpy as np
import pytest
import torch
import torch.nn as nn

from padrec.config import DRAFTERS, ModelConfig
from padrec.models.draft import Draft, predicted_slots
from padrec.models.inference import InferenceDraftInput, InferenceLinear, InferenceTiedHead, for_inference
from padrec.models.layers import apply_rope, rope_tables
from padrec.models.target import KVCache, Target

CONFIG = ModelConfig(d_model=32, n_layers=2, n_heads=2, d_ff=64, max_seq_len=64)


def test_rope_rotates_each_pair_by_its_angle():
    cos, sin = rope_tables(16, 8, 10_000.0)
    x = torch.randn(2, 3, 5, 8)
    positions = torch.tensor([[0, 1, 2, 3, 4], [9, 10, 11, 12, 13]])
    c, s = cos[positions][:, None], sin[positions][:, None]
    angles = torch.outer(torch.arange(16.0), 1.0 / 10_000.0 ** (torch.arange(0, 8, 2.0) / 8))[positions][:, None]
    x1, x2 = x[..., 0::2], x[..., 1::2]
    expected = torch.stack((x1 * angles.cos() - x2 * angles.sin(), x1 * angles.sin() + x2 * angles.cos()), -1)
    assert torch.equal(apply_rope(x, c, s), expected.flatten(-2))


@pytest.mark.parametrize("rows", [[0], [3], [1, 2, 3], [4, 0, 2]])
def test_kv_cache_writes_and_reads_exactly_the_rows_entries(rows):
    cache = KVCache(n_layers=2, rows=5, n_heads=2, capacity=12, head_dim=4, slack=4)
    cache.k.normal_()
    cache.v.normal_()
    before_k, before_v = cache.k.clone(), cache.v.clone()
    rows_t = torch.tensor(rows)
    start = torch.tensor([7, 2, 5][: len(rows)])
    new_k, new_v = torch.randn(2, len(rows), 2, 3, 4), torch.randn(2, len(rows), 2, 3, 4)
    cache.write(rows_t, start, new_k, new_v)
    for b, (r, s) in enumerate(zip(rows, start.tolist())):
        before_k[:, r, :, s : s + 3] = new_k[:, b]
        before_v[:, r, :, s : s + 3] = new_v[:, b]
    assert torch.equal(cache.k, before_k) and torch.equal(cache.v, before_v)
    past_k, past_v = cache.view(rows_t, start)
    assert torch.equal(past_k, before_k[:, rows, :, :7]) and torch.equal(past_v, before_v[:, rows, :, :7])


def test_kv_cache_refuses_to_write_past_its_buffer():
    cache = KVCache(n_layers=1, rows=1, n_heads=1, capacity=4, head_dim=2, slack=1)
    with pytest.raises(ValueError, match="KV cache full"):
        cache.write(torch.tensor([0]), torch.tensor([3]), torch.zeros(1, 1, 1, 3, 2), torch.zeros(1, 1, 1, 3, 2))


@torch.inference_mode()
def test_prepared_models_compute_what_the_models_compute():
    torch.manual_seed(0)
    target = Target(CONFIG, vocab_size=40).eval()
    draft = Draft.from_target(DRAFTERS["padrec"], target, num_slots=5).eval()
    prepared_target, prepared_draft = for_inference(target), for_inference(draft)
    tokens = torch.randint(0, 40, (2, 6))
    for a, b in zip(vars(target(tokens)).values(), vars(prepared_target(tokens)).values()):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    features, slots, depth = torch.randn(2, 6, 32), torch.randint(0, 5, (2, 6)), torch.ones(2, 6, dtype=torch.long)
    for a, b in zip(vars(draft(features, tokens, slots, depth)).values(),
                    vars(prepared_draft(features, tokens, slots, depth)).values()):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    # the original is left alone, and a prepared model is not prepared twice
    assert isinstance(target.blocks[0].attn.qkv, nn.Linear)
    assert for_inference(prepared_target) is prepared_target
    assert isinstance(prepared_target.blocks[0].attn.qkv, InferenceLinear)
    assert isinstance(prepared_draft.fc, InferenceLinear)
    assert isinstance(prepared_target.head, InferenceTiedHead) and isinstance(prepared_draft.head, InferenceTiedHead)


@pytest.mark.parametrize("shape", [(8,), (1, 1, 8), (1, 2, 8), (4, 2, 8), (1, 70, 8)])
def test_inference_linear_computes_the_linear_layer(shape):
    linear = nn.Linear(8, 3)
    x = torch.randn(shape)
    with torch.inference_mode():
        np.testing.assert_allclose(InferenceLinear(linear.weight, linear.bias)(x).numpy(), linear(x).numpy(), atol=1e-6)


@pytest.mark.parametrize("drafter", sorted(DRAFTERS))
@pytest.mark.parametrize("prepared", [False, True])
@torch.inference_mode()
def test_prepared_draft_input_computes_what_fuse_computes(drafter, prepared):
    torch.manual_seed(1)
    target = Target(CONFIG, vocab_size=40).eval()
    draft = Draft.from_target(DRAFTERS[drafter], target, num_slots=5).eval()
    with torch.no_grad():  # position terms well away from their small initial values
        for name, parameter in draft.named_parameters():
            if name.startswith(("item_", "step_")):
                parameter.normal_()
    draft_input = InferenceDraftInput(for_inference(draft) if prepared else draft, tokens_per_item=5)
    features, tokens = torch.randn(3, 4, 32), torch.randint(0, 40, (3, 4))
    positions = torch.tensor([[0], [3], [7]]) + torch.arange(4)  # rows at different offsets
    slots = predicted_slots(positions, 5)
    outputs = set()
    for depth in range(1, draft.config.k_max + 3):  # beyond the deepest trained depth too
        expected = draft.fuse(features, tokens, slots, torch.full_like(tokens, depth))
        got = draft_input(features, tokens, positions, depth)
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
        outputs.add(got.sum().item())
    # the step term makes depths differ (up to the deepest trained one), and only it does
    assert len(outputs) == (min(draft.config.step_depths, draft.config.k_max) if draft.config.step_position else 1)
