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

    def acquire(self) -> int:
        """A free row, or PoolFull."""
        with self._lock:
            if not self._free:
                raise PoolFull(f"all {len(self.rows)} decoding slots are in use; retry later")
            return self._free.pop()

    def release(self, row: int) -> None:
        """Give a row back (releasing one that is not held is a bug, not a request error)."""
        with self._lock:
            if row not in self.rows or row in self._free:
                raise ValueError(f"slot {row} is not held")
            self._free.append(row)

    @property
    def in_use(self) -> int:
        with self._lock:
            return len(self.rows) - len(self._free)
