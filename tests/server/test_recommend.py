"""The served recommender against the real tritonserver: lists equal to the offline engine's, bad
input answered with INVALID_ARG, streaming, metrics, cancellation, and a concurrent soak."""

from __future__ import annotations

import queue
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from padrec.server import live_processes_in_group
from padrec.serving.offline import offline_beams, offline_lists

pytestmark = pytest.mark.server

MODES = {"plain": {"num_draft_tokens": 0}, "eagle": {"num_draft_tokens": 4, "drafter": "eagle"},
         "padrec": {"num_draft_tokens": 4, "drafter": "padrec"}}


def history_input(history, dtype=object, shape=None) -> grpcclient.InferInput:
    array = np.array([[h.encode() if isinstance(h, str) else h for h in history]], dtype=dtype)
    if shape is not None:
        array = array.reshape(shape)
    tensor = grpcclient.InferInput("HISTORY", list(array.shape), "BYTES" if dtype is object else "INT64")
    tensor.set_data_from_numpy(array)
    return tensor


def recommend(client, history, model="recommend", **parameters) -> dict:
    result = client.infer(model, [history_input(history)], parameters=parameters)
    return {name: result.as_numpy(name) for name in
            ("ITEM_IDS", "SCORES", "ROUNDS", "DRAFTED", "ACCEPTED", "TAU", "HISTORY_TRUNCATED")}


# `padrec verify` compares the engine's speculative and plain lists offline for every test user;
# here the question is whether serving changes them, 8 requests at a time.
SERVED_USERS = 104


def test_served_greedy_lists_equal_the_offline_engine(recommend_server, served_repository, beauty_split,
                                                      beauty_histories):
    item_ids = beauty_split.item_ids
    internal = [e.history for e in beauty_split.test[:SERVED_USERS]]
    with grpcclient.InferenceServerClient(recommend_server.grpc_url) as client, ThreadPoolExecutor(8) as pool:
        for mode, parameters in MODES.items():
            served = list(pool.map(lambda h: recommend(client, h, **parameters), beauty_histories[:SERVED_USERS]))
            expected = offline_lists(served_repository, internal, parameters.get("drafter"),
                                     parameters["num_draft_tokens"])
            served_lists = [[item.decode() for item in r["ITEM_IDS"][0]] for r in served]
            expected_lists = [[item_ids[i] for i in items] for items in expected]
            differing = [u for u, (a, b) in enumerate(zip(served_lists, expected_lists)) if a != b]
            assert not differing, f"{mode}: {len(differing)} of {SERVED_USERS} lists differ, users {differing[:10]}"
            if mode != "plain":
                tau = np.median([r["TAU"][0, 0] for r in served])
                assert tau > 1.5 and all(r["ACCEPTED"][0, 0] <= r["DRAFTED"][0, 0] for r in served)


TREE_USERS = 24


def test_served_token_trees_give_plain_greedy_lists(recommend_server, served_repository, beauty_split,
                                                    beauty_histories):
    """Token trees (the draft step model grows them, the target verifies each in one forward and
    keeps the accepted path) answer exactly the plain lists, with more tokens per forward than the
    chain of the same depth."""
    item_ids = beauty_split.item_ids
    expected = offline_lists(served_repository, [e.history for e in beauty_split.test[:TREE_USERS]], None, 0)
    expected_lists = [[item_ids[i] for i in items] for items in expected]
    taus = {}
    with grpcclient.InferenceServerClient(recommend_server.grpc_url) as client:
        for name, shape in {"chain": {}, "tree": {"tree_width": 3}, "shaped": {"tree_width": 3, "tree_budget": 8,
                                                                            "tree_slot_widths": "2,3,2,1,1"}}.items():
            served = [recommend(client, h, num_draft_tokens=4, **shape) for h in beauty_histories[:TREE_USERS]]
            lists = [[item.decode() for item in r["ITEM_IDS"][0]] for r in served]
            differing = [u for u, (a, b) in enumerate(zip(lists, expected_lists)) if a != b]
            assert not differing, f"{name}: {len(differing)} of {TREE_USERS} lists differ, users {differing[:10]}"
            taus[name] = np.median([r["TAU"][0, 0] for r in served])
        # streamed too: recommend_stream decodes with the same engine, one response per item
        responses: queue.Queue = queue.Queue()
        client.start_stream(callback=lambda result, error: responses.put((result, error)))
        client.async_stream_infer("recommend_stream", [history_input(beauty_histories[0])],
                                  parameters={"num_draft_tokens": 4, "tree_width": 3},
                                  enable_empty_final_response=True)
        streamed = []
        while True:
            result, error = responses.get(timeout=120)
            assert error is None, error
            if result.as_numpy("ITEM_IDS") is not None:
                streamed += [item.decode() for item in result.as_numpy("ITEM_IDS")[0]]
            if result.get_response().parameters["triton_final_response"].bool_param:
                break
        client.stop_stream()
    assert streamed == expected_lists[0]
    assert taus["tree"] > taus["chain"] > 1.5


@pytest.mark.parametrize("case, message", [
    ("unknown item", "unknown item IDs in history: 'no-such-item'"),
    ("empty history", "history is empty"),
    ("two histories in one request", "one history per request"),
    ("top_n 0", "top_n must be in 1..50, got 0"),
    ("top_n 51", "top_n must be in 1..50, got 51"),
    ("num_draft_tokens 9", "num_draft_tokens must be in 0..4, got 9"),
    ("num_draft_tokens -1", "num_draft_tokens must be in 0..4, got -1"),
    ("top_n as string", "top_n must be int"),
    ("unknown parameter", "unknown parameters ['beam']"),
    ("unknown drafter", "drafter must be one of"),
    ("unknown mode", "mode must be one of ['list', 'beam'], got 'tree'"),
    ("beam top_n above beam_width", "top_n must be in 1..beam_width (4), got 5"),
    ("beam_width above the maximum", "beam_width must be in 1..32, got 33"),
    ("a list parameter in beam mode", "parameters ['num_draft_tokens'] do not apply to mode 'beam'"),
    ("draft_width above the maximum", "draft_width must be in 0..32, got 33"),
    ("a tree of too many nodes", "at most 16 drafted nodes a round; got tree_width 5, num_draft_tokens 4"),
    ("tree_slot_widths not numbers", "tree_slot_widths must be whole numbers separated by commas"),
    ("a tree parameter in beam mode", "parameters ['tree_width'] do not apply to mode 'beam'"),
    ("wrong dtype", "HISTORY"),
    ("wrong rank", "HISTORY"),
])
def test_bad_input_is_invalid_argument_and_the_server_stays_up(recommend_server, beauty_histories, case, message):
    history = beauty_histories[0]
    inputs, parameters = [history_input(history)], {}
    if case == "unknown item":
        inputs = [history_input([*history, "no-such-item"])]
    elif case == "empty history":
        inputs = [history_input([])]
    elif case == "two histories in one request":
        inputs = [history_input(history[:1] * 2, shape=(2, 1))]
    elif case == "wrong dtype":
        inputs = [history_input([1, 2], dtype=np.int64)]
    elif case == "wrong rank":
        inputs = [history_input(history, shape=(len(history),))]
    else:
        parameters = {"top_n 0": {"top_n": 0}, "top_n 51": {"top_n": 51}, "num_draft_tokens 9": {"num_draft_tokens": 9},
                      "num_draft_tokens -1": {"num_draft_tokens": -1}, "top_n as string": {"top_n": "10"},
                      "unknown parameter": {"beam": 4}, "unknown drafter": {"drafter": "medusa"},
                      "unknown mode": {"mode": "tree"},
                      "beam top_n above beam_width": {"mode": "beam", "beam_width": 4, "top_n": 5},
                      "beam_width above the maximum": {"mode": "beam", "beam_width": 33},
                      "a list parameter in beam mode": {"mode": "beam", "num_draft_tokens": 2},
                      "draft_width above the maximum": {"mode": "beam", "draft_width": 33},
                      "a tree of too many nodes": {"tree_width": 5},
                      "tree_slot_widths not numbers": {"tree_width": 2, "tree_slot_widths": "1;2"},
                      "a tree parameter in beam mode": {"mode": "beam", "tree_width": 2}}[case]
    with grpcclient.InferenceServerClient(recommend_server.grpc_url) as client:
        with pytest.raises(grpcclient.InferenceServerException) as error:
            client.infer("recommend", inputs, parameters=parameters)
        assert error.value.status() == "StatusCode.INVALID_ARGUMENT"
        assert message in error.value.message()
        assert len(recommend(client, history, top_n=3)["ITEM_IDS"][0]) == 3  # still serving


def test_over_long_history_is_truncated_and_says_so(recommend_server, beauty_split, beauty_histories):
    long_history = list(beauty_split.item_ids[:45])
    with grpcclient.InferenceServerClient(recommend_server.grpc_url) as client:
        cut = recommend(client, long_history, top_n=5)
        last_20 = recommend(client, long_history[-20:], top_n=5)
        assert cut["HISTORY_TRUNCATED"][0, 0] and not last_20["HISTORY_TRUNCATED"][0, 0]
        assert cut["ITEM_IDS"].tolist() == last_20["ITEM_IDS"].tolist()


def test_stream_sends_each_item_as_verified_and_matches_the_list(recommend_server, beauty_histories):
    history = beauty_histories[1]
    responses: queue.Queue = queue.Queue()
    with grpcclient.InferenceServerClient(recommend_server.grpc_url) as client:
        whole = recommend(client, history, top_n=6)
        client.start_stream(callback=lambda result, error: responses.put((result, error)))
        client.async_stream_infer("recommend_stream", [history_input(history)], parameters={"top_n": 6},
                                  enable_empty_final_response=True)
        items, rounds = [], []
        while True:
            result, error = responses.get(timeout=120)
            assert error is None, error
            if result.as_numpy("ITEM_IDS") is not None:  # the final response carries the last item
                items += [item.decode() for item in result.as_numpy("ITEM_IDS")[0]]
                rounds.append(int(result.as_numpy("ROUNDS")[0, 0]))
            if result.get_response().parameters["triton_final_response"].bool_param:
                break
        client.stop_stream()
    assert items == [item.decode() for item in whole["ITEM_IDS"][0]]
    assert rounds == sorted(rounds) and rounds[-1] == whole["ROUNDS"][0, 0]  # running totals


BEAM_USERS = 12


def test_served_beam_top_k_equals_offline_beam_search_listed_and_streamed(recommend_server, served_repository,
                                                                        beauty_split, beauty_histories):
    item_ids = beauty_split.item_ids
    beam = {"mode": "beam", "beam_width": 20, "top_n": 10}
    expected = offline_beams(served_repository, [e.history for e in beauty_split.test[:BEAM_USERS]], 20, 10)
    rounds_before = metric_total(recommend_server, "padrec_beam_rounds_total", model="padrec_decode")
    with grpcclient.InferenceServerClient(recommend_server.grpc_url) as client:
        served = [recommend(client, h, **beam) for h in beauty_histories[:BEAM_USERS]]
        responses: queue.Queue = queue.Queue()
        client.start_stream(callback=lambda result, error: responses.put((result, error)))
        client.async_stream_infer("recommend_stream", [history_input(beauty_histories[0])], parameters=beam)
        streamed, error = responses.get(timeout=120)  # one response: a ranking is known only at its end
        assert error is None, error
        client.stop_stream()
    for result, offline in zip(served, expected):
        assert [i.decode() for i in result["ITEM_IDS"][0]] == [item_ids[i] for i in offline.items]
        np.testing.assert_allclose(result["SCORES"][0], offline.scores, rtol=0, atol=1e-4)
        assert result["ROUNDS"][0, 0] == offline.stats.rounds == 4  # prefill + the three levels before the last
    assert streamed.as_numpy("ITEM_IDS").tolist() == served[0]["ITEM_IDS"].tolist()
    assert metric_total(recommend_server, "padrec_beam_rounds_total", model="padrec_decode") == \
        rounds_before + sum(r["ROUNDS"][0, 0] for r in served)


def test_served_speculative_beams_equal_plain_beam_search(recommend_server, served_repository, beauty_split,
                                                          beauty_histories):
    """B=10 with the PAD-Rec draft proposing 10 prefixes a level: the items and scores of plain beam
    search (a row per beam), the counters of the offline speculative search on the same graphs in
    the served one-row layout."""
    item_ids = beauty_split.item_ids
    histories = [e.history for e in beauty_split.test[:BEAM_USERS]]
    plain = offline_beams(served_repository, histories, 10, 10)
    speculative = offline_beams(served_repository, histories, 10, 10, drafter="padrec", draft_width=10, one_row=True)
    levels_before = metric_total(recommend_server, "padrec_beam_accepted_levels_total", drafter="padrec")
    with grpcclient.InferenceServerClient(recommend_server.grpc_url) as client:
        served = [recommend(client, h, mode="beam", beam_width=10, top_n=10, draft_width=10)
                  for h in beauty_histories[:BEAM_USERS]]
    for result, reference, offline in zip(served, plain, speculative):
        assert [i.decode() for i in result["ITEM_IDS"][0]] == [item_ids[i] for i in reference.items]
        np.testing.assert_allclose(result["SCORES"][0], reference.scores, rtol=0, atol=1e-4)
        assert (result["ROUNDS"][0, 0], result["DRAFTED"][0, 0], result["ACCEPTED"][0, 0]) == \
            (offline.stats.rounds, offline.stats.drafted, offline.stats.accepted)
        assert result["DRAFTED"][0, 0] == 10 * (4 - 2)  # D prefixes at each level below the first but the last
    assert sum(o.stats.accepted for o in speculative) > 0  # the tree covered some level: the counter moves
    assert metric_total(recommend_server, "padrec_beam_accepted_levels_total", drafter="padrec") == \
        levels_before + sum(r["ACCEPTED"][0, 0] for r in served)


def metric_total(server, name: str, **labels: str) -> float:
    """The sum of counter `name` over its series that carry all of `labels`."""
    text = urllib.request.urlopen(server.metrics_url, timeout=10).read().decode()
    series = (line.rsplit(" ", 1) for line in text.splitlines() if line.startswith(name + "{"))
    return sum(float(value) for key, value in series
               if all(f'{label}="{wanted}"' in key for label, wanted in labels.items()))


def test_metrics_count_requests_rounds_and_draft_tokens(recommend_server, beauty_histories):
    padrec = {"model": "padrec_decode", "drafter": "padrec"}
    counters = [("padrec_requests_total", {"model": "padrec_decode", "outcome": "ok"}),
                ("padrec_rounds_total", padrec),
                ("padrec_draft_tokens_total", {**padrec, "fate": "drafted"}),
                ("padrec_draft_tokens_total", {**padrec, "fate": "accepted"}),
                ("padrec_draft_depth_total", {**padrec, "depth": "1", "fate": "reached"})]

    def snapshot() -> list[float]:
        return [metric_total(recommend_server, name, **labels) for name, labels in counters]

    before = snapshot()
    with grpcclient.InferenceServerClient(recommend_server.grpc_url) as client:
        result = recommend(client, beauty_histories[2], num_draft_tokens=3)
    delta = [b - a for a, b in zip(before, snapshot())]
    assert delta[:4] == [1, result["ROUNDS"][0, 0], result["DRAFTED"][0, 0], result["ACCEPTED"][0, 0]]
    assert 1 <= delta[4] < result["ROUNDS"][0, 0]  # every round but the prefill drafts


def test_a_stream_the_client_cancels_ends_on_the_server(recommend_server, beauty_histories):
    """The cancellation reaches the decoder, which ends the request: counted as cancelled, not
    decoded to its end (an ensemble in between would keep it in flight for good)."""
    def count() -> float:
        return metric_total(recommend_server, "padrec_requests_total", model="recommend_stream", outcome="cancelled")

    before = count()
    responses: queue.Queue = queue.Queue()
    with grpcclient.InferenceServerClient(recommend_server.grpc_url) as client:
        client.start_stream(callback=lambda result, error: responses.put((result, error)))
        client.async_stream_infer("recommend_stream", [history_input(beauty_histories[4])],
                                  parameters={"top_n": 50, "num_draft_tokens": 0})
        result, error = responses.get(timeout=120)
        assert error is None, error
        client.stop_stream(cancel_requests=True)
    deadline = time.monotonic() + 60
    while count() == before and time.monotonic() < deadline:
        time.sleep(0.2)
    assert count() == before + 1


def test_a_client_that_gives_up_frees_its_slot(recommend_server, beauty_histories):
    with grpcclient.InferenceServerClient(recommend_server.grpc_url) as client:
        with pytest.raises(grpcclient.InferenceServerException) as error:
            client.infer("recommend", [history_input(beauty_histories[3])],
                         parameters={"top_n": 50, "num_draft_tokens": 0}, client_timeout=0.2)
        assert error.value.status() == "StatusCode.DEADLINE_EXCEEDED"
        # whether the server noticed mid-list or finished it, the slot is back and serving goes on
        for history in beauty_histories[:40]:
            assert len(recommend(client, history, top_n=2)["ITEM_IDS"][0]) == 2


def server_rss_mb(server) -> float:
    """Resident memory of the server and its Python-backend stubs."""
    total_kb = 0
    for pid in live_processes_in_group(server.pid):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        total_kb += next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0)
    return total_kb / 1024


def test_16_concurrent_clients_for_60_s_without_failures_and_flat_memory(recommend_server, beauty_histories):
    stop = time.monotonic() + 60
    failures, done = [], []
    rss = []

    def client_loop(worker: int) -> None:
        with grpcclient.InferenceServerClient(recommend_server.grpc_url) as client:
            i = worker
            while time.monotonic() < stop:
                mode = list(MODES.values())[i % len(MODES)]
                try:
                    recommend(client, beauty_histories[i % len(beauty_histories)], top_n=5, **mode)
                    done.append(1)
                except grpcclient.InferenceServerException as error:
                    failures.append(str(error))
                i += 16

    def sample_memory() -> None:
        while time.monotonic() < stop:
            rss.append(server_rss_mb(recommend_server))
            time.sleep(2)

    threads = [threading.Thread(target=client_loop, args=(w,)) for w in range(16)]
    threads.append(threading.Thread(target=sample_memory))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures, failures[:3]
    assert len(done) >= 16
    # after the first quarter (caches and pools allocated up front, arenas warmed) memory stays flat
    warm = rss[len(rss) // 4:]
    assert max(warm) - min(warm) < 0.05 * min(warm) + 50, f"RSS MB over time: {rss}"
