"""The blocking client, over tritonclient.grpc."""

from __future__ import annotations

import dataclasses
import queue
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import tritonclient.grpc as grpcclient
from tritonclient.grpc import InferResult
from tritonclient.utils import InferenceServerException

from .base import DEFAULT, DEFAULT_CONCURRENCY, ClientBase, Default, ReadinessWait, collect_results
from .errors import DeadlineExceeded, RecommendError, from_triton, translated
from .metadata import ModelMetadata, ServerMetadata, parse_model_metadata, parse_server_metadata
from .params import History
from .protocol import STREAM_GRACE_S, STREAM_HEADERS, Request, StreamReader, StreamReplay, parse_recommendation
from .replicas import Replica
from .result import Recommendation, StreamedItem
from .retry import CallBudget

__all__ = ["RecommendClient"]

T = TypeVar("T")


class RecommendClient(ClientBase):
    """Blocking client of the served recommender, on one server or several replicas. Thread-safe,
    except that each `stream()` iterator belongs to the thread consuming it.

    >>> with RecommendClient("localhost:8001") as client:
    ...     client.wait_until_ready(timeout=60)
    ...     rec = client.recommend(["12", "55", "9"], top_n=5)
    ...     print(rec.items, rec.stats.tau)

    >>> with RecommendClient("10.0.0.5:8001,10.0.0.6:8001") as client:  # two replicas
    ...     rec = client.recommend(["12", "55", "9"])
    ...     print(rec.replica, client.replica_stats())

    Constructor arguments are those of `ClientBase` (url(s), TLS files, timeout, retry, model
    names, health policy).
    """

    def _connect(self, url: str) -> grpcclient.InferenceServerClient:
        return grpcclient.InferenceServerClient(**self._connection(url))

    def close(self) -> None:
        """Closes the channels; the client cannot be used afterwards."""
        for replica in self._replicas.replicas:
            replica.triton.close()

    def __enter__(self) -> RecommendClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _probe_due_replicas(self) -> None:
        # Readmits ejected replicas whose probe is due and that answer ready on a fresh channel.
        for replica in self._replicas.claim_probes():
            fresh = self._connect(replica.url)
            try:
                ready = fresh.is_server_ready(client_timeout=self._replicas.health.probe_timeout)
            except InferenceServerException:
                ready = False
            if not ready:
                fresh.close()
            self._replicas.probe_done(replica, fresh if ready else None)

    def _with_retries(self, budget: CallBudget, send: Callable[[Replica, float | None], T],
                      tried: set[str] | None = None) -> tuple[T, Replica]:
        """`send`'s answer and the replica that gave it, failing over between replicas and
        retrying UNAVAILABLE as `budget` allows. `send` gets the replica and the attempt's gRPC
        deadline: what is left of the call's."""
        tried = set() if tried is None else tried
        while True:
            self._probe_due_replicas()
            replica = self._replicas.choose(tried)
            tried.add(replica.url)
            attempt_timeout = budget.attempt_timeout()
            try:
                with translated():
                    answer = send(replica, attempt_timeout)
            except RecommendError as error:
                delay = self._failed_attempt(budget, replica, error, tried)
                if delay is None:
                    raise
                time.sleep(delay)
            else:
                self._replicas.answered(replica)
                return answer, replica

    def _call(self, timeout: float | None | Default, send: Callable[[Replica, float | None], T]) -> T:
        return self._with_retries(CallBudget(self.retry, self._call_timeout(timeout)), send)[0]

    def recommend(self, history: History, top_n: int = 10, *, timeout: float | None | Default = DEFAULT,
                  **params: object) -> Recommendation:
        """Recommends `top_n` items for one user.

        Args:
            history: the user's items, oldest first, as external item IDs.
            top_n: how many items to return (the server allows 1..50).
            timeout: this call's deadline in seconds, retries included; default: the client's.
            **params: the model's other request parameters: mode ("list" or "beam"),
                beam_width, draft_width, num_draft_tokens, tree_width, tree_budget,
                tree_slot_widths, tree_min_prob, drafter, temperature, top_p, seed,
                exclude_history (model_repository/README.md).

        Raises:
            InvalidArgument: the server rejected the history or a parameter.
            Unavailable: no replica could be reached, after the configured retries.
            DeadlineExceeded: the call did not finish within its deadline.
            RecommendError: anything else the server reported.
        """
        request = self._request(history, top_n, params)
        budget = CallBudget(self.retry, self._call_timeout(timeout))
        result, replica = self._with_retries(
            budget, lambda r, t: r.triton.infer(**request.infer_kwargs(), client_timeout=t))
        return dataclasses.replace(parse_recommendation(result), replica=replica.url)

    def recommend_many(self, histories: Sequence[History], top_n: int = 10, *,
                       concurrency: int = DEFAULT_CONCURRENCY, return_exceptions: bool = False,
                       timeout: float | None | Default = DEFAULT,
                       **params: object) -> list[Recommendation | RecommendError]:
        """`recommend` for many users, up to `concurrency` requests in flight at once.

        Results come back in the order of `histories`; each request has its own deadline and
        retries. With `return_exceptions`, a failed request's RecommendError takes its place in
        the list; otherwise, once all have finished, the first failure in that order is raised.
        """
        if not histories:
            return []
        workers = max(1, min(concurrency, len(histories)))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="padrec-client") as pool:
            futures = [pool.submit(self.recommend, h, top_n, timeout=timeout, **params) for h in histories]
            outcomes = [future.exception() or future.result() for future in futures]
        return collect_results(outcomes, return_exceptions)

    def stream(self, history: History, top_n: int = 10, *, timeout: float | None | Default = DEFAULT,
               **params: object) -> Iterator[StreamedItem]:
        """Yields the recommended items one by one, each as soon as the server has decided it.

        Same arguments and errors as `recommend`; the deadline covers the whole stream. Errors
        surface on iteration (this is a generator). A stream whose replica fails is resumed on
        another one within the deadline and the retries: the items already yielded are checked
        against the new stream's and skipped, so no item is yielded twice and the list is the one
        a single server would give. Leaving the loop early cancels the request.
        """
        request = self._request(history, top_n, params, stream=True)
        budget = CallBudget(self.retry, self._call_timeout(timeout))
        replay = StreamReplay()
        tried: set[str] = set()
        while True:
            session, replica = self._with_retries(
                budget, lambda r, t: _StreamSession.open(self._connection(r.url), request, t), tried)
            reader = StreamReader()
            try:
                result = session.first
                while True:
                    item = reader.read(result)
                    if item is not None and replay.is_new(item, replica.url):
                        yield dataclasses.replace(item, replica=replica.url)
                    if reader.done:
                        return
                    with translated():
                        result = session.next_result(budget.remaining())
            except RecommendError as error:
                delay = self._failed_attempt(budget, replica, error, tried)
                if delay is None:
                    broken = self._stream_broken(error, replica, len(replay.delivered))
                    if broken is error:
                        raise
                    raise broken from error
                time.sleep(delay)
            finally:
                session.close(cancel=not reader.done)

    def wait_until_ready(self, timeout: float = 30.0, models: Sequence[str] | None = None) -> None:
        """Blocks until every replica and `models` on it (default: both recommend models) are ready.

        Raises:
            Unavailable: still not ready after `timeout` seconds; the message says what was missing.
        """
        wait = ReadinessWait(self.url, timeout)
        while True:
            try:
                with translated():
                    reason = self._unready_reason(self._ready_models(models), wait.poll_timeout())
            except RecommendError as error:
                reason = error.message
            if reason is None:
                return
            time.sleep(wait.not_ready(reason))

    def _unready_reason(self, models: Sequence[str], poll_timeout: float) -> str | None:
        for replica in self._replicas.replicas:
            if not replica.triton.is_server_ready(client_timeout=poll_timeout):
                return f"the server at {replica.url} is not ready"
            for model in models:
                if not replica.triton.is_model_ready(model, client_timeout=poll_timeout):
                    return f"model {model!r} at {replica.url} is not ready"
        return None

    def check_health(self, timeout: float = 1.0) -> dict[str, bool]:
        """Asks every replica now whether it is ready; each answer also puts that replica in the
        rotation or takes it out. Returns readiness by endpoint."""
        health = {}
        for replica in self._replicas.replicas:
            try:
                with translated():
                    ready = replica.triton.is_server_ready(client_timeout=timeout)
            except RecommendError:
                ready = False
            self._replicas.set_health(replica, ready)
            health[replica.url] = ready
        return health

    def server_metadata(self, *, timeout: float | None | Default = DEFAULT) -> ServerMetadata:
        """The server's name, version and extensions (of whichever replica answers)."""
        response = self._call(timeout, lambda r, t: r.triton.get_server_metadata(client_timeout=t))
        return parse_server_metadata(response)

    def model_metadata(self, model: str | None = None, *,
                       timeout: float | None | Default = DEFAULT) -> ModelMetadata:
        """A served model's metadata (default: the recommend model's)."""
        name = model or self.model
        response = self._call(timeout, lambda r, t: r.triton.get_model_metadata(name, client_timeout=t))
        return parse_model_metadata(response)


class _StreamSession:
    """One request on a gRPC stream of its own.

    tritonclient allows one stream per client object and delivers responses on its own thread,
    so each session gets a private client and a queue that the consuming thread reads.
    """

    def __init__(self, connection: dict, request: Request, timeout: float | None) -> None:
        self._responses: queue.Queue[tuple[InferResult | None, Exception | None]] = queue.Queue()
        self._triton = grpcclient.InferenceServerClient(**connection)
        self._timeout = timeout
        self.first: InferResult | None = None
        self._triton.start_stream(callback=self._on_response, stream_timeout=timeout, headers=STREAM_HEADERS)
        try:
            self._triton.async_stream_infer(**request.stream_kwargs())
        except InferenceServerException as exc:
            # The stream may have failed (say, nothing listens at the URL) before the request was
            # queued; tritonclient then refuses it with a generic message, and the real cause is
            # the error already delivered to the callback.
            raise self._delivered_error() or from_triton(exc) from exc

    @classmethod
    def open(cls, connection: dict, request: Request, timeout: float | None) -> _StreamSession:
        """Sends the request and waits for its first response, so that a failure to connect
        is raised here, where it can still be retried."""
        session = cls(connection, request, timeout)
        try:
            session.first = session.next_result(timeout)
        except BaseException:
            session.close()
            raise
        return session

    def _delivered_error(self) -> RecommendError | None:
        # tritonclient marks the stream dead just before it calls back with the cause: wait a little.
        try:
            _, error = self._responses.get(timeout=STREAM_GRACE_S)
        except queue.Empty:
            return None
        return from_triton(error) if error is not None else None

    def _on_response(self, result: InferResult | None, error: Exception | None) -> None:
        self._responses.put((result, error))

    def next_result(self, remaining: float | None) -> InferResult:
        """The next response; raises the mapped error when the stream reports one."""
        try:
            wait = None if remaining is None else max(0.0, remaining) + STREAM_GRACE_S
            result, error = self._responses.get(timeout=wait)
        except queue.Empty:
            raise DeadlineExceeded("Deadline Exceeded (no response from the stream)",
                                   status="DEADLINE_EXCEEDED") from None
        if error is not None:
            raise from_triton(error)
        assert result is not None
        return result

    def close(self, cancel: bool = True) -> None:
        """Ends the stream and closes the private channel. `cancel` stops a request still in
        flight on the server; a finished one is closed gracefully instead, since cancelling a
        completed stream makes Triton log an internal error."""
        self._triton.stop_stream(cancel_requests=cancel)
        self._triton.close()
