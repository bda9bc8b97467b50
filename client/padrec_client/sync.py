"""The blocking client, over tritonclient.grpc."""

from __future__ import annotations

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
from .protocol import STREAM_GRACE_S, STREAM_HEADERS, Request, StreamReader, parse_recommendation
from .result import Recommendation, StreamedItem
from .retry import CallBudget

__all__ = ["RecommendClient"]

T = TypeVar("T")


class RecommendClient(ClientBase):
    """Blocking client of the served recommender. Thread-safe, except that each `stream()`
    iterator belongs to the thread consuming it.

    >>> with RecommendClient("localhost:8001") as client:
    ...     client.wait_until_ready(timeout=60)
    ...     rec = client.recommend(["12", "55", "9"], top_n=5)
    ...     print(rec.items, rec.stats.tau)

    Constructor arguments are those of `ClientBase` (url, TLS files, timeout, retry, model names).
    """

    def _connect(self) -> grpcclient.InferenceServerClient:
        return grpcclient.InferenceServerClient(**self._connection)

    def close(self) -> None:
        """Closes the channel; the client cannot be used afterwards."""
        self._triton.close()

    def __enter__(self) -> RecommendClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _with_retries(self, budget: CallBudget, send: Callable[[float | None], T]) -> T:
        # `send` gets the attempt's gRPC deadline: what is left of the call's.
        while True:
            try:
                with translated():
                    return send(budget.attempt_timeout())
            except RecommendError as error:
                delay = budget.retry_delay(error)
                if delay is None:
                    raise
            time.sleep(delay)

    def _call(self, timeout: float | None | Default, send: Callable[[float | None], T]) -> T:
        return self._with_retries(CallBudget(self.retry, self._call_timeout(timeout)), send)

    def recommend(self, history: History, top_n: int = 10, *, timeout: float | None | Default = DEFAULT,
                  **params: object) -> Recommendation:
        """Recommends `top_n` items for one user.

        Args:
            history: the user's items, oldest first, as external item IDs.
            top_n: how many items to return (the server allows 1..50).
            timeout: this call's deadline in seconds, retries included; default: the client's.
            **params: the model's other request parameters: num_draft_tokens, drafter,
                temperature, top_p, seed, exclude_history (model_repository/README.md).

        Raises:
            InvalidArgument: the server rejected the history or a parameter.
            Unavailable: the server could not be reached, after the configured retries.
            DeadlineExceeded: the call did not finish within its deadline.
            RecommendError: anything else the server reported.
        """
        request = self._request(history, top_n, params)
        result = self._call(timeout, lambda t: self._triton.infer(**request.infer_kwargs(), client_timeout=t))
        return parse_recommendation(result)

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
        surface on iteration (this is a generator). UNAVAILABLE is retried only until the first
        response, so no item is ever yielded twice. Leaving the loop early cancels the request.
        """
        request = self._request(history, top_n, params, stream=True)
        budget = CallBudget(self.retry, self._call_timeout(timeout))
        session = self._with_retries(budget, lambda t: _StreamSession.open(self._connection, request, t))
        reader = StreamReader()
        try:
            result = session.first
            while True:
                item = reader.read(result)
                if item is not None:
                    yield item
                if reader.done:
                    return
                result = session.next_result(budget.remaining())
        finally:
            session.close(cancel=not reader.done)

    def wait_until_ready(self, timeout: float = 30.0, models: Sequence[str] | None = None) -> None:
        """Blocks until the server and `models` (default: both recommend models) are ready.

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
        if not self._triton.is_server_ready(client_timeout=poll_timeout):
            return "the server is not ready"
        for model in models:
            if not self._triton.is_model_ready(model, client_timeout=poll_timeout):
                return f"model {model!r} is not ready"
        return None

    def server_metadata(self, *, timeout: float | None | Default = DEFAULT) -> ServerMetadata:
        """The server's name, version and extensions."""
        response = self._call(timeout, lambda t: self._triton.get_server_metadata(client_timeout=t))
        return parse_server_metadata(response)

    def model_metadata(self, model: str | None = None, *,
                       timeout: float | None | Default = DEFAULT) -> ModelMetadata:
        """A served model's metadata (default: the recommend model's)."""
        name = model or self.model
        response = self._call(timeout, lambda t: self._triton.get_model_metadata(name, client_timeout=t))
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
