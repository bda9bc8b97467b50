"""Several replicas behind one client: which one takes the next call, which are out, and when one
comes back.

Every replica is a Triton server serving the same model repository, so any of them can answer any
request with the same list. A call goes to the next healthy replica in turn (round robin). A
replica that answers UNAVAILABLE, or whose connection breaks, is taken out of the rotation and the
call moves on to another replica at once, within the call's deadline. An ejected replica is
readmitted only after a readiness probe on a fresh channel succeeds; probes are spaced by a backoff
that grows while it stays down, so a dead replica costs one failed probe per interval, never a
failed request. The sync and asyncio clients share this bookkeeping; they differ only in how they
wait for a probe.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["DNS_SCHEME", "HealthPolicy", "Replica", "ReplicaSet", "ReplicaStats", "parse_endpoints"]

# gRPC's own naming: "dns:///padrec.prod.svc:8001" is a name to resolve to every address it has.
DNS_SCHEME = "dns:///"


def _split_host_port(endpoint: str) -> tuple[str, int]:
    host, sep, port = endpoint.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"an endpoint is HOST:PORT, got {endpoint!r}")
    return host.strip("[]"), int(port)


def _format_endpoint(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def resolve_dns(endpoint: str) -> list[str]:
    """Every address a `HOST:PORT` name resolves to, as `ADDRESS:PORT`, in the resolver's order."""
    host, port = _split_host_port(endpoint)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise ValueError(f"cannot resolve {host!r}: {error.strerror}") from None
    addresses = dict.fromkeys(_format_endpoint(info[4][0], port) for info in infos)
    return list(addresses)


def parse_endpoints(url: str | Sequence[str]) -> list[str]:
    """The replicas' `HOST:PORT` endpoints from what a caller passes as `url`.

    `url` is one endpoint, several separated by commas, or a sequence of them; an entry written
    `dns:///HOST:PORT` stands for every address HOST resolves to (a Kubernetes headless Service).
    Duplicates are dropped; order is kept.
    """
    entries = [part.strip() for part in url.split(",")] if isinstance(url, str) else [str(u).strip() for u in url]
    if not entries or any(not entry for entry in entries):
        raise ValueError(f"expected HOST:PORT endpoints separated by commas, got {url!r}")
    endpoints: list[str] = []
    for entry in entries:
        if entry.startswith(DNS_SCHEME):
            endpoints += resolve_dns(entry[len(DNS_SCHEME):])
        else:
            _split_host_port(entry)
            endpoints.append(entry)
    return list(dict.fromkeys(endpoints))


@dataclass(frozen=True)
class HealthPolicy:
    """When an ejected replica is probed again.

    Attributes:
        probe_interval: seconds between an ejection and the first readiness probe...
        max_probe_interval: ...doubling after each failed probe, up to this.
        probe_timeout: deadline of one readiness probe.
    """

    probe_interval: float = 0.5
    max_probe_interval: float = 5.0
    probe_timeout: float = 1.0

    def __post_init__(self) -> None:
        if not 0 < self.probe_interval <= self.max_probe_interval:
            raise ValueError("probe intervals must satisfy 0 < probe_interval <= max_probe_interval")
        if self.probe_timeout <= 0:
            raise ValueError(f"probe_timeout must be positive, not {self.probe_timeout}")


@dataclass(frozen=True)
class ReplicaStats:
    """One replica's counters since the client was made.

    Attributes:
        url: the replica's endpoint.
        healthy: in the rotation now.
        answered: calls it answered (errors the server meant, like INVALID_ARG, included).
        failed: calls that failed on it as unavailable and moved to another replica (or gave up).
        ejections: times it was taken out of the rotation.
    """

    url: str
    healthy: bool
    answered: int
    failed: int
    ejections: int


class Replica:
    """One endpoint, its tritonclient client, and its health."""

    def __init__(self, url: str, triton: Any) -> None:
        self.url = url
        self.triton = triton
        self.healthy = True
        self.answered = 0
        self.failed = 0
        self.ejections = 0
        self.next_probe = 0.0
        self.probe_interval = 0.0
        self.probing = False

    def stats(self) -> ReplicaStats:
        return ReplicaStats(self.url, self.healthy, self.answered, self.failed, self.ejections)


class ReplicaSet:
    """The replicas of one client and the decisions about them; safe to share between threads.

    Args:
        urls: the endpoints, as `parse_endpoints` gives them.
        connect: makes a tritonclient client for an endpoint.
        health: when ejected replicas are probed.
    """

    def __init__(self, urls: Sequence[str], connect: Callable[[str], Any], health: HealthPolicy = HealthPolicy()) -> None:
        if not urls:
            raise ValueError("a client needs at least one endpoint")
        self.connect = connect
        self.health = health
        self.replicas = [Replica(url, connect(url)) for url in urls]
        self._next = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.replicas)

    def choose(self, tried: set[str]) -> Replica:
        """The replica for the next attempt of a call that already tried `tried`.

        The next healthy replica in turn that this call has not tried; else the healthy one next
        in turn (a retry after backoff); else, with every replica out, the one whose probe is due
        soonest, so that a call still has somewhere to go while the whole set restarts.
        """
        with self._lock:
            count = len(self.replicas)
            order = [self.replicas[(self._next + i) % count] for i in range(count)]
            healthy = [r for r in order if r.healthy]
            fresh = [r for r in healthy if r.url not in tried]
            chosen = (fresh or healthy or [min(order, key=lambda r: r.next_probe)])[0]
            self._next = (self.replicas.index(chosen) + 1) % count
            return chosen

    def has_untried(self, tried: set[str]) -> bool:
        """Whether a healthy replica remains that this call has not tried: failing over to it
        needs no backoff."""
        with self._lock:
            return any(r.healthy and r.url not in tried for r in self.replicas)

    def answered(self, replica: Replica) -> None:
        with self._lock:
            replica.answered += 1

    def failed(self, replica: Replica) -> None:
        """Takes `replica` out of the rotation after an UNAVAILABLE answer or a broken connection."""
        with self._lock:
            replica.failed += 1
            self._eject(replica)

    def _eject(self, replica: Replica) -> None:
        # Called with the lock held.
        if replica.healthy:
            replica.healthy = False
            replica.ejections += 1
            replica.probe_interval = self.health.probe_interval
            replica.next_probe = time.monotonic() + replica.probe_interval

    def claim_probes(self) -> list[Replica]:
        """The ejected replicas whose probe is due, each claimed by this caller alone."""
        now = time.monotonic()
        with self._lock:
            due = [r for r in self.replicas if not r.healthy and not r.probing and r.next_probe <= now]
            for replica in due:
                replica.probing = True
            return due

    def probe_done(self, replica: Replica, fresh: Any | None) -> None:
        """Records a probe's outcome: `fresh`, the probe's new client, when the replica was ready
        (it then rejoins the rotation on that channel), None when it was not."""
        with self._lock:
            replica.probing = False
            if fresh is not None:
                # A fresh channel: the old one may sit in gRPC's reconnect backoff for many seconds.
                replica.triton = fresh
                replica.healthy = True
                return
            replica.probe_interval = min(self.health.max_probe_interval, 2 * replica.probe_interval)
            replica.next_probe = time.monotonic() + replica.probe_interval

    def set_health(self, replica: Replica, ready: bool) -> None:
        """Puts `replica` in the rotation or takes it out after an explicit health check."""
        with self._lock:
            if ready:
                replica.healthy = True
            else:
                self._eject(replica)

    def stats(self) -> list[ReplicaStats]:
        with self._lock:
            return [r.stats() for r in self.replicas]

