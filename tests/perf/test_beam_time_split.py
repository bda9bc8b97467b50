"""perf.beam_time_split: a search's parts add up to its time, and timing the scorers changes nothing."""

from __future__ import annotations

import pytest

from padrec.decoding.beam import BeamDecoder
from padrec.decoding.interfaces import BeamRequest
from padrec.decoding.torch_draft import TorchDraft
from padrec.decoding.torch_target import TorchTarget
from perf.beam_time_split import TimedCalls, split_one


def test_parts_add_up_and_the_timed_search_equals_the_untimed_one(exported_tiny):
    e = exported_tiny
    sids = e.trie.sids
    untimed_target, untimed_draft = TorchTarget(e.target, 8, sids), TorchDraft(e.draft, sids, 8)
    target, draft = TimedCalls(TorchTarget(e.target, 8, sids)), TimedCalls(TorchDraft(e.draft, sids, 8))
    timed = BeamDecoder(e.trie, target, e.target.config.max_seq_len, 8, draft, 8, one_row=True)
    untimed = BeamDecoder(e.trie, untimed_target, e.target.config.max_seq_len, 8, untimed_draft, 8, one_row=True)
    for request in (BeamRequest((1, 5, 9), 4, 8), BeamRequest((1, 5, 9), 4, 8, draft_width=8)):
        parts = split_one(timed, target, draft, request)
        expected = {"prefill", "levels"} if not request.draft_width else {
            "prefill", "draft_prompt", "draft_steps", "tree", "fallbacks"}
        assert set(parts) == expected | {"search", "total"}
        assert sum(v for k, v in parts.items() if k != "total") == pytest.approx(parts["total"])
        assert min(v for k, v in parts.items() if k not in ("search", "fallbacks")) > 0
        rows = [list(range(timed.rows_needed(request)))]
        assert timed.generate([request], rows)[0].items == untimed.generate([request], rows)[0].items
