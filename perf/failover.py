"""Failover under load: real replicas, concurrent clients, one replica SIGKILLed and restarted.

Two (or more) `tritonserver` replicas serve one model repository. `clients` threads, each with its
own `RecommendClient` over every replica, send real test users' histories back to back for
`duration_s`. At `kill_at_s` replica 0 is killed with SIGKILL (server and stubs: a crashed pod);
at `restart_at_s` it is started again on its ports. The load goes on for at least `settle_s` after
the restarted replica is ready (past `duration_s` if the restart was slow), so that the clients'
readiness probes can bring it back and the report can show it serving again. Every answer is compared with the offline
engine's list for that user. The report says how many requests were served and by whom, how many
failed or differed (the goal is none), how many attempts failed over, and the latency of the
requests sent while the replica was down.

`python -m perf failover` runs it and writes `perf/FAILOVER.md` and `perf/failover.json`; the test
`tests/server/test_failover.py` runs the same scenario and asserts on the report.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from padrec.cluster import LocalCluster
from padrec.serving.offline import offline_lists
from padrec_client import RecommendClient, RecommendError, RetryPolicy


@dataclass(frozen=True)
class FailoverPlan:
    """What the scenario does, and when (seconds from the start of the load)."""

    duration_s: float = 60.0
    clients: int = 8
    # A restart under this load takes about 20 s on two cores: it is ready well before the end.
    kill_at_s: float = 12.0
    restart_at_s: float = 20.0
    top_n: int = 10
    num_draft_tokens: int = 4
    drafter: str = "padrec"
    # Per request: enough for a failover and a backoff, far below a request's own deadline.
    attempts: int = 5
    timeout_s: float = 60.0
    # Longer than the clients' largest probe interval (5 s): every client re-probes it in time.
    settle_s: float = 10.0

    def __post_init__(self) -> None:
        if not 0 < self.kill_at_s < self.restart_at_s < self.duration_s:
            raise ValueError("the plan needs 0 < kill_at_s < restart_at_s < duration_s")


@dataclass(frozen=True)
class UserCase:
    """One test user: what a client sends and the list the offline engine decodes for it."""

    history: tuple[str, ...]
    expected: tuple[str, ...]


class _StopTime:
    """When the clients stop sending (monotonic seconds): not before the restarted replica is
    ready, so it stays unset (infinite) until the controller knows when that was."""

    def __init__(self) -> None:
        self.at = float("inf")

    def set(self, at: float) -> None:
        self.at = at  # one float store: safe to read from the client threads


@dataclass
class Outcome:
    """One request as a client saw it (times in seconds from the start of the load)."""

    sent_at: float
    latency_s: float
    replica: str | None
    matched: bool
    error: str | None = None


@dataclass
class FailoverReport:
    """What happened; `summary()` is the part worth reading."""

    plan: FailoverPlan
    replicas: list[str]
    killed: str
    killed_at: float
    restart_began_at: float
    restarted_ready_at: float
    load_ended_at: float
    outcomes: list[Outcome] = field(default_factory=list)
    failed_attempts: int = 0

    def window(self, begin: float, end: float) -> list[Outcome]:
        """The requests sent within [begin, end)."""
        return [o for o in self.outcomes if begin <= o.sent_at < end]

    def summary(self) -> dict:
        """Counts, per-replica shares before, during and after the outage, and latencies."""
        phases = {
            "before_kill": (0.0, self.killed_at),
            "replica_down": (self.killed_at, self.restarted_ready_at),
            "after_restart": (self.restarted_ready_at, float("inf")),
        }
        by_phase = {}
        for name, (begin, end) in phases.items():
            outcomes = self.window(begin, end)
            latencies = [o.latency_s * 1000 for o in outcomes if o.error is None]
            by_phase[name] = {
                "requests": len(outcomes),
                "by_replica": dict(Counter(o.replica for o in outcomes if o.error is None)),
                "p50_ms": _percentile(latencies, 50),
                "p99_ms": _percentile(latencies, 99),
            }
        return {
            "requests": len(self.outcomes),
            "failed": sum(o.error is not None for o in self.outcomes),
            "differing": sum(o.error is None and not o.matched for o in self.outcomes),
            "failed_over_attempts": self.failed_attempts,
            "errors": sorted({o.error for o in self.outcomes if o.error is not None})[:5],
            "killed": self.killed,
            "killed_at_s": round(self.killed_at, 2),
            "restart_began_at_s": round(self.restart_began_at, 2),
            "restarted_ready_at_s": round(self.restarted_ready_at, 2),
            "load_ended_at_s": round(self.load_ended_at, 2),
            "phases": by_phase,
        }

    def to_dict(self) -> dict:
        return {"plan": asdict(self.plan), "replicas": self.replicas, "summary": self.summary()}


def user_cases(repository: Path, dataset: str, users: int, plan: FailoverPlan) -> list[UserCase]:
    """The first `users` test users of `dataset`, each with the list the offline engine decodes
    for it on `repository`'s graphs with the plan's drafter and draft tokens."""
    from padrec.artifacts import load_prepared

    split = load_prepared(dataset).split
    examples = split.test[:users]
    lists = offline_lists(repository, [e.history for e in examples], plan.drafter, plan.num_draft_tokens, plan.top_n)
    ids = split.item_ids
    return [UserCase(tuple(ids[i] for i in example.history), tuple(ids[i] for i in items))
            for example, items in zip(examples, lists)]


def _percentile(values: Sequence[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 1) if values else None


def _client_loop(index: int, urls: list[str], cases: Sequence[UserCase], plan: FailoverPlan, start: float,
                 stop: _StopTime, outcomes: list[Outcome], failed_attempts: list[int]) -> None:
    """One client: requests back to back until the stop time, user after user."""
    retry = RetryPolicy(attempts=plan.attempts)
    with RecommendClient(urls, timeout=plan.timeout_s, retry=retry) as client:
        sent = 0
        while (now := time.monotonic()) < stop.at:
            case = cases[(index + sent * plan.clients) % len(cases)]
            sent += 1
            try:
                rec = client.recommend(list(case.history), plan.top_n, num_draft_tokens=plan.num_draft_tokens,
                                       drafter=plan.drafter)
                outcome = Outcome(now - start, time.monotonic() - now, rec.replica, rec.items == case.expected)
            except RecommendError as error:
                outcome = Outcome(now - start, time.monotonic() - now, error.replica, False,
                                  f"{type(error).__name__}: {error.message}")
            outcomes.append(outcome)  # list.append is atomic under the GIL
        failed_attempts.append(sum(stats.failed for stats in client.replica_stats()))


def run_failover(cluster: LocalCluster, cases: Sequence[UserCase], plan: FailoverPlan = FailoverPlan()) -> FailoverReport:
    """Runs the scenario on a started cluster; replica 0 is the one killed and restarted.

    Call it from the thread that started the cluster: the restarted replica is launched here and,
    like every `TritonServer`, lives only as long as its launching thread.
    """
    if len(cluster.servers) < 2:
        raise ValueError("failover needs at least two replicas")
    if not cases:
        raise ValueError("failover needs at least one user")
    urls = cluster.grpc_urls
    outcomes: list[Outcome] = []
    failed_attempts: list[int] = []
    start = time.monotonic()
    stop = _StopTime()
    threads = [threading.Thread(target=_client_loop, args=(i, urls, cases, plan, start, stop, outcomes, failed_attempts),
                                name=f"failover-client-{i}", daemon=True) for i in range(plan.clients)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(max(0.0, start + plan.kill_at_s - time.monotonic()))
        cluster.servers[0].kill()
        killed_at = time.monotonic() - start
        time.sleep(max(0.0, start + plan.restart_at_s - time.monotonic()))
        restart_began_at = time.monotonic() - start
        cluster.restart(0)
        restarted_ready_at = time.monotonic() - start
    except BaseException:
        stop.set(time.monotonic())  # a failed kill or restart stops the clients now
        raise
    stop.set(start + max(plan.duration_s, restarted_ready_at + plan.settle_s))
    for thread in threads:
        thread.join(max(0.0, stop.at - time.monotonic()) + plan.timeout_s)
    if any(thread.is_alive() for thread in threads):
        raise RuntimeError("a failover client did not finish within its deadline")
    return FailoverReport(plan, urls, urls[0], killed_at, restart_began_at, restarted_ready_at, stop.at - start,
                          sorted(outcomes, key=lambda o: o.sent_at), sum(failed_attempts))


FAILOVER_JSON = "failover.json"
FAILOVER_REPORT = "FAILOVER.md"
FAILOVER_PLOT = "plots/failover.png"
PLOT_BIN_S = 2.0


def write_report(report: FailoverReport, out: Path, command: str, machine: dict) -> list[Path]:
    """`out/failover.json` (plan, summary, per-request outcomes), `out/FAILOVER.md` and its plot."""
    from perf.report import table

    out.mkdir(parents=True, exist_ok=True)
    data = {"command": command, "machine": machine, **report.to_dict(),
            "outcomes": [asdict(o) for o in report.outcomes]}
    json_path = out / FAILOVER_JSON
    json_path.write_text(json.dumps(data, indent=1) + "\n")
    plot_path = out / FAILOVER_PLOT
    _plot(report, plot_path)
    summary = report.summary()
    plan = report.plan
    rows = [[name, phase["requests"], ", ".join(f"{url}: {n}" for url, n in sorted(phase["by_replica"].items())),
             phase["p50_ms"], phase["p99_ms"]] for name, phase in summary["phases"].items()]
    text = "\n".join([
        "# Failover under load",
        "",
        f"Made by `{command}` on {machine['cpu']} ({machine['cores']} cores); commit {machine['git']['commit'][:12]}.",
        f"{len(report.replicas)} replicas of one model repository, {plan.clients} clients sending real Beauty test "
        f"users back to back for {summary['load_ended_at_s']:g} s ({plan.drafter}, k={plan.num_draft_tokens}, top {plan.top_n}; "
        f"{plan.duration_s:g} s planned, kept going at least {plan.settle_s:g} s past the restart). "
        f"Replica `{summary['killed']}` was SIGKILLed at {summary['killed_at_s']} s, restarted at "
        f"{summary['restart_began_at_s']} s, ready again at {summary['restarted_ready_at_s']} s.",
        "",
        f"- requests: **{summary['requests']}**, failed: **{summary['failed']}**, lists differing from the offline "
        f"engine's: **{summary['differing']}**",
        f"- attempts that failed on a replica and were retried on another: {summary['failed_over_attempts']}",
        "",
        table(["phase", "requests sent", "answered by", "p50 ms", "p99 ms"], rows),
        "",
        f"![requests per {PLOT_BIN_S:g} s by replica]({FAILOVER_PLOT})",
        "",
    ])
    md_path = out / FAILOVER_REPORT
    md_path.write_text(text)
    return [json_path, md_path, plot_path]


def _plot(report: FailoverReport, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    bins = np.arange(0.0, report.load_ended_at + PLOT_BIN_S, PLOT_BIN_S)
    fig, (counts, latency) = plt.subplots(2, 1, figsize=(8, 5.5), sharex=True)
    for url in report.replicas:
        sent = [o.sent_at for o in report.outcomes if o.replica == url and o.error is None]
        counts.hist(sent, bins=bins, histtype="step", linewidth=1.6, label=url)
    answered = [o for o in report.outcomes if o.error is None]
    latency.scatter([o.sent_at for o in answered], [o.latency_s * 1000 for o in answered], s=4, alpha=0.5)
    for axis in (counts, latency):
        axis.axvline(report.killed_at, color="red", linestyle="--", label="SIGKILL")
        axis.axvline(report.restarted_ready_at, color="green", linestyle="--", label="restarted, ready")
    counts.set_ylabel(f"answers per {PLOT_BIN_S:g} s")
    counts.legend(fontsize=8)
    latency.set_ylabel("latency (ms)")
    latency.set_yscale("log")
    latency.set_xlabel("time the request was sent (s)")
    fig.suptitle("Replica 0 killed under load: its share moves to the survivor, then back")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
