"""A bounded pool of KV-cache rows ("slots") that requests hold from prefill to their last item."""

from __future__ import annotations

import threading


class PoolFull(RuntimeError):
    """Every slot is taken; the request may be retried later."""


class SlotPool:
    """Hands out the rows of `rows` one per request; thread-safe; never blocks."""

    def __init__(self, rows: range):
        self.rows = rows
        self._free = list(reversed(rows))
        self._lock = threading.Lock()

    def acquire(self, count: int = 1) -> list[int]:
        """`count` free rows, all or none: PoolFull when fewer are free."""
        with self._lock:
            if count > len(self._free):
                raise PoolFull(f"{count} decoding slots asked for, {len(self._free)} of {len(self.rows)} free; "
                               "retry later")
            return [self._free.pop() for _ in range(count)]

    def release(self, rows: list[int]) -> None:
        """Give rows back (releasing one that is not held is a bug, not a request error)."""
        with self._lock:
            for row in rows:
                if row not in self.rows or row in self._free:
                    raise ValueError(f"slot {row} is not held")
                self._free.append(row)

    @property
    def in_use(self) -> int:
        with self._lock:
            return len(self.rows) - len(self._free)
