"""The serving logic without Triton: catalogue, parameters, slot pool, and the served decoder over
in-process services giving exactly the offline engine's lists."""

from __future__ import annotations

import numpy as np
import pytest

from padrec.config import DecodeConfig, ServingConfig
from padrec.decoding.draft_tree import TreeDrafting
from padrec.decoding.engine import ListDecoder
from padrec.decoding.interfaces import BeamRequest, DecodeRequest, DecodeResult, InvalidRequest
from padrec.decoding.onnx_draft import OnnxDraft
from padrec.decoding.onnx_draft_scorer import OnnxDraftScorer
from padrec.decoding.onnx_target import OnnxTarget
from padrec.serving.catalogue import ItemCatalogue
from padrec.serving.decoder import ServedDecoder
from padrec.serving.offline import offline_beams
from padrec.serving.parameters import ServedRequest, parse_request, serving_config
from padrec.serving.services import DraftService, DraftStepService, TargetService
from padrec.serving.slots import PoolFull, SlotPool

SLOTS = ServingConfig().target_slots


def test_catalogue_maps_both_ways_truncates_and_names_unknown_ids():
    catalogue = ItemCatalogue(["a", "b", "c", "d"])
    assert catalogue.to_indices(["b", "d"], 20) == ([1, 3], False)
    assert catalogue.to_indices(["a", "b", "c", "d"], 2) == ([2, 3], True)
    assert catalogue.to_ids([3, 0]) == ["d", "a"]
    with pytest.raises(InvalidRequest, match="'x', 'y'"):
        catalogue.to_indices(["a", "x", "y"], 20)
    with pytest.raises(InvalidRequest, match="empty"):
        catalogue.to_indices([], 20)


def test_parameters_get_defaults_and_reject_unknown_names_and_wrong_types():
    served = parse_request([1, 2], {})
    assert served.drafter == "padrec"
    assert served.request == DecodeRequest((1, 2), top_n=10, num_draft_tokens=ServingConfig().num_draft_tokens)
    served = parse_request([1], {"top_n": 3, "drafter": "eagle", "temperature": 1, "exclude_history": False})
    assert (served.request.top_n, served.drafter, served.request.temperature) == (3, "eagle", 1.0)
    assert not served.request.exclude_history
    for parameters, message in [({"topn": 3}, "unknown parameters"), ({"top_n": "3"}, "top_n must be int"),
                                ({"top_n": True}, "top_n must be int"), ({"exclude_history": 1}, "must be bool"),
                                ({"drafter": "medusa"}, "drafter must be one of"), ({"seed": -1}, "seed must be")]:
        with pytest.raises(InvalidRequest, match=message):
            parse_request([1], parameters)


def test_deployment_load_settings_come_from_the_model_config_parameters():
    assert serving_config({}) == ServingConfig()
    serving = serving_config({"load_threshold": {"string_value": "6"}, "draft_tokens_under_load": {"string_value": "2"}})
    assert (serving.load_threshold, serving.draft_tokens_under_load) == (6, 2)
    assert serving.batch_slots == ServingConfig().batch_slots
    for parameters, message in [({"load_treshold": {"string_value": "6"}}, "unknown model parameters"),
                                ({"load_threshold": {"string_value": "-1"}}, "integer >= 0"),
                                ({"load_threshold": {"string_value": "four"}}, "integer >= 0")]:
        with pytest.raises(ValueError, match=message):
            serving_config(parameters)


def test_beam_mode_parameters_and_their_mistakes():
    served = parse_request([1, 2], {"mode": "beam", "beam_width": 8, "top_n": 5})
    assert served.mode == "beam" and served.drafter == "padrec"
    assert served.request == BeamRequest((1, 2), top_n=5, beam_width=8)
    served = parse_request([1], {"mode": "beam", "draft_width": 6, "drafter": "eagle"})
    assert (served.request.draft_width, served.drafter) == (6, "eagle")
    assert parse_request([1], {"mode": "beam"}).request.draft_width == DecodeConfig().draft_width == 0
    assert parse_request([1], {"mode": "beam"}).request.beam_width == DecodeConfig().beam_width
    assert parse_request([1], {"mode": "list"}).mode == "list"
    for parameters, message in [({"mode": "tree"}, "mode must be one of"),
                                ({"mode": "beam", "num_draft_tokens": 2}, r"\['num_draft_tokens'\] do not apply to mode 'beam'"),
                                ({"mode": "beam", "temperature": 1.0}, "do not apply to mode 'beam'"),
                                ({"beam_width": 4}, r"\['beam_width'\] do not apply to mode 'list'"),
                                ({"draft_width": 4}, r"\['draft_width'\] do not apply to mode 'list'"),
                                ({"mode": "beam", "drafter": "medusa"}, "drafter must be one of"),
                                ({"mode": "beam", "beam_width": "4"}, "beam_width must be int")]:
        with pytest.raises(InvalidRequest, match=message):
            parse_request([1], parameters)


def test_slot_pool_is_bounded_hands_out_all_or_none_and_refuses_double_release():
    pool = SlotPool(range(4, 8))
    held = [pool.acquire(), pool.acquire()]
    assert sorted(r for rows in held for r in rows) == [4, 5] and pool.in_use == 2
    with pytest.raises(PoolFull, match="3 decoding slots asked for, 2 of 4 free"):
        pool.acquire(3)
    assert pool.in_use == 2  # a refused request takes nothing
    pair = pool.acquire(2)
    with pytest.raises(PoolFull):
        pool.acquire()
    pool.release(held[0] + pair)
    assert pool.in_use == 1
    with pytest.raises(ValueError):
        pool.release([3])
    with pytest.raises(ValueError, match="not held"):
        pool.release(pair[:1])


@pytest.fixture(scope="module")
def services(exported_tiny):
    repository = exported_tiny.repository
    return {name: cls(repository / name / "1" / "model.onnx", SLOTS)
            for name, cls in (("target", TargetService), ("draft_padrec", DraftService), ("draft_eagle", DraftService),
                              ("draft_padrec_step", DraftStepService), ("draft_eagle_step", DraftStepService))}


def direct_call(services, log=None):
    def call(model, inputs, output_names):
        if log is not None:
            log.append(model)
        outputs = services[model].handle(inputs)
        return {name: outputs[name] for name in output_names}
    return call


def test_served_decoder_equals_the_offline_engine(exported_tiny, services):
    e = exported_tiny
    histories = [[1, 5, 9], [2], [30, 4, 17, 8], [11, 12]]
    requests = [ServedRequest(DecodeRequest(tuple(h), top_n=4, num_draft_tokens=k), drafter)
                for h in histories for k, drafter in ((0, "padrec"), (2, "padrec"), (3, "eagle"))]
    unloaded = ServingConfig(load_threshold=len(requests))  # every request drafts as it asked
    served = ServedDecoder(e.repository, direct_call(services), range(len(requests)), unloaded)
    outcomes = served.decode(requests)
    assert served.pool.in_use == 0
    onnx = e.repository
    for drafter in ("padrec", "eagle"):
        offline = ListDecoder(e.trie, OnnxTarget(onnx / "target" / "1" / "model.onnx", 1, sids=e.trie.sids), e.target.config.max_seq_len,
                              proposer=OnnxDraft(onnx / f"draft_{drafter}" / "1" / "model.onnx", 1))
        for request, outcome in zip(requests, outcomes):
            if request.drafter == drafter:
                expected = offline.generate([request.request], [0])[0]
                assert outcome.items == expected.items and outcome.tokens == expected.tokens
                assert outcome.stats.as_dict() == expected.stats.as_dict()
                np.testing.assert_allclose(outcome.scores, expected.scores, rtol=0, atol=1e-5)


def test_served_token_trees_equal_the_offline_engine_and_plain_greedy(exported_tiny, services):
    """Tree requests beside chains and plain ones: the draft step model grows the trees, the target
    verifies each in one forward and keeps its accepted path with the row's next call (one target
    call per round, as for chains)."""
    e = exported_tiny
    histories = [[1, 5, 9], [2], [30, 4, 17, 8]]
    shapes = [{"tree_width": 3, "num_draft_tokens": 3}, {"tree_width": 2, "num_draft_tokens": 3, "tree_budget": 4},
              {"tree_width": 4, "num_draft_tokens": 2, "tree_slot_widths": "1,3,2,1,1"},
              {"tree_width": 1, "num_draft_tokens": 3, "tree_min_prob": 0.2}, {"num_draft_tokens": 2},
              {"num_draft_tokens": 0}]
    requests = [parse_request(h, {"top_n": 4, **shape}) for h in histories for shape in shapes]
    calls = []
    served = ServedDecoder(e.repository, direct_call(services, calls), range(len(requests)),
                           ServingConfig(load_threshold=len(requests)))
    outcomes = served.decode(requests)
    assert served.pool.in_use == 0 and "draft_padrec_step" in calls
    assert calls.count("target") == max(o.stats.rounds for o in outcomes)  # one engine batch: a call per round
    onnx = e.repository
    offline = ListDecoder(e.trie, OnnxTarget(onnx / "target" / "1" / "model.onnx", 1, sids=e.trie.sids),
                          e.target.config.max_seq_len,
                          proposer=TreeDrafting(OnnxDraft(onnx / "draft_padrec" / "1" / "model.onnx", 1),
                                                OnnxDraftScorer(onnx / "draft_padrec_step" / "1" / "model.onnx", 1)))
    plain = {tuple(h): offline.generate([DecodeRequest(tuple(h), top_n=4, num_draft_tokens=0)], [0])[0]
             for h in histories}
    for request, outcome in zip(requests, outcomes):
        expected = offline.generate([request.request], [0])[0]
        assert outcome.tokens == expected.tokens == plain[request.request.history].tokens
        assert outcome.stats.as_dict() == expected.stats.as_dict()
    trees = [o for r, o in zip(requests, outcomes) if r.request.tree_width > 1]
    assert all(o.stats.drafted > 0 for o in trees)
    # one slot, request after request: a list that ended on a tree round leaves its last kept path
    # unsent, and the next request in that row must not receive it
    one_slot = ServedDecoder(e.repository, direct_call(services), range(1))
    for request, outcome in zip(requests, outcomes):
        again = one_slot.decode([request])[0]
        assert again.tokens == outcome.tokens and again.stats.as_dict() == outcome.stats.as_dict()


def test_tree_parameters_and_their_mistakes():
    served = parse_request([1, 2], {"num_draft_tokens": 3, "tree_width": 4, "tree_budget": 6,
                                    "tree_slot_widths": "1, 3,2,1,1", "tree_min_prob": 0.1})
    assert served.request == DecodeRequest((1, 2), num_draft_tokens=3, tree_width=4, tree_budget=6,
                                           tree_slot_widths=(1, 3, 2, 1, 1), tree_min_prob=0.1)
    assert parse_request([1], {"tree_slot_widths": ""}).request.tree_slot_widths == ()
    for parameters, message in [({"tree_width": "2"}, "tree_width must be int"),
                                ({"tree_slot_widths": [1, 2]}, "tree_slot_widths must be str"),
                                ({"tree_slot_widths": "1,two"}, "whole numbers separated by commas"),
                                ({"tree_slot_widths": "1,-2"}, "whole numbers separated by commas"),
                                ({"mode": "beam", "tree_width": 2}, r"\['tree_width'\] do not apply to mode 'beam'")]:
        with pytest.raises(InvalidRequest, match=message):
            parse_request([1], parameters)


def test_bad_tree_requests_are_refused_alone_and_trees_become_chains_under_load(exported_tiny, services):
    serving = ServingConfig(load_threshold=2, draft_tokens_under_load=2)
    calls: list[str] = []
    served = ServedDecoder(exported_tiny.repository, direct_call(services, calls), range(4), serving)
    good = parse_request([1, 5], {"top_n": 3, "num_draft_tokens": 3, "tree_width": 3})
    mistakes = ({"num_draft_tokens": 3, "tree_width": 6}, {"tree_width": 2, "num_draft_tokens": 2, "tree_budget": 5},
                {"tree_width": 2, "num_draft_tokens": 2, "tree_slot_widths": "1,2"})
    bad = [parse_request([1, 5], {"top_n": 3, **p}) for p in mistakes]
    outcomes = served.decode([bad[0], good, bad[1], bad[2]])
    assert isinstance(outcomes[1], DecodeResult) and served.pool.in_use == 0
    for outcome, message in zip((outcomes[0], outcomes[2], outcomes[3]),
                                ("at most 16 drafted nodes", "tree_budget must be in 0..4", "one width >= 1 per slot")):
        assert isinstance(outcome, InvalidRequest) and message in str(outcome)
    # refused as asked, even where the load would have capped it into range
    assert isinstance(served.decode([bad[0]] * 3)[0], InvalidRequest)
    alone = served.decode([good])[0]
    calls.clear()
    loaded = served.decode([good] * 3)  # above the threshold: a chain of at most 2 tokens each
    assert all(r.tokens == alone.tokens for r in loaded)
    assert all(r.stats.drafted <= 2 * (r.stats.rounds - 1) for r in loaded)
    assert "draft_padrec_step" not in calls and "draft_padrec" in calls
    assert alone.stats.drafted > 2 * (alone.stats.rounds - 1)  # alone it drafted a tree


def test_served_beam_requests_equal_the_offline_beam_search_beside_lists(exported_tiny, services):
    e = exported_tiny
    histories = [[1, 5, 9], [2], [30, 4, 17, 8]]
    beams = [ServedRequest(BeamRequest(tuple(h), top_n=3, beam_width=5), "padrec") for h in histories]
    lists = [ServedRequest(DecodeRequest(tuple(h), top_n=3, num_draft_tokens=2), "padrec") for h in histories]
    served = ServedDecoder(e.repository, direct_call(services), range(3 * 5 + 3))
    outcomes = served.decode([r for pair in zip(beams, lists) for r in pair])
    assert served.pool.in_use == 0
    expected = offline_beams(e.repository, histories, beam_width=5, top_n=3)
    for outcome, offline in zip(outcomes[::2], expected):
        assert outcome.items == offline.items and outcome.stats.rounds == offline.stats.rounds
        np.testing.assert_allclose(outcome.scores, offline.scores, rtol=0, atol=1e-5)
    assert all(isinstance(o, DecodeResult) and len(o.items) == 3 for o in outcomes[1::2])


def test_served_speculative_beams_equal_offline_ones_and_plain_beam_search(exported_tiny, services):
    """Speculative beam requests through the draft step models: the offline speculative search's
    results and counters, and plain beam search's items."""
    e = exported_tiny
    histories = [[1, 5, 9], [2], [30, 4, 17, 8]]
    calls = []
    served = ServedDecoder(e.repository, direct_call(services, calls), range(3 * (4 + 4 * 2)))
    requests = [ServedRequest(BeamRequest(tuple(h), top_n=3, beam_width=4, draft_width=4), drafter)
                for h in histories for drafter in ("padrec", "eagle")]
    outcomes = served.decode(requests)
    assert served.pool.in_use == 0
    assert {"draft_padrec_step", "draft_eagle_step"} <= set(calls)
    plain = offline_beams(e.repository, histories, beam_width=4, top_n=3)
    for drafter in ("padrec", "eagle"):
        offline = offline_beams(e.repository, histories, beam_width=4, top_n=3, drafter=drafter, draft_width=4)
        mine = [o for o, r in zip(outcomes, requests) if r.drafter == drafter]
        for outcome, expected, reference in zip(mine, offline, plain):
            assert outcome.items == expected.items == reference.items
            assert outcome.stats.as_dict() == expected.stats.as_dict() and outcome.stats.drafted > 0
            np.testing.assert_allclose(outcome.scores, reference.scores, rtol=0, atol=1e-5)


IN_ROWS = ServingConfig(one_row_beams=False)  # a cache row per beam, as for a target without its tree forward


def test_a_beam_request_needs_a_slot_per_beam_and_bad_widths_are_refused(exported_tiny, services):
    served = ServedDecoder(exported_tiny.repository, direct_call(services), range(4), IN_ROWS)
    outcomes = served.decode([ServedRequest(BeamRequest((1, 2), top_n=2, beam_width=3), "padrec"),
                              ServedRequest(BeamRequest((1, 2), top_n=2, beam_width=2), "padrec"),
                              ServedRequest(BeamRequest((1, 2), top_n=3, beam_width=2), "padrec"),
                              ServedRequest(DecodeRequest((1, 2), top_n=2), "padrec")])
    assert isinstance(outcomes[0], DecodeResult) and len(outcomes[0].items) == 2
    # the list takes a slot, the first beam request the other 3; the second waits for them
    assert isinstance(outcomes[1], DecodeResult) and len(outcomes[1].items) == 2
    assert isinstance(outcomes[2], InvalidRequest) and "top_n must be in 1..beam_width" in str(outcomes[2])
    assert isinstance(outcomes[3], DecodeResult)
    assert served.pool.in_use == 0
    wider = served.decode([ServedRequest(BeamRequest((1, 2), top_n=2, beam_width=5), "padrec")])[0]
    assert isinstance(wider, InvalidRequest) and "draft_width 0 needs 5 decoding slots; this model has 4" in str(wider)
    # a speculative request holds a row per prefix its draft adds, too: 2 + 2 x 2 here
    drafting = served.decode([ServedRequest(BeamRequest((1, 2), top_n=2, beam_width=2, draft_width=2), "padrec")])[0]
    assert isinstance(drafting, InvalidRequest) and "needs 6 decoding slots" in str(drafting)


def test_beam_requests_beyond_the_free_slots_are_served_in_waves(exported_tiny, services):
    e = exported_tiny
    histories = [[1, 5, 9], [2], [30, 4, 17, 8], [11, 12], [7]]
    calls = []
    served = ServedDecoder(e.repository, direct_call(services, calls), range(8), IN_ROWS)
    # five beam-5 requests and a list, 26 slots asked of 8: the list, then one beam request a wave
    requests = [ServedRequest(BeamRequest(tuple(h), top_n=3, beam_width=5), "padrec") for h in histories]
    outcomes = served.decode(requests + [ServedRequest(DecodeRequest((2, 3), top_n=3), "padrec")])
    assert served.pool.in_use == 0
    expected = offline_beams(e.repository, histories, beam_width=5, top_n=3)
    for outcome, offline in zip(outcomes, expected):
        assert outcome.items == offline.items
        np.testing.assert_allclose(outcome.scores, offline.scores, rtol=0, atol=1e-5)
    assert isinstance(outcomes[-1], DecodeResult)
    assert calls.count("target") >= 5 * 2  # waves: each beam request's levels ran apart from the others'
    # a pool held elsewhere (the slots of another thread's batch) is not waited for
    others = served.pool.acquire(6)
    waited = served.decode(requests[:1])[0]
    assert isinstance(waited, PoolFull) and "5 decoding slots asked for, 2 free" in str(waited)
    served.pool.release(others)


def test_one_row_beam_requests_hold_one_slot_each_and_equal_beams_in_rows(exported_tiny, services):
    """Served by default in one row: five plain beam-5 requests and a list fit 6 slots in one wave,
    a speculative one holds max(B, D) slots for its draft; the results are the row-per-beam search's."""
    e = exported_tiny
    histories = [[1, 5, 9], [2], [30, 4, 17, 8], [11, 12], [7]]
    calls = []
    served = ServedDecoder(e.repository, direct_call(services, calls), range(6))
    assert all(beam.one_row for beam in served.beams.values())
    requests = [ServedRequest(BeamRequest(tuple(h), top_n=3, beam_width=5), "padrec") for h in histories]
    outcomes = served.decode(requests + [ServedRequest(DecodeRequest((2, 3), top_n=3), "padrec")])
    assert served.pool.in_use == 0 and isinstance(outcomes[-1], DecodeResult)
    in_rows = offline_beams(e.repository, histories, beam_width=5, top_n=3)
    for outcome, offline in zip(outcomes, in_rows):
        assert outcome.items == offline.items and outcome.stats.rounds == offline.stats.rounds
        np.testing.assert_allclose(outcome.scores, offline.scores, rtol=0, atol=1e-5)
    beam_forwards = calls.count("target") - outcomes[-1].stats.rounds
    # one wave, the five searched together: a prefill and at most a forward per later level
    assert beam_forwards <= e.trie.sids.num_levels < sum(o.stats.rounds for o in outcomes[:-1])
    speculative = ServedRequest(BeamRequest((1, 5, 9), top_n=3, beam_width=5, draft_width=6), "padrec")
    assert served._slots(speculative) == 6
    (result,) = served.decode([speculative])
    assert result.items == in_rows[0].items and result.stats.drafted > 0


def test_each_request_fails_alone_and_slots_always_come_back(exported_tiny, services):
    served = ServedDecoder(exported_tiny.repository, direct_call(services), range(2))
    good = ServedRequest(DecodeRequest((1, 2), top_n=3, num_draft_tokens=2), "padrec")
    bad = ServedRequest(DecodeRequest((1, 2), top_n=0), "padrec")
    outcomes = served.decode([bad, good, good, good])
    assert isinstance(outcomes[0], InvalidRequest) and "top_n" in str(outcomes[0])
    assert all(isinstance(o, DecodeResult) for o in outcomes[1:3])
    assert isinstance(outcomes[3], PoolFull)  # two slots, three valid requests
    assert served.pool.in_use == 0

    def failing(model, inputs, output_names):
        if model == "draft_eagle":
            raise RuntimeError("draft_eagle: model unavailable")
        return direct_call(services)(model, inputs, output_names)

    # a threshold of 2: both requests of the batch draft, so the eagle one calls its draft model
    served = ServedDecoder(exported_tiny.repository, failing, range(2), ServingConfig(load_threshold=2))
    eagle = ServedRequest(DecodeRequest((3,), top_n=3, num_draft_tokens=2), "eagle")
    ok, failed = served.decode([good, eagle])
    assert isinstance(ok, DecodeResult) and isinstance(failed, RuntimeError)
    assert served.pool.in_use == 0


def test_streaming_hears_every_item_and_cancellation_frees_the_slot(exported_tiny, services):
    served = ServedDecoder(exported_tiny.repository, direct_call(services), range(2))
    request = ServedRequest(DecodeRequest((4, 7), top_n=5, num_draft_tokens=3), "padrec")
    heard = []
    (result,) = served.decode([request], on_item=lambda i, r: heard.append(r.items[-1]))
    assert heard == result.items and len(heard) == 5
    (cut,) = served.decode([request], cancelled=lambda i: True)
    assert cut.cancelled and cut.items == [] and served.pool.in_use == 0


def test_above_the_load_threshold_requests_draft_less_and_get_the_same_lists(exported_tiny, services):
    serving = ServingConfig(load_threshold=2, draft_tokens_under_load=1)
    calls: list[str] = []
    served = ServedDecoder(exported_tiny.repository, direct_call(services, calls), range(4), serving)
    requests = [ServedRequest(DecodeRequest((h,), top_n=3, num_draft_tokens=3), "padrec") for h in (1, 2, 3)]
    light = [served.decode([r])[0] for r in requests]  # one at a time: below the threshold
    loaded = served.decode(requests)  # three together: above it
    assert [r.items for r in loaded] == [r.items for r in light]
    assert all(r.stats.drafted <= r.stats.rounds - 1 for r in loaded)  # at most 1 token per round
    assert any(r.stats.drafted > r.stats.rounds for r in light)


def test_a_cancelled_beam_request_ends_between_levels_and_frees_its_slots(exported_tiny, services):
    served = ServedDecoder(exported_tiny.repository, direct_call(services), range(10))
    beams = [ServedRequest(BeamRequest(h, top_n=3, beam_width=5), "padrec") for h in ((1, 5, 9), (2,))]
    asked = []

    def cancelled(i):  # the first request's client goes away after the first level
        asked.append(i)
        return i == 0 and asked.count(0) > 1

    cut, kept = served.decode(beams, cancelled=cancelled)
    assert cut.cancelled and cut.items == [] and asked.count(0) == 2
    assert not kept.cancelled and kept.items == offline_beams(exported_tiny.repository, [[2]], 5, 3)[0].items
    assert served.pool.in_use == 0
