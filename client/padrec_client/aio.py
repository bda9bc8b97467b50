"""The asyncio client, over tritonclient.grpc.aio: the same calls as the blocking one, awaited."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

import grpc
import tritonclient.grpc.aio as aioclient
from tritonclient.grpc import InferResult
from tritonclient.utils import InferenceServerException

from .base import DEFAULT, DEFAULT_CONCURRENCY, ClientBase, Default, ReadinessWait, collect_results
from .errors import RecommendError, from_triton, translated
from .metadata import ModelMetadata, ServerMetadata, parse_model_metadata, parse_server_metadata
from .params import History
from .protocol import STREAM_GRACE_S, STREAM_HEADERS, Request, StreamReader, StreamReplay, parse_recommendation
from .replicas import Replica
from .result import Recommendation, StreamedItem
from .retry import CallBudget

__all__ = ["AsyncRecommendClient"]

T = TypeVar("T")


class AsyncRecommendClient(ClientBase):
    """Asyncio client of the served recommender; use it from one event loop.

    >>> async with AsyncRecommendClient("localhost:8001") as client:
    ...     await client.wait_until_ready(timeout=60)
    ...     rec = await client.recommend(["12", "55", "9"], top_n=5)
    ...     async for item in client.stream(["12", "55", "9"]):
    ...         print(item.rank, item.item)

    Constructor arguments are those of `ClientBase` (url, TLS files, timeout, retry, model names);
    every call takes the same arguments and raises the same errors as in `RecommendClient`.
    """

    def _connect(self, url: str) -> aioclient.InferenceServerClient:
        return aioclient.InferenceServerClient(**self._connection(url))

    async def close(self) -> None:
        """Closes the channels; the client cannot be used afterwards."""
        for replica in self._replicas.replicas:
            await replica.triton.close()

    async def __aenter__(self) -> AsyncRecommendClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _probe_due_replicas(self) -> None:
        # As in RecommendClient: readmit ejected replicas that answer ready on a fresh channel.
        for replica in self._replicas.claim_probes():
            fresh = self._connect(replica.url)
            try:
                ready = await fresh.is_server_ready(client_timeout=self._replicas.health.probe_timeout)
            except (InferenceServerException, grpc.RpcError):
                ready = False
            if not ready:
                await fresh.close()
            self._replicas.probe_done(replica, fresh if ready else None)

    async def _with_retries(self, budget: CallBudget, send: Callable[[Replica, float | None], Awaitable[T]],
                            tried: set[str] | None = None) -> tuple[T, Replica]:
        # The decisions are ClientBase's and CallBudget's, shared with the blocking client; only
        # the waiting differs.
        tried = set() if tried is None else tried
        while True:
            await self._probe_due_replicas()
            replica = self._replicas.choose(tried)
            tried.add(replica.url)
            attempt_timeout = budget.attempt_timeout()
            try:
                with translated():
                    answer = await send(replica, attempt_timeout)
            except RecommendError as error:
                delay = self._failed_attempt(budget, replica, error, tried)
                if delay is None:
                    raise
                await asyncio.sleep(delay)
            else:
                self._replicas.answered(replica)
                return answer, replica

    async def _call(self, timeout: float | None | Default,
                    send: Callable[[Replica, float | None], Awaitable[T]]) -> T:
        return (await self._with_retries(CallBudget(self.retry, self._call_timeout(timeout)), send))[0]

    async def recommend(self, history: History, top_n: int = 10, *,
                        timeout: float | None | Default = DEFAULT, **params: object) -> Recommendation:
        """Recommends `top_n` items for one user; see `RecommendClient.recommend`."""
        request = self._request(history, top_n, params)
        budget = CallBudget(self.retry, self._call_timeout(timeout))
        result, replica = await self._with_retries(
            budget, lambda r, t: r.triton.infer(**request.infer_kwargs(), client_timeout=t))
        return dataclasses.replace(parse_recommendation(result), replica=replica.url)

    async def recommend_many(self, histories: Sequence[History], top_n: int = 10, *,
                             concurrency: int = DEFAULT_CONCURRENCY, return_exceptions: bool = False,
                             timeout: float | None | Default = DEFAULT,
                             **params: object) -> list[Recommendation | RecommendError]:
        """`recommend` for many users, at most `concurrency` in flight; see
        `RecommendClient.recommend_many`."""
        gate = asyncio.Semaphore(max(1, concurrency))

        async def one(history: History) -> Recommendation:
            async with gate:
                return await self.recommend(history, top_n, timeout=timeout, **params)

        outcomes = await asyncio.gather(*(one(h) for h in histories), return_exceptions=True)
        return collect_results(outcomes, return_exceptions)

    async def stream(self, history: History, top_n: int = 10, *, timeout: float | None | Default = DEFAULT,
                     **params: object) -> AsyncIterator[StreamedItem]:
        """Yields the recommended items as the server decides them, resuming on another replica
        if one fails; see `RecommendClient.stream`."""
        request = self._request(history, top_n, params, stream=True)
        budget = CallBudget(self.retry, self._call_timeout(timeout))
        replay = StreamReplay()
        tried: set[str] = set()
        while True:
            (responses, first), replica = await self._with_retries(
                budget, lambda r, t: _open_stream(r.triton, request, t), tried)
            reader = StreamReader()
            try:
                result = first
                while True:
                    item = reader.read(result)
                    if item is not None and replay.is_new(item, replica.url):
                        yield dataclasses.replace(item, replica=replica.url)
                    if reader.done:
                        return
                    with translated():
                        result = await _next_result(responses)
            except RecommendError as error:
                delay = self._failed_attempt(budget, replica, error, tried)
                if delay is None:
                    broken = self._stream_broken(error, replica, len(replay.delivered))
                    if broken is error:
                        raise
                    raise broken from error
                await asyncio.sleep(delay)
            finally:
                await _close_stream(responses, cancel=not reader.done)

    async def wait_until_ready(self, timeout: float = 30.0, models: Sequence[str] | None = None) -> None:
        """Waits until every replica and `models` on it (default: both recommend models) are
        ready; raises Unavailable after `timeout` seconds."""
        wait = ReadinessWait(self.url, timeout)
        while True:
            try:
                with translated():
                    reason = await self._unready_reason(self._ready_models(models), wait.poll_timeout())
            except RecommendError as error:
                reason = error.message
            if reason is None:
                return
            await asyncio.sleep(wait.not_ready(reason))

    async def _unready_reason(self, models: Sequence[str], poll_timeout: float) -> str | None:
        for replica in self._replicas.replicas:
            if not await replica.triton.is_server_ready(client_timeout=poll_timeout):
                return f"the server at {replica.url} is not ready"
            for model in models:
                if not await replica.triton.is_model_ready(model, client_timeout=poll_timeout):
                    return f"model {model!r} at {replica.url} is not ready"
        return None

    async def server_metadata(self, *, timeout: float | None | Default = DEFAULT) -> ServerMetadata:
        """The server's name, version and extensions (of whichever replica answers)."""
        response = await self._call(timeout, lambda r, t: r.triton.get_server_metadata(client_timeout=t))
        return parse_server_metadata(response)

    async def model_metadata(self, model: str | None = None, *,
                             timeout: float | None | Default = DEFAULT) -> ModelMetadata:
        """A served model's metadata (default: the recommend model's)."""
        name = model or self.model
        response = await self._call(timeout, lambda r, t: r.triton.get_model_metadata(name, client_timeout=t))
        return parse_model_metadata(response)


async def _open_stream(triton: Any, request: Request, timeout: float | None) -> tuple[Any, InferResult]:
    """Sends a streamed request and waits for its first response, so that a failure to connect
    can still be retried (on this replica or another)."""
    async def requests() -> AsyncIterator[dict[str, Any]]:
        yield request.stream_kwargs()

    responses = triton.stream_infer(requests(), stream_timeout=timeout, headers=STREAM_HEADERS)
    try:
        return responses, await _next_result(responses)
    except BaseException:
        responses.cancel()
        raise


async def _next_result(responses: Any) -> InferResult:
    """The stream's next response; its in-band error (if any) raised as a RecommendError."""
    try:
        result, error = await responses.__anext__()
    except StopAsyncIteration:
        raise RecommendError("the server closed the stream before the final response") from None
    if error is not None:
        raise from_triton(error)
    return result


async def _close_stream(responses: Any, cancel: bool) -> None:
    """Ends a stream: cancels a request still in flight; lets a finished one end on its own
    (cancelling a completed stream makes Triton log an internal error), within a grace period."""
    if not cancel:
        try:
            await asyncio.wait_for(responses.__anext__(), STREAM_GRACE_S)
        except (StopAsyncIteration, asyncio.TimeoutError, grpc.RpcError):
            pass
    responses.cancel()
