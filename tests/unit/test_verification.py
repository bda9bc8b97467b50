"""The lossless check over a test set: batched greedy speculative == plain, and a real difference is caught."""

import copy

from padrec.benchmark import torch_decoders
from padrec.data.split import Example
from padrec.decoding.constraints import ItemTrie
from padrec.verification import NEAR_TIE_GAP, check_lossless, compare_to_plain, decode_all
from tests.unit.test_speculative import catalogue, models


def _examples(n):
    return [Example(f"u{i}", [(3 * i + j) % 60 for j in range(1 + i % 5)], (7 * i) % 60) for i in range(n)]


def test_batched_speculative_lists_equal_plain_lists():
    sids = catalogue(60, (6, 4, 3))
    target, draft = models(sids, 1)
    trie = ItemTrie(sids)
    decoders = torch_decoders(target, {"padrec": draft}, trie, [3], rows=4)
    report = check_lossless(target, decoders, trie, _examples(6), batch_size=4, top_n=4, progress=False)
    assert report["users"] == 6
    assert [(c["drafter"], c["k"]) for c in report["checks"]] == [("padrec", 3)]
    for check in report["checks"]:
        assert check["mismatches"] == 0 and check["near_ties"] == 0 and check["mismatched_users"] == []
        assert check["tau"] >= 1.0


def test_a_list_that_differs_beyond_a_near_tie_is_a_mismatch():
    sids = catalogue(60, (6, 4, 3))
    target, _ = models(sids, 2)
    trie = ItemTrie(sids)
    examples = _examples(3)
    plain = decode_all(torch_decoders(target, {}, trie, [], rows=3)[("plain", 0)], examples, 0, 3, 4, progress=False)
    # user 1's list with its first token swapped for another allowed first token: not what greedy chose
    other = copy.deepcopy(plain)
    other[1].tokens[0] = min({int(t) for t in sids.item_tokens[:, 0]} - {plain[1].tokens[0]})
    differences = compare_to_plain(target, trie, examples, plain, other)
    gaps = differences.pop("divergence_gaps")
    assert differences == {"near_ties": 0, "mismatches": 1, "mismatched_users": [1]}
    assert len(gaps) == 1 and gaps[0] >= NEAR_TIE_GAP


def test_drafters_are_compared_user_by_user_with_the_baseline_at_the_same_k():
    sids = catalogue(60, (6, 4, 3))
    target, draft = models(sids, 1)
    trie = ItemTrie(sids)
    # the same draft under two names: paired per-user tau must agree exactly, at every k
    decoders = torch_decoders(target, {"eagle": draft, "padrec": draft}, trie, [2, 3], rows=4)
    report = check_lossless(target, decoders, trie, _examples(6), batch_size=4, top_n=4, progress=False,
                            baseline="eagle")
    compared = {(c["drafter"], c["k"]): c.get("versus_baseline") for c in report["checks"]}
    assert compared[("eagle", 2)] is None and compared[("eagle", 3)] is None
    for k in (2, 3):
        versus = compared[("padrec", k)]
        assert versus["users"] == 6 and versus["ratio"] == 1.0 and versus["ratio_ci95"] == [1.0, 1.0]
        assert versus["users_higher"] == versus["users_lower"] == 0
