"""Speculative decoding is lossless: greedy equals plain greedy, sampling keeps the distribution."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from padrec.config import DRAFTERS, DraftConfig, ModelConfig
from padrec.decoding.constraints import ItemTrie, ListConstraint
from padrec.decoding.engine import ListDecoder
from padrec.decoding.interfaces import DecodeRequest, InvalidRequest, Proposal
from padrec.decoding.sampling import constrained_distribution
from padrec.decoding.torch_draft import TorchDraft
from padrec.decoding.torch_target import TorchTarget
from padrec.models.draft import Draft, predicted_slots
from padrec.models.target import Target
from padrec.semantic_ids import BOS, SEP, SemanticIds, disambiguate

CONFIG = ModelConfig(d_model=32, n_layers=2, n_heads=2, d_ff=64, max_seq_len=160)


def catalogue(n_items, levels, seed=0, shared_vocabulary=False):
    rng = np.random.default_rng(seed)
    codes = disambiguate(rng.integers(0, levels, size=(n_items, len(levels))))
    return SemanticIds(codes, list(levels) + [int(codes[:, -1].max()) + 1], shared_vocabulary=shared_vocabulary)


def models(sids, seed, drafter="padrec"):
    torch.manual_seed(seed)
    target = Target(CONFIG, sids.vocab_size).eval()
    draft = Draft.from_target(DRAFTERS[drafter], target, sids.num_slots).eval()
    return target, draft


def decode(sids, target, draft, requests, rows=8, penalty=0.0):
    decoder = ListDecoder(ItemTrie(sids, penalty), TorchTarget(target, rows), CONFIG.max_seq_len,
                          proposer=TorchDraft(draft, sids, rows) if draft is not None else None)
    return decoder.generate(requests, list(range(len(requests))))


@settings(max_examples=16, deadline=None)
@given(seed=st.integers(0, 1000), drafter=st.sampled_from(sorted(DRAFTERS)), penalty=st.sampled_from([0.0, 0.5]),
       shared=st.booleans())
def test_greedy_speculative_equals_plain_greedy(seed, drafter, penalty, shared):
    sids = catalogue(60, (6, 4, 3), seed, shared_vocabulary=shared)
    target, draft = models(sids, seed, drafter)
    rng = np.random.default_rng(seed)
    histories = [tuple(rng.choice(60, size=int(n), replace=False).tolist()) for n in rng.integers(1, 8, size=6)]
    plain = decode(sids, target, None, [DecodeRequest(h, top_n=6) for h in histories], penalty=penalty)
    # every row its own number of draft tokens, 0 (plain) included, in one batch
    ks = [0, 1, 2, 3, 5, 8]
    spec = decode(sids, target, draft, [DecodeRequest(h, top_n=6, num_draft_tokens=k) for h, k in zip(histories, ks)],
                  penalty=penalty)
    for a, b, k in zip(plain, spec, ks):
        assert a.items == b.items and a.tokens == b.tokens
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-4)
        s = b.stats
        assert s.chosen_tokens + s.accepted + s.forced_tokens == len(b.tokens)
        assert s.accepted <= s.drafted and (k > 0 or s.drafted == 0)
        assert s.tau == pytest.approx((s.chosen_tokens + s.accepted) / s.rounds)
        assert sum(s.accepted_by_depth) == s.accepted == sum(s.accepted_by_slot)


class OracleProposer:
    """Proposes exactly the target's greedy continuation (full recomputation): all accepted."""

    k_max = 6

    def __init__(self, target, trie):
        self.target, self.trie = target, trie
        self.contexts = {}

    @torch.inference_mode()
    def propose(self, batch):
        out = np.zeros((len(batch.rows), int(batch.num_tokens.max())), dtype=np.int64)
        for i, row in enumerate(batch.rows):
            known = self.contexts.setdefault(int(row), [])
            known.extend(batch.tokens[i, : batch.lengths[i]].tolist())
            context = [BOS] + known + batch.forced[i]
            walk = batch.constraints[i].copy()
            for j in range(batch.num_tokens[i]):
                allowed = walk.allowed()
                logits = self.target(torch.tensor([context])).logits[0, -1].numpy()
                token = int(allowed[np.argmax(logits[allowed])])
                walk.advance(token)
                context.append(token)
                out[i, j] = token
        return Proposal(out, batch.num_tokens.copy(), None)


def test_a_perfect_draft_is_always_accepted():
    sids = catalogue(60, (6, 4, 3))
    target, _ = models(sids, 0)
    trie = ItemTrie(sids)
    req = DecodeRequest((1, 2, 3), top_n=8, num_draft_tokens=4)
    oracle = OracleProposer(target, trie)
    decoder = ListDecoder(trie, TorchTarget(target, 1), CONFIG.max_seq_len, proposer=oracle)
    result = decoder.generate([req], [0])[0]
    plain = decode(sids, target, None, [DecodeRequest((1, 2, 3), top_n=8)])[0]
    assert result.items == plain.items
    assert result.stats.accepted == result.stats.drafted > 0
    assert result.stats.tau > 2.5
    assert result.stats.rounds < plain.stats.rounds / 2


def test_num_draft_tokens_is_checked_against_k_max():
    sids = catalogue(60, (6, 4, 3))
    target, draft = models(sids, 0)
    with pytest.raises(InvalidRequest, match=r"0\.\.8"):
        decode(sids, target, draft, [DecodeRequest((1,), num_draft_tokens=9)])


def test_predicted_slots_are_the_slots_of_the_tokens_two_positions_on():
    sids = catalogue(60, (6, 4, 3))
    tokens = [BOS] + sids.encode_items([3, 7, 1])
    # draft position t predicts the token at sequence position t + 2
    slots = predicted_slots(torch.arange(len(tokens) - 2), sids.tokens_per_item)
    assert slots.tolist() == sids.slot_at(np.arange(2, len(tokens))).tolist()
    assert slots[:5].tolist() == [1, 2, 3, 4, 0]


# --- sampling ------------------------------------------------------------------------------------


@torch.inference_mode()
def exact_pair_distribution(sids, target, history, temperature, penalty):
    """P(first item, second item) under the constrained target (with the trie's prior), by
    enumerating the trie."""
    trie = ItemTrie(sids, penalty)
    probs = {}

    def walk(context, constraint, logp, items):
        if len(items) == 2:
            probs[tuple(items)] = np.exp(logp)
            return
        allowed = constraint.allowed()
        dist = constrained_distribution(target(torch.tensor([context])).logits[0, -1].numpy(), allowed, temperature,
                                        prior=constraint.prior())
        for token in allowed.tolist():
            c = constraint.copy()
            item = c.advance(token)
            extra = [SEP] if item is not None and len(items) == 0 else []
            if extra:
                c.advance(SEP)
            walk(context + [token] + extra, c, logp + np.log(dist[token]), items + ([item] if item is not None else []))

    walk([BOS] + sids.encode_items(history), ListConstraint(trie, history), 0.0, [])
    return probs


@pytest.mark.slow
@pytest.mark.parametrize("penalty", [0.0, 1.0])
def test_speculative_sampling_keeps_the_target_distribution(penalty):
    sids = catalogue(10, (3, 2, 2), seed=3)
    target, draft = models(sids, 5)
    history, temperature, n = (0,), 1.3, 3000
    exact = exact_pair_distribution(sids, target, history, temperature, penalty)
    assert sum(exact.values()) == pytest.approx(1.0)
    requests = [DecodeRequest(history, top_n=2, num_draft_tokens=3, temperature=temperature, seed=s) for s in range(n)]
    counts = {}
    for start in range(0, n, 250):
        for r in decode(sids, target, draft, requests[start : start + 250], rows=250, penalty=penalty):
            counts[tuple(r.items)] = counts.get(tuple(r.items), 0) + 1
    assert_drawn_from(counts, exact, n)


def assert_drawn_from(counts: dict, exact: dict, n: int) -> None:
    """n draws counted by outcome pass a chi-square test (p < 0.001) against the exact distribution."""
    assert set(counts) <= set(exact)
    # chi-square over pairs with enough expected mass; the rest pooled
    expected = {k: v * n for k, v in exact.items()}
    big = [k for k in exact if expected[k] >= 5]
    observed = [counts.get(k, 0) for k in big] + [n - sum(counts.get(k, 0) for k in big)]
    wanted = [expected[k] for k in big] + [n - sum(expected[k] for k in big)]
    chi2 = sum((o - e) ** 2 / e for o, e in zip(observed, wanted) if e > 0)
    dof = len(big)
    # p < 0.001 critical value approximation (Wilson-Hilferty)
    critical = dof * (1 - 2 / (9 * dof) + 3.09 * np.sqrt(2 / (9 * dof))) ** 3
    assert chi2 < critical, (chi2, critical, dof)


def test_offline_benchmark_reports_every_configuration(tmp_path):
    from padrec.benchmark import run_benchmark
    from padrec.data.split import Example

    sids = catalogue(60, (6, 4, 3))
    target, draft = models(sids, 0)
    examples = [Example("u", [1, 2, 3], 4), Example("v", [5, 6], 7)]
    report = run_benchmark(target, {"padrec": draft}, ItemTrie(sids), examples, ks=[2, 3], top_n=4, progress=False)
    assert [(e["drafter"], e["k"]) for e in report["speculative"]] == [("padrec", 2), ("padrec", 3)]
    for e in report["speculative"]:
        assert e["mismatches"] == 0 and e["near_ties"] == 0
        assert e["recall@10"] == report["plain"]["recall@10"]
        assert e["speedup"] > 0 and e["tau"] >= 1.0
        assert 0 <= e["acceptance_rate"] <= 1
    # each list's time splits into target calls, draft calls and the rest, adding up to the mean
    for entry in [report["plain"], *report["speculative"]]:
        split = entry["time_split_ms"]
        assert split["target"] > 0 and split["host"] > 0
        assert split["target"] + split["draft"] + split["host"] == pytest.approx(entry["mean_ms"])
        assert entry["ms_per_target_call"] == pytest.approx(split["target"] / entry["target_calls_per_list"])
    assert report["plain"]["time_split_ms"]["draft"] == 0.0
    assert all(e["time_split_ms"]["draft"] > 0 for e in report["speculative"])


def test_a_batched_benchmark_times_each_batch_once_per_list_and_stays_lossless():
    from padrec.benchmark import compare_decoders, torch_decoders
    from padrec.data.split import Example

    sids = catalogue(60, (6, 4, 3))
    target, draft = models(sids, 0)
    trie = ItemTrie(sids)
    examples = [Example(f"u{i}", [(5 * i + j) % 60 for j in range(1 + i % 4)], i) for i in range(7)]
    decoders = torch_decoders(target, {"padrec": draft}, trie, [3], rows=4)
    report = compare_decoders(target, decoders, trie, examples, top_n=4, progress=False, batch_size=4, warm_up=True)
    assert report["batch_size"] == 4 and report["users"] == 7
    [entry] = report["speculative"]
    assert entry["mismatches"] == 0 and entry["near_ties"] == 0
    for measured in (report["plain"], entry):
        assert measured["items_per_s"] > 0 and measured["ms_per_target_call"] > 0
        split = measured["time_split_ms"]  # a list's times are its batch's
        assert split["target"] + split["draft"] + split["host"] == pytest.approx(measured["mean_ms"])
    assert entry["ms_per_draft_call"] > 0
    # batching changes the timing, not the lists
    one_by_one = compare_decoders(target, torch_decoders(target, {}, trie, [], rows=1), trie, examples, top_n=4,
                                  progress=False)
    assert one_by_one["plain"]["recall@10"] == report["plain"]["recall@10"]
    assert one_by_one["plain"]["tau"] == report["plain"]["tau"] == 1.0
    expected = entry["tau"] * report["plain"]["ms_per_target_call"] / (entry["ms_per_draft_call"]
                                                                      + entry["ms_per_target_call"])
    assert entry["tau_limit_speedup"] == pytest.approx(expected)
