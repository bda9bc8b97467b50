"""The client's exception classes, and the one place where tritonclient's errors are translated.

tritonclient raises a single `InferenceServerException` whose status is the gRPC code as a string
("StatusCode.INVALID_ARGUMENT"). Callers want to catch what they can act on: fix the request,
retry later, or give the call more time.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import grpc
from tritonclient.utils import InferenceServerException

__all__ = [
    "RecommendError",
    "InvalidArgument",
    "Unavailable",
    "DeadlineExceeded",
    "error_for_status",
    "from_grpc",
    "from_triton",
    "normalize_status",
    "translated",
]


class RecommendError(Exception):
    """Base of every error this client raises; also the class of errors without a dedicated one.

    Attributes:
        message: what went wrong, as the server (or the client) said it.
        status: the gRPC status name without its prefix ("INTERNAL"), or None for errors that
            did not come with one (raised by the client itself).
        attempts: how many times the call was sent before giving up (more than 1 after retries).
        replica: the endpoint whose answer (or broken connection) this error is, None for errors
            raised before anything was sent.
    """

    def __init__(self, message: str, *, status: str | None = None, attempts: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.attempts = attempts
        self.replica: str | None = None

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, status={self.status!r}, attempts={self.attempts})"


class InvalidArgument(RecommendError):
    """The server rejected the request: unknown item ID, empty history, a parameter out of range..."""


class Unavailable(RecommendError):
    """The server could not be reached, or is too busy right now; retried with backoff first."""


class DeadlineExceeded(RecommendError):
    """The call did not finish within its deadline."""


# Triton's own code names (INVALID_ARG in its logs and HTTP errors) map as their gRPC equivalents.
_CLASS_BY_STATUS: dict[str, type[RecommendError]] = {
    "INVALID_ARGUMENT": InvalidArgument,
    "INVALID_ARG": InvalidArgument,
    "UNAVAILABLE": Unavailable,
    "DEADLINE_EXCEEDED": DeadlineExceeded,
}


def normalize_status(status: str | None) -> str | None:
    """The bare status name: StatusCode.INVALID_ARGUMENT -> INVALID_ARGUMENT; None or empty -> None."""
    if not status:
        return None
    return status.rsplit(".", 1)[-1].strip().upper() or None


def error_for_status(status: str | None, message: str, *, attempts: int = 1) -> RecommendError:
    """The exception for a gRPC status string, in any of the spellings tritonclient and Triton use."""
    name = normalize_status(status)
    cls = _CLASS_BY_STATUS.get(name or "", RecommendError)
    return cls(message, status=name, attempts=attempts)


def from_triton(exc: InferenceServerException, *, attempts: int = 1) -> RecommendError:
    """Translates a tritonclient exception, keeping the server's message as the text."""
    message = exc.message() or str(exc)
    return error_for_status(exc.status(), message, attempts=attempts)


def from_grpc(exc: grpc.RpcError, *, attempts: int = 1) -> RecommendError:
    """Translates a raw gRPC error, which tritonclient's asyncio streams let through unwrapped."""
    code = exc.code() if hasattr(exc, "code") else None
    details = exc.details() if hasattr(exc, "details") else None
    return error_for_status(str(code) if code is not None else None, details or str(exc), attempts=attempts)


@contextmanager
def translated() -> Iterator[None]:
    """Re-raises tritonclient's and gRPC's exceptions inside the block as this module's classes."""
    try:
        yield
    except InferenceServerException as exc:
        raise from_triton(exc) from exc
    except grpc.RpcError as exc:
        raise from_grpc(exc) from exc
