"""The forced room of an exported draft graph: the forced runs it must hold, measured from lists."""

from __future__ import annotations

import numpy as np

from padrec.data.split import Example
from padrec.decoding.constraints import ItemTrie
from padrec.decoding.engine import ListDecoder
from padrec.decoding.interfaces import DecodeRequest
from padrec.decoding.torch_draft import TorchDraft
from padrec.decoding.torch_target import TorchTarget
from padrec.evaluation import generated_lists
from padrec.export.forced_room import forced_runs, measured_room, room_for
from padrec.semantic_ids import SemanticIds, disambiguate


def test_forced_runs_count_codes_and_separators_the_trie_and_bans_leave_no_choice_over():
    # items 0 (0,0,0), 1 (0,1,0), 2 (1,0,0), each with its disambiguating 4th code
    sids = SemanticIds(disambiguate(np.array([[0, 0, 0], [0, 1, 0], [1, 0, 0]])), [2, 2, 1, 1])
    # item 2: first code 1 chosen; its 3 other codes and the separator forced (4). Item 0: with item 2
    # banned, first code 0 forced (5); second code chosen (0 or 1 open); 2 codes forced, no separator
    # after the list's last item.
    assert forced_runs(ItemTrie(sids), [], [2, 0]) == [5, 2]
    # item 1 in the history: after first code 0 (a choice) the second code is forced to 0, then 2 codes
    assert forced_runs(ItemTrie(sids), [1], [0]) == [3]


def test_room_is_the_shortest_that_holds_the_asked_share_of_runs():
    assert room_for([0, 0, 1, 2, 3], coverage=0.95) == 3  # 95% of 5 runs: all of them
    assert room_for([0, 0, 1, 2, 3], coverage=0.8) == 2
    assert room_for([0] * 19 + [4], coverage=0.95) == 1  # 95% of 20: 19 runs; never a room of 0
    assert room_for([]) == 1


class ForcedCounts:
    """A proposer that records how many forced tokens each round started with."""

    def __init__(self, inner):
        self.inner, self.k_max, self.counts = inner, inner.k_max, []

    def propose(self, batch):
        self.counts.extend(len(f) for f in batch.forced)
        return self.inner.propose(batch)


def test_every_speculative_round_starts_on_a_measured_forced_run(exported_tiny):
    e = exported_tiny
    rng = np.random.default_rng(1)
    examples = [Example(f"u{i}", rng.choice(e.trie.sids.num_items, 5, replace=False).tolist(), 0) for i in range(8)]
    lists = generated_lists(e.target, e.trie, examples, progress=False)
    runs = [forced_runs(e.trie, ex.history, items) for ex, items in zip(examples, lists)]
    for ex, items, list_runs in zip(examples, lists, runs):
        spy = ForcedCounts(TorchDraft(e.draft, e.trie.sids, 1))
        decoder = ListDecoder(e.trie, TorchTarget(e.target, 1, e.trie.sids), e.target.config.max_seq_len, proposer=spy)
        result = decoder.generate([DecodeRequest(tuple(ex.history), num_draft_tokens=2)], [0])[0]
        assert result.items == items
        assert spy.counts and set(spy.counts) <= set(list_runs)
    room = measured_room(e.target, e.trie, examples)
    assert room == room_for([r for list_runs in runs for r in list_runs])
    assert 1 <= room < e.trie.sids.tokens_per_item
