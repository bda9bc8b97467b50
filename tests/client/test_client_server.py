"""padrec_client against the real tritonserver serving the exported Beauty recommender: sync,
asyncio, batches, streams, metadata, the command line, and each error class.

Lists are short (top_n=5) and users few: two busy cores serve every request.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from padrec_client import (
    AsyncRecommendClient,
    DeadlineExceeded,
    InvalidArgument,
    Recommendation,
    RecommendClient,
    RetryPolicy,
    Unavailable,
)
from padrec_client.cli import main as cli_main

TOP_N = 5
USERS = 4
UNKNOWN_ITEM = "no-such-item-42"
# Long enough that the server is still decoding when a tiny deadline passes.
SLOW = {"top_n": 50, "num_draft_tokens": 0}
TINY_DEADLINE_S = 0.05


@pytest.fixture(scope="module")
def url(recommend_server) -> str:
    return recommend_server.grpc_url


@pytest.fixture(scope="module")
def histories(beauty_histories) -> list[list[str]]:
    return [list(h) for h in beauty_histories[:USERS]]


@pytest.fixture(scope="module")
def client(url) -> Iterator[RecommendClient]:
    with RecommendClient(url, timeout=120) as client:
        client.wait_until_ready(timeout=120)
        yield client


@pytest.fixture(scope="module")
def reference(client, histories) -> list[Recommendation]:
    """Greedy lists from one plain `recommend` call each: what every other path must reproduce."""
    return [client.recommend(h, TOP_N) for h in histories]


def free_port_url() -> str:
    """A loopback address where nothing listens (the port was free a moment ago)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{probe.getsockname()[1]}"


def assert_same_list(got: Recommendation, want: Recommendation) -> None:
    """Same greedy list; scores within float noise, since batches of other sizes may round differently."""
    assert got.items == want.items
    assert got.scores == pytest.approx(want.scores, abs=1e-4)
    assert got.history_truncated == want.history_truncated


def check_list(rec: Recommendation, history: list[str], top_n: int = TOP_N) -> None:
    assert len(rec.items) == len(rec.scores) == top_n
    assert len(set(rec.items)) == top_n
    assert not set(rec.items) & set(history)  # history excluded by default
    assert all(score <= 0 for score in rec.scores)  # log-probabilities
    assert rec.stats.rounds >= 1 and rec.stats.tau > 0
    assert 0 <= rec.stats.accepted <= rec.stats.drafted
    assert rec.history_truncated is False


# ---- sync ----------------------------------------------------------------------------------

@pytest.mark.server
def test_recommend(reference, histories):
    for rec, history in zip(reference, histories):
        check_list(rec, history)
    assert any(rec.stats.drafted > 0 for rec in reference)  # speculative by default


@pytest.mark.server
def test_greedy_is_deterministic_and_parameters_reach_the_server(client, reference, histories):
    # num_draft_tokens=0 is plain decoding: nothing drafted, and (greedy) the same list.
    plain = client.recommend(histories[0], TOP_N, num_draft_tokens=0)
    assert plain.items == reference[0].items and plain.stats.drafted == 0
    eagle = client.recommend(histories[0], TOP_N, drafter="eagle")
    assert eagle.items == reference[0].items and eagle.stats.drafted > 0
    sampled = client.recommend(histories[0], TOP_N, temperature=1.0, top_p=0.9, seed=7)
    check_list(sampled, histories[0])


@pytest.mark.server
def test_long_history_is_truncated(client, beauty_histories):
    long_history = [item for history in beauty_histories[:10] for item in history]
    assert len(long_history) > 20  # SplitConfig.max_history
    rec = client.recommend(long_history, 2)
    assert rec.history_truncated is True and len(rec.items) == 2


@pytest.mark.server
def test_recommend_many_keeps_order(client, reference, histories):
    many = client.recommend_many(histories, TOP_N, concurrency=4)
    assert len(many) == len(reference)
    for got, want in zip(many, reference):
        assert_same_list(got, want)


@pytest.mark.server
def test_recommend_many_can_return_errors_in_place(client, reference, histories):
    results = client.recommend_many([histories[0], [UNKNOWN_ITEM]], TOP_N, return_exceptions=True)
    assert_same_list(results[0], reference[0])
    assert isinstance(results[1], InvalidArgument)
    with pytest.raises(InvalidArgument):
        client.recommend_many([histories[0], [UNKNOWN_ITEM]], TOP_N)


@pytest.mark.server
def test_stream_yields_the_same_list_item_by_item(client, reference, histories):
    streamed = list(client.stream(histories[0], TOP_N))
    assert [s.rank for s in streamed] == list(range(TOP_N))
    assert tuple(s.item for s in streamed) == reference[0].items
    assert [s.score for s in streamed] == pytest.approx(reference[0].scores, abs=1e-4)
    rounds = [s.stats.rounds for s in streamed]
    assert rounds == sorted(rounds)  # running totals


@pytest.mark.server
def test_leaving_a_stream_early_cancels_it(client, reference, histories):
    for item in client.stream(histories[1], 20):
        assert item.item == reference[1].items[0]
        break
    # The server is still fine, and so are its cache slots (the stream's and the batch decoder's).
    assert tuple(item.item for item in client.stream(histories[1], TOP_N)) == reference[1].items
    assert_same_list(client.recommend(histories[1], TOP_N), reference[1])


@pytest.mark.server
def test_ready_and_metadata(client):
    client.wait_until_ready(timeout=5)
    server = client.server_metadata()
    assert server.name == "triton" and server.version
    model = client.model_metadata()
    assert model.name == "recommend"
    assert [(t.name, t.datatype) for t in model.inputs] == [("HISTORY", "BYTES")]
    assert {"ITEM_IDS", "SCORES", "ROUNDS", "DRAFTED", "ACCEPTED", "TAU", "HISTORY_TRUNCATED"} <= {
        t.name for t in model.outputs}
    assert client.model_metadata("recommend_stream").name == "recommend_stream"


# ---- asyncio -------------------------------------------------------------------------------

@pytest.mark.server
def test_async_client(url, reference, histories):
    async def run():
        async with AsyncRecommendClient(url, timeout=120) as client:
            await client.wait_until_ready(timeout=10)
            one = await client.recommend(histories[0], TOP_N)
            many = await client.recommend_many(histories, TOP_N, concurrency=4)
            streamed = [item async for item in client.stream(histories[2], TOP_N)]
            server = await client.server_metadata()
            return one, many, streamed, server

    one, many, streamed, server = asyncio.run(run())
    assert_same_list(one, reference[0])
    for got, want in zip(many, reference, strict=True):
        assert_same_list(got, want)
    assert tuple(s.item for s in streamed) == reference[2].items
    assert server.name == "triton"


@pytest.mark.server
def test_async_errors(url, histories):
    async def run():
        async with AsyncRecommendClient(url, timeout=120) as client:
            with pytest.raises(InvalidArgument, match=UNKNOWN_ITEM):
                await client.recommend([UNKNOWN_ITEM], TOP_N)
            with pytest.raises(InvalidArgument):
                async for _ in client.stream(histories[0], 0):
                    pass
            with pytest.raises(DeadlineExceeded):
                await client.recommend(histories[0], timeout=TINY_DEADLINE_S, **SLOW)

    asyncio.run(run())


# ---- errors --------------------------------------------------------------------------------

@pytest.mark.server
def test_unknown_item_is_invalid_argument(client, histories):
    with pytest.raises(InvalidArgument, match=UNKNOWN_ITEM) as error:
        client.recommend(histories[0] + [UNKNOWN_ITEM], TOP_N)
    assert error.value.status == "INVALID_ARGUMENT" and error.value.attempts == 1
    with pytest.raises(InvalidArgument, match=UNKNOWN_ITEM):
        list(client.stream([UNKNOWN_ITEM], TOP_N))


@pytest.mark.server
def test_top_n_zero_is_invalid_argument(client, histories):
    with pytest.raises(InvalidArgument, match="top_n") as error:
        client.recommend(histories[0], 0)
    assert error.value.attempts == 1  # never retried


@pytest.mark.server
def test_tiny_deadline_is_deadline_exceeded(client, histories):
    started = time.monotonic()
    with pytest.raises(DeadlineExceeded) as error:
        client.recommend(histories[0], timeout=TINY_DEADLINE_S, **SLOW)
    assert time.monotonic() - started < 2
    assert error.value.attempts == 1
    with pytest.raises(DeadlineExceeded):
        list(client.stream(histories[0], timeout=TINY_DEADLINE_S, **SLOW))


def test_nothing_listening_is_unavailable_after_retries():
    policy = RetryPolicy(attempts=3, initial_backoff=0.1, multiplier=2, jitter=0)
    with RecommendClient(free_port_url(), retry=policy, timeout=10) as client:
        started = time.monotonic()
        with pytest.raises(Unavailable) as error:
            client.recommend(["1", "2"])
        assert error.value.attempts == 3
        assert time.monotonic() - started >= 0.1 + 0.2  # the two backoffs were waited
        with pytest.raises(Unavailable) as error:
            list(client.stream(["1", "2"]))
        assert error.value.attempts == 3
        with pytest.raises(Unavailable, match="not ready"):
            client.wait_until_ready(timeout=0.3)


def test_async_nothing_listening_is_unavailable_after_retries():
    async def run():
        async with AsyncRecommendClient(free_port_url(), retry=RetryPolicy(attempts=2, initial_backoff=0.01)) as client:
            with pytest.raises(Unavailable) as error:
                await client.recommend(["1"])
            return error.value.attempts

    assert asyncio.run(run()) == 2


def test_cli_unavailable_exits_1(capsys):
    status = cli_main(["recommend", "--url", free_port_url(), "--history", "1,2", "--retries", "2"])
    assert status == 1
    err = capsys.readouterr().err
    assert "unavailable" in err and "after 2 attempts" in err


# ---- command line --------------------------------------------------------------------------

@pytest.mark.server
def test_cli_recommend_json(url, reference, histories, capsys):
    status = cli_main(["recommend", "--url", url, "--history", ",".join(histories[0]), "--top-n", str(TOP_N),
                       "--json"])
    assert status == 0
    printed = json.loads(capsys.readouterr().out)
    assert set(printed) == {"items", "scores", "stats", "history_truncated", "replica"}
    assert printed["items"] == list(reference[0].items)
    assert printed["replica"] == url
    assert set(printed["stats"]) == {"rounds", "drafted", "accepted", "tau"}


@pytest.mark.server
def test_cli_invalid_argument_exits_2_with_the_servers_message(url, capsys):
    status = cli_main(["recommend", "--url", url, "--history", f"1,{UNKNOWN_ITEM}"])
    assert status == 2
    assert UNKNOWN_ITEM in capsys.readouterr().err
    assert cli_main(["stream", "--url", url, "--history", "1", "--top-n", "0"]) == 2
    assert "top_n" in capsys.readouterr().err


@pytest.mark.server
def test_installed_command_streams(url, reference, histories):
    # The console script itself, as installed into the environment by `pip install -e client/`.
    command = Path(sys.executable).with_name("padrec-client")
    done = subprocess.run([str(command), "stream", "--url", url, "--history", ",".join(histories[0]),
                           "--top-n", str(TOP_N), "--drafter", "eagle", "--num-draft-tokens", "3"],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert [line.split()[1] for line in lines[1:1 + TOP_N]] == list(reference[0].items)
    assert lines[-1].startswith("rounds ")


# ---- several replicas ----------------------------------------------------------------------

@pytest.mark.server
def test_a_dead_replica_is_skipped_and_each_answer_names_its_replica(url, reference, histories):
    dead = free_port_url()
    with RecommendClient([dead, url], timeout=120) as client:
        recs = [client.recommend(h, TOP_N) for h in histories]
        streamed = list(client.stream(histories[1], TOP_N))
        stats = {s.url: s for s in client.replica_stats()}
        health = client.check_health()
    for got, want in zip(recs, reference, strict=True):
        assert_same_list(got, want)
        assert got.replica == url
    assert tuple(s.item for s in streamed) == reference[1].items
    assert {s.replica for s in streamed} == {url}
    # The first call went to the dead one, failed over at once, and it stayed out of the rotation.
    assert (stats[dead].failed, stats[dead].ejections, stats[dead].healthy) == (1, 1, False)
    assert stats[url].answered == len(histories) + 1
    assert health == {dead: False, url: True}


@pytest.mark.server
def test_async_client_fails_over_too(url, reference, histories):
    dead = free_port_url()

    async def run():
        async with AsyncRecommendClient(f"{dead},{url}", timeout=120) as client:
            many = await client.recommend_many(histories, TOP_N, concurrency=2)
            streamed = [item async for item in client.stream(histories[2], TOP_N)]
            return many, streamed, {s.url: s for s in client.replica_stats()}

    many, streamed, stats = asyncio.run(run())
    for got, want in zip(many, reference, strict=True):
        assert_same_list(got, want)
        assert got.replica == url
    assert tuple(s.item for s in streamed) == reference[2].items
    assert stats[dead].failed >= 1 and not stats[dead].healthy


@pytest.mark.server
def test_cli_talks_to_every_replica(url, histories, capsys):
    dead = free_port_url()
    history = ",".join(histories[0])
    assert cli_main(["recommend", "--url", f"{dead},{url}", "--history", history, "--top-n", "3"]) == 0
    assert f"from {url}" in capsys.readouterr().out
    assert cli_main(["health", "--url", f"{url},{dead}"]) == 1
    out = capsys.readouterr().out
    assert f"{url}  ready" in out and f"{dead}  NOT READY" in out
    assert cli_main(["health", "--url", "nohost"]) == 2
