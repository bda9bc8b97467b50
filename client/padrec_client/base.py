"""What the sync and the asyncio client share: settings, requests, and readiness polling."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from enum import Enum
from typing import Any

from tritonclient.grpc import KeepAliveOptions

from .errors import RecommendError, Unavailable
from .params import History
from .protocol import Request, build_request
from .replicas import HealthPolicy, Replica, ReplicaSet, ReplicaStats, parse_endpoints
from .result import Recommendation
from .retry import CallBudget, RetryPolicy

__all__ = ["DEFAULT", "Default", "ClientBase", "ReadinessWait", "collect_results"]

DEFAULT_TIMEOUT_S = 30.0
DEFAULT_CONCURRENCY = 8
READY_POLL_INTERVAL_S = 0.25
# gRPC's largest message, as tritonclient's own channels allow.
MAX_GRPC_MESSAGE_SIZE = 2**31 - 1


class Default(Enum):
    """Marks a per-call argument the caller left out (None already means "no deadline")."""

    TOKEN = "default"


DEFAULT = Default.TOKEN


def channel_args(health: HealthPolicy) -> list[tuple[str, int]]:
    """gRPC options of a replica's channel: tritonclient's own defaults, plus two that make a
    readiness probe mean what it says. Each channel gets its own subchannel (gRPC otherwise shares
    one per address across channels, so a probe's "fresh" channel would inherit the old one's
    reconnect backoff, which grows towards two minutes while a replica is down), and reconnect
    backoff stays within the probe interval's ceiling, so a restarted replica is reached within one
    interval of being ready."""
    keepalive = KeepAliveOptions()
    return [
        ("grpc.max_send_message_length", MAX_GRPC_MESSAGE_SIZE),
        ("grpc.max_receive_message_length", MAX_GRPC_MESSAGE_SIZE),
        ("grpc.keepalive_time_ms", keepalive.keepalive_time_ms),
        ("grpc.keepalive_timeout_ms", keepalive.keepalive_timeout_ms),
        ("grpc.keepalive_permit_without_calls", int(keepalive.keepalive_permit_without_calls)),
        ("grpc.http2.max_pings_without_data", keepalive.http2_max_pings_without_data),
        ("grpc.use_local_subchannel_pool", 1),
        ("grpc.initial_reconnect_backoff_ms", int(health.probe_interval * 1000)),
        ("grpc.min_reconnect_backoff_ms", int(health.probe_interval * 1000)),
        ("grpc.max_reconnect_backoff_ms", int(health.max_probe_interval * 1000)),
    ]


class ClientBase:
    """Connection settings, replicas and per-call defaults, common to both clients.

    Args:
        url: the server's gRPC endpoint, "host:port" (e.g. "localhost:8001"); or several replicas'
            endpoints, comma-separated or as a list; an entry "dns:///host:port" stands for every
            address the name resolves to (`padrec_client.replicas.parse_endpoints`). Calls are
            spread over the replicas in turn and fail over to another one when a replica is
            unavailable.
        ssl: use a TLS channel; the three files below are PEM files, all optional.
        root_certificates: CA certificates to verify the server with (default: gRPC's own set).
        private_key: the client's key, for mutual TLS.
        certificate_chain: the client's certificate chain, for mutual TLS.
        timeout: default deadline of a call in seconds, retries and their waits included;
            None waits forever. Each call can pass its own `timeout=`.
        retry: how UNAVAILABLE calls are retried: a RetryPolicy, or just the number of attempts.
        model: the served non-streaming model's name.
        stream_model: the served streaming (decoupled) model's name.
        health: when a replica taken out of the rotation is probed again.
    """

    def __init__(
        self,
        url: str | Sequence[str],
        *,
        ssl: bool = False,
        root_certificates: str | None = None,
        private_key: str | None = None,
        certificate_chain: str | None = None,
        timeout: float | None = DEFAULT_TIMEOUT_S,
        retry: RetryPolicy | int = RetryPolicy(),
        model: str = "recommend",
        stream_model: str = "recommend_stream",
        health: HealthPolicy = HealthPolicy(),
    ) -> None:
        self.urls = parse_endpoints(url)
        self.url = ",".join(self.urls)
        self.timeout = timeout
        self.retry = retry if isinstance(retry, RetryPolicy) else RetryPolicy(attempts=retry)
        self.model = model
        self.stream_model = stream_model
        self._tls: dict[str, Any] = {
            "ssl": ssl,
            "root_certificates": root_certificates,
            "private_key": private_key,
            "certificate_chain": certificate_chain,
        }
        self._channel_args = channel_args(health)
        self._replicas = ReplicaSet(self.urls, self._connect, health)

    def _connection(self, url: str) -> dict[str, Any]:
        """tritonclient's constructor arguments for one replica."""
        return {"url": url, "channel_args": self._channel_args, **self._tls}

    def _connect(self, url: str) -> Any:
        """A tritonclient client (sync or asyncio) of one replica."""
        raise NotImplementedError

    def _failed_attempt(self, budget: CallBudget, replica: Replica, error: RecommendError,
                        tried: set[str]) -> float | None:
        """Books a failed attempt on `replica`: ejects it if it was unavailable. Returns the wait
        before the next attempt, or None when `error` is to be raised."""
        error.replica = replica.url
        if isinstance(error, Unavailable):
            self._replicas.failed(replica)
        else:
            self._replicas.answered(replica)
        return budget.retry_delay(error, failover=self._replicas.has_untried(tried))

    @staticmethod
    def _stream_broken(error: RecommendError, replica: Replica, delivered: int) -> RecommendError:
        """The error a stream ends with: `error` itself, unless items were yielded before the
        connection broke and no replica could resume it, which gets a message saying so."""
        if delivered == 0 or not isinstance(error, Unavailable):
            return error
        return Unavailable(f"the stream broke after {delivered} items on {replica.url} and no replica could "
                           f"resume it: {error.message}", status=error.status, attempts=error.attempts)

    def replica_stats(self) -> list[ReplicaStats]:
        """Each replica's counters (calls answered, failed, ejections) and whether it is in the
        rotation now, in the order of `urls`."""
        return self._replicas.stats()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r}, model={self.model!r})"

    def _call_timeout(self, timeout: float | None | Default) -> float | None:
        return self.timeout if timeout is DEFAULT else timeout

    def _request(self, history: History, top_n: int, params: Mapping[str, object],
                 *, stream: bool = False) -> Request:
        return build_request(self.stream_model if stream else self.model, history, top_n, params)

    def _ready_models(self, models: Sequence[str] | None) -> tuple[str, ...]:
        return tuple(models) if models is not None else (self.model, self.stream_model)


class ReadinessWait:
    """The bookkeeping of `wait_until_ready`: when to poll, for how long, and what to report."""

    def __init__(self, url: str, timeout: float, interval: float = READY_POLL_INTERVAL_S) -> None:
        self.url = url
        self.timeout = timeout
        self.interval = interval
        self.reason = "no answer yet"
        self._deadline = time.monotonic() + timeout

    def poll_timeout(self) -> float:
        """Deadline of one readiness RPC: short, so a hung connection cannot eat the whole wait."""
        return max(0.05, min(self.interval * 4, self._deadline - time.monotonic()))

    def not_ready(self, reason: str) -> float:
        """Records why the server is not ready; returns the wait before the next poll, or raises
        Unavailable once the time is up."""
        self.reason = reason
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise Unavailable(f"{self.url} not ready after {self.timeout:g} s: {reason}", status="UNAVAILABLE")
        return min(self.interval, remaining)


def collect_results(outcomes: Sequence[Recommendation | BaseException],
                    return_exceptions: bool) -> list[Recommendation | RecommendError]:
    """`recommend_many`'s answer from each request's outcome, in the order of the histories.

    Raises the first failure in that order unless `return_exceptions`; errors other than the
    client's own are bugs and are raised either way.
    """
    for outcome in outcomes:
        if isinstance(outcome, BaseException) and (not return_exceptions or not isinstance(outcome, RecommendError)):
            raise outcome
    return list(outcomes)  # type: ignore[arg-type]
