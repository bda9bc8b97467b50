"""The replica bookkeeping without a server: endpoints, rotation, ejection, probes, failover
delays and stream resumption."""

from __future__ import annotations

import time

import pytest

from padrec_client import DecodeStats, InvalidArgument, RecommendError, RetryPolicy, StreamedItem, Unavailable
from padrec_client.protocol import StreamReplay
from padrec_client.replicas import HealthPolicy, ReplicaSet, parse_endpoints
from padrec_client.retry import CallBudget

URLS = ["a:1", "b:2", "c:3"]


def replica_set(urls=URLS, **health) -> ReplicaSet:
    # The "client" of each replica is just its URL: the set never calls it.
    return ReplicaSet(urls, connect=lambda url: url, health=HealthPolicy(**health))


def test_endpoints_from_commas_lists_and_dns():
    assert parse_endpoints("a:1") == ["a:1"]
    assert parse_endpoints(" a:1, b:2 ,a:1") == ["a:1", "b:2"]
    assert parse_endpoints(["[::1]:8001", "b:2"]) == ["[::1]:8001", "b:2"]
    resolved = parse_endpoints("dns:///localhost:8001")
    assert resolved and "127.0.0.1:8001" in resolved
    assert all(url.endswith(":8001") for url in resolved)


@pytest.mark.parametrize("bad", ["", "a:1,", "nohost", "a:port", ":80", []])
def test_bad_endpoints_are_refused(bad):
    with pytest.raises(ValueError):
        parse_endpoints(bad)


def test_unresolvable_name_says_so():
    with pytest.raises(ValueError, match="cannot resolve"):
        parse_endpoints("dns:///no-such-host.invalid:8001")


def test_calls_go_round_robin():
    replicas = replica_set()
    assert [replicas.choose(set()).url for _ in range(6)] == URLS + URLS


def test_a_call_fails_over_to_replicas_it_has_not_tried():
    replicas = replica_set()
    first = replicas.choose(set())
    replicas.failed(first)
    tried = {first.url}
    second = replicas.choose(tried)
    assert second.url != first.url and second.healthy
    assert replicas.has_untried(tried | {second.url})
    assert not replicas.has_untried(set(URLS))


def test_an_ejected_replica_leaves_the_rotation_until_a_probe_readmits_it():
    replicas = replica_set(probe_interval=0.05, max_probe_interval=0.2)
    dead = replicas.replicas[0]
    replicas.failed(dead)
    assert not dead.healthy and dead.ejections == 1 and dead.failed == 1
    assert all(replicas.choose(set()).url != dead.url for _ in range(10))
    assert replicas.claim_probes() == []  # not due yet
    time.sleep(0.06)
    assert replicas.claim_probes() == [dead]
    assert replicas.claim_probes() == []  # claimed: no second prober
    replicas.probe_done(dead, None)  # still down: the next probe waits twice as long
    assert dead.probe_interval == pytest.approx(0.1)
    time.sleep(0.11)
    assert replicas.claim_probes() == [dead]
    replicas.probe_done(dead, "fresh-channel")
    assert dead.healthy and dead.triton == "fresh-channel"
    assert dead.url in {replicas.choose(set()).url for _ in range(3)}


def test_with_every_replica_out_a_call_still_goes_to_the_one_probed_soonest():
    replicas = replica_set(urls=["a:1", "b:2"])
    a, b = replicas.replicas
    replicas.failed(b)
    time.sleep(0.01)
    replicas.failed(a)
    assert replicas.choose(set()) is b


def test_stats_count_answers_failures_and_health():
    replicas = replica_set(urls=["a:1", "b:2"])
    a, b = replicas.replicas
    replicas.answered(a)
    replicas.answered(a)
    replicas.failed(b)
    replicas.set_health(b, True)
    stats = {s.url: s for s in replicas.stats()}
    assert (stats["a:1"].answered, stats["a:1"].failed, stats["a:1"].healthy) == (2, 0, True)
    assert (stats["b:2"].answered, stats["b:2"].failed, stats["b:2"].ejections, stats["b:2"].healthy) == (0, 1, 1, True)


def test_failover_is_immediate_but_counts_as_an_attempt():
    budget = CallBudget(RetryPolicy(attempts=3, initial_backoff=0.5, jitter=0), timeout=10)
    budget.attempt_timeout()
    assert budget.retry_delay(Unavailable("down"), failover=True) == 0.0
    budget.attempt_timeout()
    assert budget.retry_delay(Unavailable("down"), failover=False) == pytest.approx(1.0)
    budget.attempt_timeout()
    assert budget.retry_delay(Unavailable("down"), failover=True) is None  # attempts used up
    assert CallBudget(RetryPolicy(), 10).retry_delay(InvalidArgument("bad"), failover=True) is None


def test_bad_health_policies_are_refused():
    with pytest.raises(ValueError):
        HealthPolicy(probe_interval=2, max_probe_interval=1)
    with pytest.raises(ValueError):
        HealthPolicy(probe_timeout=0)


def item(rank: int, name: str) -> StreamedItem:
    return StreamedItem(rank, name, -1.0, DecodeStats(1, 0, 0, 1.0), False)


def test_a_resumed_stream_skips_what_was_yielded_and_checks_it():
    replay = StreamReplay()
    assert [replay.is_new(item(r, n), "a:1") for r, n in enumerate("xy")] == [True, True]
    # the stream broke; the next replica decodes the same list from the start
    assert [replay.is_new(item(r, n), "b:2") for r, n in enumerate("xyz")] == [False, False, True]
    assert replay.delivered == ["x", "y", "z"]


def test_a_resumed_stream_that_decides_otherwise_is_an_error():
    replay = StreamReplay()
    replay.is_new(item(0, "x"), "a:1")
    with pytest.raises(RecommendError, match="another item at rank 0"):
        replay.is_new(item(0, "q"), "b:2")
