"""The draft's unrolled training: which keys each depth sees, and what its token loss aims at."""

import torch

from padrec.config import DRAFTERS, DraftTrainConfig, ModelConfig
from padrec.models.draft import Draft
from padrec.training.draft import unrolled_loss, unrolled_step_mask


def test_unrolled_step_mask_worked_example():
    n = 7
    mask = unrolled_step_mask(n, 3)[0, 0]  # [n, 3n]: step-1 keys, step-2 keys, step-3 keys
    row = mask[5]
    assert row[:n].nonzero().flatten().tolist() == [0, 1, 2, 3]  # real features up to i - 2
    assert row[n : 2 * n].nonzero().flatten().tolist() == [4]  # step 2's prediction at i - 1
    assert row[2 * n :].nonzero().flatten().tolist() == [5]  # its own entry
    assert unrolled_step_mask(n, 1)[0, 0].equal(torch.ones(n, n).tril().bool())


def test_token_loss_targets_the_targets_distribution():
    """A draft that predicts the target's next feature exactly has the least token loss possible
    (the target distribution's entropy), whatever the sequence's own next tokens are."""
    torch.manual_seed(0)
    cfg = ModelConfig(d_model=16, n_layers=1, n_heads=2, d_ff=32, max_seq_len=32)
    draft = Draft(DRAFTERS["eagle"], cfg, vocab_size=12, num_slots=3)
    draft.token_embedding.normal_()
    feats = torch.randn(2, 6, 16)
    tokens = torch.randint(3, 12, (2, 6))
    config = DraftTrainConfig(unroll_steps=1, feature_weight=0.0, token_weight=1.0)

    loss, _ = unrolled_loss(draft, feats, tokens, 3, config)
    probs = (feats[:, 1:-1] @ draft.token_embedding.T).softmax(-1)
    entropy = -(probs * probs.log()).sum(-1).mean()
    assert loss > entropy  # an untrained draft is worse than the target's own distribution

    # the draft's prediction replaced by the true next feature: the loss is exactly that entropy
    draft.norm = torch.nn.Identity()
    draft.decode = lambda z, positions, mask, past_k=None, past_v=None: _echo(draft, feats)
    loss, accuracy = unrolled_loss(draft, feats, tokens, 3, config)
    assert torch.isclose(loss, entropy, atol=1e-5) and accuracy == [1.0]


def _echo(draft, feats):
    from padrec.models.draft import DraftOutput

    predicted = feats[:, 1:]
    empty = torch.zeros(1, feats.shape[0], 2, feats.shape[1] - 1, 8)
    return DraftOutput(predicted, predicted @ draft.token_embedding.T, empty, empty)


def test_steps_deeper_than_training_unrolls_share_the_deepest_trained_step_embedding():
    torch.manual_seed(0)
    cfg = ModelConfig(d_model=16, n_layers=1, n_heads=2, d_ff=32, max_seq_len=32)
    draft = Draft(DRAFTERS["padrec"], cfg, vocab_size=12, num_slots=3)
    assert draft.config.step_depths == DraftTrainConfig().unroll_steps
    features, tokens, slots = torch.randn(1, 1, 16), torch.tensor([[4]]), torch.tensor([[1]])

    def fused(depth):
        return draft.fuse(features, tokens, slots, torch.tensor([[depth]]))

    deepest = draft.config.step_depths
    assert not torch.equal(fused(deepest - 1), fused(deepest))
    for depth in range(deepest + 1, draft.config.k_max + 3):
        assert torch.equal(fused(depth), fused(deepest))


def test_loss_from_leaves_earlier_pairs_out_of_the_loss():
    """A row whose loss starts past its last pair adds nothing: the batch's loss is the other row's."""
    torch.manual_seed(0)
    cfg = ModelConfig(d_model=16, n_layers=1, n_heads=2, d_ff=32, max_seq_len=32)
    draft = Draft(DRAFTERS["padrec"], cfg, vocab_size=12, num_slots=3)
    feats, tokens = torch.randn(2, 7, 16), torch.randint(3, 12, (2, 7))
    config = DraftTrainConfig(unroll_steps=2)
    both, _ = unrolled_loss(draft, feats, tokens, 3, config, torch.tensor([6, 2]))
    alone, _ = unrolled_loss(draft, feats[1:], tokens[1:], 3, config, torch.tensor([2]))
    assert torch.isclose(both, alone, atol=1e-6)
    everything, _ = unrolled_loss(draft, feats[1:], tokens[1:], 3, config)
    assert not torch.isclose(alone, everything)


def test_beam_distillation_sequences_are_each_users_history_then_each_of_its_beams():
    from padrec.artifacts import load_prepared
    from padrec.decoding.beam import BeamDecoder
    from padrec.decoding.constraints import ItemTrie
    from padrec.decoding.interfaces import BeamRequest
    from padrec.decoding.torch_target import TorchTarget
    from padrec.models.target import Target
    from padrec.semantic_ids import BOS
    from padrec.training.draft import beam_distillation_sequences

    data = load_prepared("beauty")
    target = Target.load(data.paths.target)
    seqs = beam_distillation_sequences(target, data, users=2, beam_width=3, progress=False)
    assert len(seqs) == 6
    reference = BeamDecoder(ItemTrie(data.sids, 0.0), TorchTarget(target, 1, data.sids), target.config.max_seq_len,
                            3, one_row=True)
    per_item = data.sids.tokens_per_item
    for user in range(2):
        group = seqs[3 * user : 3 * user + 3]
        prompt = group[0][:-per_item].tolist()
        assert prompt[0] == BOS and all(s[:-per_item].tolist() == prompt for s in group)
        history = tuple(data.sids.decode_items(prompt[1:]))
        top = reference.generate([BeamRequest(history, 3, 3)], [[0]])[0].items
        assert [data.sids.decode_items(s[-per_item:].tolist())[0] for s in group] == top
