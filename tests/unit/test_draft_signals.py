"""padrec.draft_signals: removing a draft's position terms, and measuring their size."""

import numpy as np
import pytest
import torch

from padrec.config import DRAFTERS, ModelConfig
from padrec.data.split import Example
from padrec.decoding.constraints import ItemTrie
from padrec.draft_signals import signal_sizes, without_position_signals
from padrec.models.draft import Draft, predicted_slots
from padrec.models.target import Target
from padrec.semantic_ids import BOS, SemanticIds, disambiguate

CONFIG = ModelConfig(d_model=16, n_layers=1, n_heads=2, d_ff=32, max_seq_len=64)


@pytest.fixture(scope="module")
def tiny():
    rng = np.random.default_rng(0)
    codes = disambiguate(rng.integers(0, (4, 3, 3), size=(20, 3)))
    sids = SemanticIds(codes, [4, 3, 3, int(codes[:, -1].max()) + 1])
    torch.manual_seed(0)
    target = Target(CONFIG, sids.vocab_size).eval()
    draft = Draft.from_target(DRAFTERS["padrec"], target, sids.num_slots).eval()
    # trained-looking terms: big enough that leaving them out changes the fused input
    with torch.no_grad():
        draft.item_embedding.weight.normal_()
        draft.step_embedding.weight.normal_()
    examples = [Example(str(u), rng.choice(20, 5, replace=False).tolist(), 0) for u in range(3)]
    return target, draft, ItemTrie(sids), examples


def test_without_position_signals_keeps_every_shared_weight_and_drops_only_the_two_terms(tiny):
    _, draft, trie, _ = tiny
    stripped = without_position_signals(draft)
    assert not stripped.config.item_position and not stripped.config.step_position
    assert stripped.config.n_layers == draft.config.n_layers and stripped.config.k_max == draft.config.k_max
    for name, value in stripped.state_dict().items():
        assert torch.equal(value, draft.state_dict()[name]), name
    features, tokens = torch.randn(1, 3, 16), torch.tensor([[5, 6, 7]])
    slots, depth = predicted_slots(torch.arange(3), trie.sids.tokens_per_item)[None], torch.full((1, 3), 2)
    plain_input = draft.fc(torch.cat([draft.token_embedding[tokens], features], dim=-1))
    with torch.no_grad():
        assert torch.allclose(stripped.fuse(features, tokens, slots, depth), plain_input)
        assert not torch.allclose(draft.fuse(features, tokens, slots, depth), plain_input)


def test_signal_sizes_are_the_terms_norms_over_the_histories_pairs(tiny):
    target, draft, trie, examples = tiny
    with torch.no_grad():
        sizes = signal_sizes(draft, target, trie, examples)
        # by hand, for the item term: every pair (f_t, x_{t+1}) of every history
        item_norms, base_norms = [], []
        for example in examples:
            tokens = torch.tensor([[BOS] + trie.sids.encode_items(example.history)])
            following = tokens[:, 1:]
            slots = predicted_slots(torch.arange(following.shape[1])[None], trie.sids.tokens_per_item)
            item_norms.append((draft.item_coefficient * draft.item_embedding(slots)).norm(dim=-1))
            features = target(tokens).hidden[:, :-1]
            base_norms.append(draft.fc(torch.cat([draft.token_embedding[following], features], -1)).norm(dim=-1))
    item, base = torch.cat(item_norms, 1).mean().item(), torch.cat(base_norms, 1).mean().item()
    assert sizes["pairs"] == sum(n.numel() for n in item_norms)
    assert sizes["fused_input_norm"] == pytest.approx(base, rel=1e-5)
    assert sizes["item"]["norm"] == pytest.approx(item, rel=1e-5)
    assert sizes["item"]["share"] == pytest.approx(item / base, rel=1e-5)
    assert len(sizes["step"]["share_by_depth"]) == draft.config.step_depths
    assert all(s > 0 for s in sizes["step"]["share_by_depth"])


def test_an_eagle_draft_has_no_signals_to_measure(tiny):
    target, _, trie, examples = tiny
    eagle = Draft.from_target(DRAFTERS["eagle"], target, trie.sids.num_slots)
    with pytest.raises(ValueError, match="no position signals"):
        signal_sizes(eagle, target, trie, examples)
