"""Two real replicas under load from 8 clients; one SIGKILLed mid-run, then restarted.

The scenario is `perf.failover`'s (the same code writes perf/FAILOVER.md): nothing may fail, every
list must equal the offline engine's, the killed replica's share must move to the survivor, and the
restarted replica must take traffic again.
"""

from __future__ import annotations

import json

import pytest

from padrec.cluster import LocalCluster
from padrec.server import ServerConfig
from perf.failover import FailoverPlan, run_failover, user_cases

pytestmark = [pytest.mark.server, pytest.mark.slow]

DATASET = "beauty"
USERS = 64


def test_killing_a_replica_under_load_loses_nothing(served_repository, tmp_path):
    plan = FailoverPlan()
    cases = user_cases(served_repository, DATASET, USERS, plan)
    config = ServerConfig(model_repository=served_repository, http_port=0, grpc_port=0, metrics_port=0)
    with LocalCluster(config, replicas=2, log_dir=tmp_path) as cluster:
        report = run_failover(cluster, cases, plan)
    summary = report.summary()
    print(json.dumps(summary, indent=1))
    killed, survivor = report.replicas
    phases = summary["phases"]

    assert summary["failed"] == 0, summary["errors"]
    assert summary["differing"] == 0
    assert summary["requests"] >= 100, "too little load to say anything"
    assert phases["before_kill"]["by_replica"].get(killed, 0) > 0
    assert phases["before_kill"]["by_replica"].get(survivor, 0) > 0
    # While it is dead (and before its restart is even launched) only the survivor can answer.
    down = report.window(report.killed_at, report.restart_began_at)
    assert down, "no request was sent while the replica was down"
    assert {o.replica for o in down} == {survivor}
    # Requests in flight on the killed replica failed over: attempts failed there and were retried.
    assert summary["failed_over_attempts"] > 0
    assert phases["after_restart"]["by_replica"].get(killed, 0) > 0, "the restarted replica took no traffic"


def test_a_stream_resumes_on_another_replica_when_its_replica_dies(served_repository, recommend_server,
                                                                   start_triton, beauty_histories):
    from padrec_client import RecommendClient

    history = beauty_histories[5]
    live = recommend_server.grpc_url
    with RecommendClient(live, timeout=120) as client:
        want = client.recommend(history, 50, num_draft_tokens=0)
    doomed = start_triton(served_repository)
    # A long plain list: the stream is still going when its replica dies after the first item.
    with RecommendClient([doomed.grpc_url, live], timeout=120) as client:
        stream = client.stream(history, 50, num_draft_tokens=0)
        first = next(stream)
        doomed.kill()
        items = [first, *stream]
        stats = {s.url: s for s in client.replica_stats()}
    assert first.replica == doomed.grpc_url
    assert tuple(item.item for item in items) == want.items  # nothing twice, nothing missing
    assert [item.rank for item in items] == list(range(50))
    assert items[-1].replica == live
    assert stats[doomed.grpc_url].failed == 1 and stats[live].answered == 1
