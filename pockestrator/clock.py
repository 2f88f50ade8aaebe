"""Time as a dependency: code that decides by time asks a ``Clock``, never the machine.

Two readings cover what the agent needs. ``now()`` is UTC wall time, for what is stored or
shown (timestamps, lock-outs and expiry kept in the database, which must survive a restart).
``monotonic()`` is seconds from an arbitrary start that never jumps, for measuring how long
something took or how long to wait (backoff, probe intervals, schedules).

``SystemClock`` reads the machine. ``FakeClock`` stands still until a test ``advance``s it,
both readings together, so a test of "locked for 200 ms" states the 200 ms instead of
sleeping and hoping the machine is fast enough (it once was not: a slow Argon2 check
outlasted the lock it was meant to meet). Asyncio's own timers keep the event loop's clock.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """Where time comes from (the machine, or a test)."""

    def now(self) -> datetime:
        """The current wall time, timezone-aware, in UTC."""
        ...

    def monotonic(self) -> float:
        """Seconds since an arbitrary point; never goes back, not even when the wall clock is
        set."""
        ...


class SystemClock:
    """The machine's clocks."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()


SYSTEM_CLOCK = SystemClock()

# A fixed, unremarkable start: tests then see the same timestamps on every run.
FAKE_EPOCH = datetime(2025, 7, 31, 12, 0, tzinfo=UTC)


class FakeClock:
    """A clock that moves only when told to (thread-safe: stores read it from threads)."""

    def __init__(self, start: datetime = FAKE_EPOCH, monotonic: float = 0.0) -> None:
        if start.tzinfo is None:
            raise ValueError("a FakeClock starts at an aware datetime")
        self._now = start.astimezone(UTC)
        self._monotonic = monotonic
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def monotonic(self) -> float:
        with self._lock:
            return self._monotonic

    def advance(self, seconds: float) -> None:
        """Move both readings forward by ``seconds`` (never back: monotonic means it)."""
        if seconds < 0:
            raise ValueError(f"a clock does not go back ({seconds} s)")
        with self._lock:
            self._now += timedelta(seconds=seconds)
            self._monotonic += seconds


def utc_now() -> datetime:
    """The system clock's wall time, for code that does not take a ``Clock`` (yet)."""
    return SYSTEM_CLOCK.now()
