"""The `recommend` / `recommend_stream` wire format: building a request, reading a response.

Shared by the sync and the asyncio client, which differ only in how they wait.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from tritonclient.grpc import InferInput, InferResult

from .errors import RecommendError
from .params import History, ParamValue, history_array, request_parameters
from .result import DecodeStats, Recommendation, StreamedItem

__all__ = [
    "STREAM_GRACE_S",
    "STREAM_HEADERS",
    "Request",
    "StreamReader",
    "StreamReplay",
    "build_request",
    "is_final",
    "parse_recommendation",
    "parse_streamed_item",
]

HISTORY = "HISTORY"
# Without this header Triton reports a streamed request's error as a bare message; with it, as a
# gRPC status (and closes the stream), so stream errors map to the same classes as unary ones.
STREAM_HEADERS = {"triton_grpc_error": "true"}
# Asks Triton for the flags-only response that a decoupled model ends a request with; without it
# a client cannot tell "no more items" from "the next item is slow".
EMPTY_FINAL_RESPONSE_PARAMETER = "triton_enable_empty_final_response"
FINAL_RESPONSE_PARAMETER = "triton_final_response"
# How long the client waits on a stream beyond what gRPC enforces: for the cause of a failed start,
# for a finished stream to close, and past a stream's deadline before giving up on its own.
STREAM_GRACE_S = 1.0


@dataclass(frozen=True)
class Request:
    """One call's inputs and parameters, ready for `infer` or a stream."""

    model: str
    inputs: list[InferInput]
    parameters: dict[str, ParamValue]

    def infer_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of tritonclient's `infer` (sync and aio alike)."""
        return {"model_name": self.model, "inputs": self.inputs, "parameters": self.parameters}

    def stream_kwargs(self) -> dict[str, Any]:
        """The same request for a stream, asking for the empty final response.

        Sent as a request parameter rather than through `async_stream_infer`'s flag because the
        asyncio client's `stream_infer` has no such flag; on the wire the two are the same.
        """
        return {
            "model_name": self.model,
            "inputs": self.inputs,
            "parameters": {**self.parameters, EMPTY_FINAL_RESPONSE_PARAMETER: True},
        }


def build_request(model: str, history: History, top_n: int,
                  params: Mapping[str, object]) -> Request:
    """Encodes a history and parameters for `model`; raises InvalidArgument for unusable values."""
    array = history_array(history)
    tensor = InferInput(HISTORY, list(array.shape), "BYTES")
    tensor.set_data_from_numpy(array)
    return Request(model, [tensor], request_parameters(top_n, params))


def _output(result: InferResult, name: str) -> np.ndarray:
    array = result.as_numpy(name)
    if array is None:
        raise RecommendError(f"the server's response has no {name} output")
    return array.reshape(-1)


def _float32(value: np.floating) -> float:
    # The shortest decimal that is still this float32: 2.6, not 2.5999999046325684.
    return float(str(np.float32(value)))


def _strings(result: InferResult, name: str) -> tuple[str, ...]:
    return tuple(v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in _output(result, name))


def _stats(result: InferResult) -> DecodeStats:
    return DecodeStats(
        rounds=int(_output(result, "ROUNDS")[0]),
        drafted=int(_output(result, "DRAFTED")[0]),
        accepted=int(_output(result, "ACCEPTED")[0]),
        tau=_float32(_output(result, "TAU")[0]),
    )


def parse_recommendation(result: InferResult) -> Recommendation:
    """A `recommend` response as a Recommendation."""
    items = _strings(result, "ITEM_IDS")
    scores = tuple(_float32(s) for s in _output(result, "SCORES"))
    if len(items) != len(scores):
        raise RecommendError(f"the server sent {len(items)} items but {len(scores)} scores")
    return Recommendation(items, scores, _stats(result), bool(_output(result, "HISTORY_TRUNCATED")[0]))


def is_final(result: InferResult) -> bool:
    """Whether this response is the last one of its streamed request."""
    parameter = result.get_response().parameters.get(FINAL_RESPONSE_PARAMETER)
    return bool(parameter is not None and parameter.bool_param)


def parse_streamed_item(result: InferResult, rank: int) -> StreamedItem | None:
    """One `recommend_stream` response as a StreamedItem; None for the empty final response."""
    if not result.get_response().outputs:
        return None
    items = _strings(result, "ITEM_IDS")
    if len(items) != 1:
        raise RecommendError(f"a streamed response carried {len(items)} items instead of 1")
    return StreamedItem(
        rank=rank,
        item=items[0],
        score=_float32(_output(result, "SCORES")[0]),
        stats=_stats(result),
        history_truncated=bool(_output(result, "HISTORY_TRUNCATED")[0]),
    )


class StreamReader:
    """Reads one streamed request's responses in order: numbers the items, notices the end."""

    def __init__(self) -> None:
        self.rank = 0
        self.done = False

    def read(self, result: InferResult) -> StreamedItem | None:
        """The item this response carries (None for the empty final one); sets `done` at the end."""
        item = parse_streamed_item(result, self.rank)
        if item is not None:
            self.rank += 1
        self.done = is_final(result)
        return item


class StreamReplay:
    """What a stream resumed on another replica must skip: the items already yielded.

    Greedy (and seeded) decoding gives the same list on every replica, so the new stream's first
    items are the ones the caller already has; each is checked before it is dropped, and a list
    that differs (sampling without a seed) ends the stream with an error instead of a spliced list.
    """

    def __init__(self) -> None:
        self.delivered: list[str] = []

    def is_new(self, item: StreamedItem, replica: str) -> bool:
        """Whether `item` (of the current attempt) is to be yielded; records it if so."""
        if item.rank < len(self.delivered):
            if self.delivered[item.rank] != item.item:
                raise RecommendError(
                    f"the stream broke after {len(self.delivered)} items and {replica}, where it resumed, "
                    f"decided another item at rank {item.rank} ({item.item!r}, not "
                    f"{self.delivered[item.rank]!r}): a sampled list without a seed cannot be resumed"
                )
            return False
        self.delivered.append(item.item)
        return True
