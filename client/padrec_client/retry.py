"""Retry decisions: UNAVAILABLE only, within one deadline per call; at once on a replica the call
has not tried yet, with exponential backoff once every replica has been tried.

The sync and asyncio clients run the same `CallBudget`; only their way of sleeping differs. Other
errors are never retried: an invalid request stays invalid, and a request that ran out of time
already used the caller's whole deadline.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass

from .errors import DeadlineExceeded, RecommendError, Unavailable

__all__ = ["RetryPolicy", "CallBudget"]

log = logging.getLogger("padrec_client")


@dataclass(frozen=True)
class RetryPolicy:
    """How often, and how patiently, an UNAVAILABLE call is retried.

    Attributes:
        attempts: total tries, the first one included (1 = no retry).
        initial_backoff: seconds before the first retry.
        multiplier: each further wait is this many times the previous one...
        max_backoff: ...up to this many seconds.
        jitter: each wait is scaled by a random factor in [1 - jitter, 1 + jitter], so that
            many clients turned away together do not come back together.
    """

    attempts: int = 3
    initial_backoff: float = 0.1
    multiplier: float = 2.0
    max_backoff: float = 2.0
    jitter: float = 0.1

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"attempts must be at least 1, not {self.attempts}")
        if self.initial_backoff < 0 or self.max_backoff < 0 or self.multiplier < 1:
            raise ValueError("backoffs must be >= 0 and the multiplier >= 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"jitter must be within [0, 1], not {self.jitter}")

    def backoff(self, retry: int) -> float:
        """Seconds to wait before retry number `retry` (1 = the first retry), jitter included."""
        base = min(self.max_backoff, self.initial_backoff * self.multiplier ** (retry - 1))
        return base * random.uniform(1 - self.jitter, 1 + self.jitter)


NO_RETRY = RetryPolicy(attempts=1)


class CallBudget:
    """The attempts and the time one call has left.

    Usage, with `sleep` being time.sleep or asyncio.sleep:

        budget = CallBudget(policy, timeout)
        while True:
            try:
                return send(timeout=budget.attempt_timeout())
            except RecommendError as error:
                delay = budget.retry_delay(error)
                if delay is None:
                    raise
            sleep(delay)
    """

    def __init__(self, policy: RetryPolicy, timeout: float | None) -> None:
        self.policy = policy
        self.timeout = timeout
        self.attempts = 0
        self._deadline = None if timeout is None else time.monotonic() + timeout

    def remaining(self) -> float | None:
        """Seconds left until the deadline, None without one."""
        return None if self._deadline is None else self._deadline - time.monotonic()

    def attempt_timeout(self) -> float | None:
        """Counts an attempt and returns its gRPC deadline: whatever is left of the call's."""
        remaining = self.remaining()
        if remaining is not None and remaining <= 0:
            raise DeadlineExceeded(f"the call's deadline of {self.timeout:g} s passed", status="DEADLINE_EXCEEDED",
                                   attempts=self.attempts)
        self.attempts += 1
        return remaining

    def retry_delay(self, error: RecommendError, *, failover: bool = False) -> float | None:
        """Seconds to wait before the next attempt, or None when `error` is to be raised.

        `failover`: another replica that this call has not tried is in the rotation, so the next
        attempt goes there without waiting. Records the attempts made so far on `error` either way.
        """
        error.attempts = self.attempts
        if not isinstance(error, Unavailable) or self.attempts >= self.policy.attempts:
            return None
        if failover:
            log.debug("attempt %d of %d on %s: %s; failing over", self.attempts, self.policy.attempts,
                      error.replica, error.message)
            return 0.0
        delay = self.policy.backoff(self.attempts)
        remaining = self.remaining()
        if remaining is not None and delay >= remaining:
            # Waiting would overrun the deadline: report what actually went wrong instead.
            return None
        log.debug("attempt %d of %d: %s; retrying in %.3f s", self.attempts, self.policy.attempts,
                  error.message, delay)
        return delay
