"""A work queue of service names with client-go's semantics, for asyncio.

Invariants (each has its own test in tests/unit/test_workqueue.py):
1. Dedupe: adding a key that is already waiting is a no-op.
2. A key is never handed to two workers at once.
3. A key added while it is being processed is processed exactly once more afterwards,
   however many times it was added meanwhile.
4. Delayed adds only ever move a key earlier: re-adding with a longer delay keeps the
   sooner time.
5. Per-key exponential backoff for failures, reset by ``forget`` on success.
6. ``shutdown`` wakes every waiting worker; nothing new is handed out afterwards.

Three small structures carry it, as in client-go: a FIFO of ready keys, a ``dirty`` set (keys
that need processing) and a ``processing`` set. Delays live in a heap keyed by ready time;
one loop timer fires for the earliest. Time is the event loop's clock.
"""

from __future__ import annotations

import asyncio
import heapq
from collections import deque


class ShutDown(Exception):
    """The queue is shutting down; workers should return."""


class WorkQueue:
    def __init__(self, base_delay: float = 0.05, max_delay: float = 60.0) -> None:
        self._queue: deque[str] = deque()
        self._dirty: set[str] = set()
        self._processing: set[str] = set()
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._shutting_down = False
        # Delayed keys: heap of (ready_at, sequence, key); `_ready_at` is the live entry.
        self._heap: list[tuple[float, int, str]] = []
        self._ready_at: dict[str, float] = {}
        self._sequence = 0
        self._timer: asyncio.TimerHandle | None = None
        self._failures: dict[str, int] = {}
        self.base_delay = base_delay
        self.max_delay = max_delay

    # -- immediate adds ----------------------------------------------------------------

    def add(self, key: str) -> None:
        if self._shutting_down or key in self._dirty:
            return
        self._dirty.add(key)
        self._ready_at.pop(key, None)  # an immediate add supersedes a pending delay
        if key in self._processing:
            return  # re-queued by done()
        self._queue.append(key)
        self._wake_one()

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def get(self) -> str:
        """The next key to process; the caller must call ``done(key)`` afterwards."""
        while not self._queue:
            if self._shutting_down:
                raise ShutDown
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                # Pass the wake-up on, or a key could sit unclaimed.
                if waiter.done() and not waiter.cancelled() and self._queue:
                    self._wake_one()
                raise
        if self._shutting_down:
            raise ShutDown
        key = self._queue.popleft()
        self._processing.add(key)
        self._dirty.discard(key)
        return key

    def done(self, key: str) -> None:
        self._processing.discard(key)
        if key in self._dirty:
            self._queue.append(key)
            self._wake_one()

    # -- delayed adds ------------------------------------------------------------------

    def add_after(self, key: str, delay: float) -> None:
        """Add ``key`` after ``delay`` seconds; an earlier pending time wins."""
        if self._shutting_down:
            return
        if delay <= 0:
            self.add(key)
            return
        loop = asyncio.get_running_loop()
        ready_at = loop.time() + delay
        current = self._ready_at.get(key)
        if current is not None and current <= ready_at:
            return
        self._ready_at[key] = ready_at
        self._sequence += 1
        heapq.heappush(self._heap, (ready_at, self._sequence, key))
        self._arm_timer(loop)

    def _arm_timer(self, loop: asyncio.AbstractEventLoop) -> None:
        self._drop_stale_heap_entries()
        if not self._heap:
            return
        earliest = self._heap[0][0]
        if self._timer is not None and self._timer.when() <= earliest:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer = loop.call_at(earliest, self._fire_ready)

    def _drop_stale_heap_entries(self) -> None:
        while self._heap and self._ready_at.get(self._heap[0][2]) != self._heap[0][0]:
            heapq.heappop(self._heap)

    def _fire_ready(self) -> None:
        self._timer = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        while self._heap and self._heap[0][0] <= now:
            ready_at, _sequence, key = heapq.heappop(self._heap)
            if self._ready_at.get(key) == ready_at:
                del self._ready_at[key]
                self.add(key)
        self._arm_timer(loop)

    # -- failures ----------------------------------------------------------------------

    def add_rate_limited(self, key: str) -> float:
        """Re-add a failed key after its exponential backoff; returns the delay used."""
        failures = self._failures.get(key, 0)
        self._failures[key] = failures + 1
        delay: float = min(self.max_delay, self.base_delay * float(2**failures))
        self.add_after(key, delay)
        return delay

    def forget(self, key: str) -> None:
        """Success: the next failure of ``key`` starts from the base delay again."""
        self._failures.pop(key, None)

    def failures(self, key: str) -> int:
        return self._failures.get(key, 0)

    # -- state -------------------------------------------------------------------------

    def __len__(self) -> int:
        """Keys ready to be handed out now."""
        return len(self._queue)

    @property
    def processing(self) -> frozenset[str]:
        return frozenset(self._processing)

    def waiting_later(self) -> dict[str, float]:
        """Delayed keys and their ready times (loop clock)."""
        return dict(self._ready_at)

    def shutdown(self) -> None:
        self._shutting_down = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
