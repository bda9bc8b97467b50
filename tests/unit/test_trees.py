"""Token trees: the layout, the cache's kept path, and tree speculation equal to plain greedy."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from padrec.config import DRAFTERS, ModelConfig
from padrec.decoding.constraints import ItemTrie
from padrec.decoding.engine import ListDecoder
from padrec.decoding.interfaces import DecodeRequest, InvalidRequest
from padrec.decoding.torch_draft import TorchDraft
from padrec.decoding.torch_target import TorchTarget
from padrec.decoding.tree import TreeLayout, chain_parents, path_to
from padrec.models.draft import Draft
from padrec.models.target import KVCache, Target
from tests.unit.test_speculative import CONFIG, catalogue, decode, models

ITEM_CONFIG = ModelConfig(d_model=32, n_layers=2, n_heads=2, d_ff=64, max_seq_len=160, item_embedding=True)


def test_a_layout_gives_each_token_its_depth_and_its_ancestors_only():
    #        0
    #       / \
    #      1   3        (call order 0 1 2 3 4; 2 is under 1, 4 under 3)
    #      |   |
    #      2   4
    layout = TreeLayout.from_parents(np.array([[-1, 0, 1, 0, 3]]))
    assert layout.depths.tolist() == [[0, 1, 2, 1, 2]]
    assert [np.flatnonzero(r).tolist() for r in layout.ancestors[0]] == [[0], [0, 1], [0, 1, 2], [0, 3], [0, 3, 4]]
    chain = TreeLayout.from_parents(chain_parents(4)[None])
    assert chain.depths.tolist() == [[0, 1, 2, 3]] and (chain.ancestors[0] == np.tri(4, dtype=bool)).all()
    assert path_to(np.array([-1, 0, 1, 0, 3]), 4) == [0, 3, 4]
    with pytest.raises(ValueError, match="before it"):
        TreeLayout.from_parents(np.array([[-1, 2, 0]]))


def test_scoring_a_tree_scores_every_branch_as_its_own_sequence():
    torch.manual_seed(0)
    target = Target(CONFIG, 40).eval()
    prefix, branches = [5, 6, 7], ([8, 9], [10, 11, 12], [13])
    tokens = np.array([[8, 9, 10, 11, 12, 13]])
    parents = np.array([[-1, 0, -1, 2, 3, -1]])
    host = TorchTarget(target, 2)
    host.score(np.array([0]), np.array([0]), np.array([prefix]), np.array([3]))
    tree = host.score(np.array([0]), np.array([3]), tokens, np.array([6]), tree=TreeLayout.from_parents(parents))
    call_index = {0: [0, 1], 1: [2, 3, 4], 2: [5]}
    for b, branch in enumerate(branches):
        alone = TorchTarget(target, 1)
        seq = alone.score(np.array([0]), np.array([0]), np.array([prefix + branch]), np.array([3 + len(branch)]))
        np.testing.assert_allclose(tree.logits[0, call_index[b]], seq.logits[0, 3:], atol=1e-5)
    # keeping branch 1 leaves the cache as if only it had been scored: the next token agrees too
    host.keep(np.array([0]), np.array([3]), [np.array(call_index[1])], [np.array(branches[1])])
    after = host.score(np.array([0]), np.array([6]), np.array([[14]]), np.array([1]))
    seq = TorchTarget(target, 1).score(np.array([0]), np.array([0]), np.array([prefix + branches[1] + [14]]),
                                       np.array([7]))
    np.testing.assert_allclose(after.logits[0, 0], seq.logits[0, -1], atol=1e-5)


def test_keep_moves_the_kept_entries_up_and_leaves_other_rows_alone():
    cache = KVCache(1, 2, 1, 8, 1, slack=0)
    cache.k[0, :, 0, :, 0] = torch.arange(16.0).view(2, 8)
    cache.keep(0, 2, torch.tensor([0, 2, 3]))
    assert cache.k[0, 0, 0, :, 0].tolist() == [0, 1, 2, 4, 5, 5, 6, 7]
    assert cache.k[0, 1, 0, :, 0].tolist() == list(range(8, 16))


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 1000), drafter=st.sampled_from(sorted(DRAFTERS)), penalty=st.sampled_from([0.0, 0.5]),
       item_embedding=st.booleans())
def test_tree_speculation_equals_plain_greedy(seed, drafter, penalty, item_embedding):
    sids = catalogue(60, (6, 4, 3), seed)
    if item_embedding:
        torch.manual_seed(seed)
        target = Target(ITEM_CONFIG, sids.vocab_size, sids.num_items).eval()
        draft = Draft.from_target(DRAFTERS[drafter], target, sids.num_slots).eval()
    else:
        target, draft = models(sids, seed, drafter)
    rng = np.random.default_rng(seed)
    histories = [tuple(rng.choice(60, size=int(n), replace=False).tolist()) for n in rng.integers(1, 8, size=6)]

    def run(requests, with_draft):
        decoder = ListDecoder(ItemTrie(sids, penalty), TorchTarget(target, 8, sids), CONFIG.max_seq_len,
                              proposer=TorchDraft(draft, sids, 8) if with_draft else None)
        return decoder.generate(requests, list(range(len(requests))))

    plain = run([DecodeRequest(h, top_n=6) for h in histories], False)
    # (num_draft_tokens, tree_width, tree_budget) per row, chains and plain rows in the same batch
    shapes = [(0, 0, 0), (3, 0, 0), (2, 2, 0), (3, 4, 0), (4, 3, 6), (5, 1, 0)]
    spec = run([DecodeRequest(h, top_n=6, num_draft_tokens=k, tree_width=w, tree_budget=b)
                for h, (k, w, b) in zip(histories, shapes)], True)
    for a, b, (k, w, budget) in zip(plain, spec, shapes):
        assert a.items == b.items and a.tokens == b.tokens
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-4)
        s = b.stats
        assert s.chosen_tokens + s.accepted + s.forced_tokens == len(b.tokens)
        assert s.accepted <= s.drafted <= s.rounds * (budget or max(w, 1) * k)
        assert sum(s.accepted_by_depth) == s.accepted == sum(s.accepted_by_slot)


def test_a_tree_one_wide_is_the_chain():
    sids = catalogue(60, (6, 4, 3), 3)
    target, draft = models(sids, 3)
    histories = [(1, 2, 3), (10, 20), (7,)]
    chain = decode(sids, target, draft, [DecodeRequest(h, top_n=6, num_draft_tokens=3) for h in histories])
    tree = decode(sids, target, draft, [DecodeRequest(h, top_n=6, num_draft_tokens=3, tree_width=1) for h in histories])
    for a, b in zip(chain, tree):
        assert a.tokens == b.tokens and a.stats.as_dict() == b.stats.as_dict()


def test_a_wider_tree_is_accepted_at_least_as_far_per_round():
    """A tree holds the chain's path as its likeliest branch, so per round it accepts at least as
    much; over whole lists the rounds then differ, so compare the totals loosely."""
    sids = catalogue(60, (6, 4, 3), 5)
    target, draft = models(sids, 5)
    rng = np.random.default_rng(5)
    histories = [tuple(rng.choice(60, size=4, replace=False).tolist()) for _ in range(8)]
    chain = decode(sids, target, draft, [DecodeRequest(h, top_n=6, num_draft_tokens=3) for h in histories])
    tree = decode(sids, target, draft, [DecodeRequest(h, top_n=6, num_draft_tokens=3, tree_width=4) for h in histories])
    assert sum(t.stats.tau for t in tree) > sum(c.stats.tau for c in chain)


@pytest.mark.parametrize("fields, message", [
    ({"tree_width": 2}, "num_draft_tokens > 0"),
    ({"tree_width": 5, "num_draft_tokens": 4}, "at most 16 drafted nodes"),
    ({"tree_width": -1, "num_draft_tokens": 2}, "tree_width must be >= 0"),
    ({"tree_width": 2, "num_draft_tokens": 2, "tree_budget": 5}, "tree_budget must be in 0..4"),
    ({"tree_budget": 3, "num_draft_tokens": 2}, "need tree_width > 0"),
    ({"tree_width": 2, "num_draft_tokens": 2, "temperature": 1.0}, "greedy only"),
    ({"tree_width": 1, "num_draft_tokens": 2, "tree_min_prob": 1.0}, "tree_min_prob must be in"),
    ({"num_draft_tokens": 2, "tree_min_prob": 0.5}, "need tree_width > 0"),
])
def test_bad_tree_requests_are_refused(fields, message):
    sids = catalogue(30, (4, 3), 0)
    target, draft = models(sids, 0)
    decoder = ListDecoder(ItemTrie(sids), TorchTarget(target, 1), CONFIG.max_seq_len,
                          proposer=TorchDraft(draft, sids, 1))
    with pytest.raises(InvalidRequest, match=message):
        decoder.validate(DecodeRequest((1, 2), **fields))


def test_a_decoder_whose_draft_has_no_trees_refuses_them():
    sids = catalogue(30, (4, 3), 0)
    target, draft = models(sids, 0)
    proposer = TorchDraft(draft, sids, 1)
    proposer.proposes_trees = False  # as the exported (ONNX) draft graphs: they unroll chains
    decoder = ListDecoder(ItemTrie(sids), TorchTarget(target, 1), CONFIG.max_seq_len, proposer=proposer)
    with pytest.raises(InvalidRequest, match="cannot verify token trees"):
        decoder.validate(DecodeRequest((1, 2), num_draft_tokens=2, tree_width=2))


def test_a_position_shaped_tree_branches_only_at_the_slots_that_ask_for_it():
    sids = catalogue(60, (6, 4, 3), 2)  # 3 k-means levels, the disambiguating one, a separator: 5 slots
    target, draft = models(sids, 2)
    histories = [(4, 9, 33), (12,), (50, 1)]
    plain = decode(sids, target, None, [DecodeRequest(h, top_n=6) for h in histories])
    chain = decode(sids, target, draft, [DecodeRequest(h, top_n=6, num_draft_tokens=3) for h in histories])
    # one continuation per node everywhere: however wide the levels may be, the tree is the chain
    single = decode(sids, target, draft, [DecodeRequest(h, top_n=6, num_draft_tokens=3, tree_width=4,
                                                        tree_slot_widths=(1,) * 5) for h in histories])
    for a, b in zip(chain, single):
        assert a.tokens == b.tokens and a.stats.as_dict() == b.stats.as_dict()
    # branching at slot 0 only: a level has more nodes than the one above only where its tokens are first codes
    proposer = TorchDraft(draft, sids, 4)
    grown = []
    grow = proposer.propose

    def recording(batch):
        proposal = grow(batch)
        if batch.widths is not None:
            grown.append(([c.slot for c in batch.constraints], proposal))  # the slots now: decoding moves on
        return proposal

    proposer.propose = recording
    decoder = ListDecoder(ItemTrie(sids), TorchTarget(target, 4), CONFIG.max_seq_len, proposer=proposer)
    shaped = decoder.generate([DecodeRequest(h, top_n=6, num_draft_tokens=3, tree_width=4,
                                             tree_slot_widths=(4, 1, 1, 1, 1)) for h in histories], [0, 1, 2])
    assert [r.tokens for r in shaped] == [r.tokens for r in plain]
    branched = 0
    for slots, proposal in grown:
        for r, first in enumerate(slots):
            parents = proposal.parents[r, : proposal.counts[r]]
            depth = np.zeros(len(parents), dtype=int)
            for i, p in enumerate(parents):
                depth[i] = 0 if p < 0 else depth[p] + 1
            # depth d's tokens are at slot first + d (first: the slot after the row's known tokens)
            counts = np.bincount(depth)
            for d in range(len(counts)):
                above = 1 if d == 0 else counts[d - 1]
                if counts[d] > above:
                    assert (first + d) % sids.tokens_per_item == 0
                    branched += 1
    assert branched > 0
    with pytest.raises(InvalidRequest, match="one width >= 1 per slot"):
        decoder.validate(DecodeRequest((1, 2), num_draft_tokens=2, tree_width=2, tree_slot_widths=(2, 1)))


def test_the_benchmark_runs_trees_beside_chains_and_stays_lossless(tmp_path):
    from padrec.benchmark import run_benchmark
    from padrec.commands.bench import tree_shapes
    from padrec.data.split import Example

    sids = catalogue(60, (6, 4, 3))
    target, draft = models(sids, 0)
    examples = [Example("u", [1, 2, 3], 4), Example("v", [5, 6], 7)]
    trees = tree_shapes("3x2,3x3@3-1-1-1-1:4")
    assert trees == [(3, 2, (), 0, 0.0), (3, 3, (3, 1, 1, 1, 1), 4, 0.0)]
    report = run_benchmark(target, {"padrec": draft}, ItemTrie(sids), examples, ks=[3], top_n=4, progress=False,
                           trees=trees)
    shapes = [(e["k"], e.get("tree_slot_widths"), e.get("tree_budget")) for e in report["speculative"]]
    assert shapes == [(3, None, None), (3, [], 0), (3, [3, 1, 1, 1, 1], 4)]
    for e in report["speculative"]:
        assert e["mismatches"] == 0 and e["recall@10"] == report["plain"]["recall@10"] and e["tau"] >= 1.0
    # on ONNX Runtime the draft step's tree forward grows the same trees: the same tau, lossless too
    onnx = run_benchmark(target, {"padrec": draft}, ItemTrie(sids), examples, ks=[3], top_n=4, progress=False,
                         runtime="onnxruntime", workdir=tmp_path, forced_room=4, trees=trees)
    assert [(e["k"], e.get("tree_slot_widths")) for e in onnx["speculative"]] == [s[:2] for s in shapes]
    for a, b in zip(report["speculative"], onnx["speculative"]):
        assert b["mismatches"] == 0 and b["tau"] == pytest.approx(a["tau"]) and b["drafted"] == a["drafted"]


@pytest.mark.parametrize("spec", ["4", "4x", "0x2", "4x2:-1", "4x2@0-1", "4x2@", "4x2~1", "4x2~x"])
def test_bad_tree_specs_are_refused(spec):
    import argparse

    from padrec.commands.bench import tree_shapes

    with pytest.raises(argparse.ArgumentTypeError):
        tree_shapes(spec)


def test_a_chain_that_stops_where_the_draft_is_unsure_drafts_less_and_stays_lossless():
    sids = catalogue(60, (6, 4, 3), 4)
    target, draft = models(sids, 4)
    rng = np.random.default_rng(4)
    histories = [tuple(rng.choice(60, size=3, replace=False).tolist()) for _ in range(5)]
    plain = decode(sids, target, None, [DecodeRequest(h, top_n=6) for h in histories])
    drafted = {}
    for min_prob in (0.0, 0.3, 0.9):
        results = decode(sids, target, draft, [DecodeRequest(h, top_n=6, num_draft_tokens=5, tree_width=1,
                                                             tree_min_prob=min_prob) for h in histories])
        assert [r.tokens for r in results] == [r.tokens for r in plain]
        drafted[min_prob] = sum(r.stats.drafted for r in results)
    assert drafted[0.0] > drafted[0.3] > drafted[0.9]
