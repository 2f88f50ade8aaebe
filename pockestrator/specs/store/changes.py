"""The store's change feed: a version number for every change to a service, and wake-ups.

Every committed write to a service's row, to its status or to its history of events bumps
one store-wide counter and notes which service it touched (a status write that moves only
``status.QUIET_FIELDS``, the probe round's times and counters, does not). Watchers (the
API's ``watch=true`` streams) are woken at once, from whichever thread wrote, so that
nothing polls. The counter lives in memory with an ``epoch`` drawn at start: a resource
version is ``<epoch>-<counter>``, and one from another run of the agent (or older than the
last ``KEPT`` changes) cannot say what was missed, so a watcher that presents it gets the
whole current state again instead.

The feed holds no service data, only names and numbers: a watcher reads the store for the
current state of each name it is told about, so a message is never older than its version.
"""

from __future__ import annotations

import asyncio
import secrets
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from pockestrator.waits import woken

KEPT = 4096


class Waiter:
    """One watcher's wake-up: set by a change (from any thread), awaited on its loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._event = asyncio.Event()

    def wake(self) -> None:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            self._event.set()
        elif not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._event.set)

    async def wait(self, timeout: float) -> bool:
        """True when woken within ``timeout`` seconds (and ready for the next wake-up)."""
        if not await woken(self._event, timeout):
            return False
        self._event.clear()
        return True


class ChangeFeed:
    """The counter, the last ``kept`` changes (version, name) and the watchers to wake."""

    def __init__(self, kept: int = KEPT, epoch: str | None = None) -> None:
        self.epoch = epoch or secrets.token_hex(4)
        self._lock = threading.Lock()
        self._version = 0
        self._forgotten = 0  # every change up to this version has left the log
        self._log: deque[tuple[int, str]] = deque()
        self._kept = kept
        self._waiters: set[Waiter] = set()

    @property
    def version(self) -> int:
        with self._lock:
            return self._version

    def resource_version(self, version: int) -> str:
        return f"{self.epoch}-{version}"

    def parse(self, text: str | None) -> int | None:
        """The counter of a resource version of this run, or None (absent, foreign, bad)."""
        if not text:
            return None
        epoch, _, number = text.strip().partition("-")
        if epoch != self.epoch or not number.isascii() or not number.isdigit():
            return None
        if len(number) > 18:
            return None
        return int(number)

    def record(self, names: Iterable[str]) -> None:
        """Committed changes to ``names`` (call after the transaction, never inside it)."""
        with self._lock:
            changed = False
            for name in names:
                self._version += 1
                self._log.append((self._version, name))
                changed = True
                if len(self._log) > self._kept:
                    self._forgotten = self._log.popleft()[0]
            waiters = list(self._waiters) if changed else []
        for waiter in waiters:
            waiter.wake()

    def since(self, version: int) -> dict[str, int] | None:
        """The services changed after ``version``, each with its latest version, oldest
        first; None when the log no longer reaches back to ``version`` (or it is ahead)."""
        with self._lock:
            if version < self._forgotten or version > self._version:
                return None
            latest: dict[str, int] = {}
            for number, name in reversed(self._log):
                if number <= version:
                    break
                latest.setdefault(name, number)
        return dict(sorted(latest.items(), key=lambda item: item[1]))

    @contextmanager
    def subscribe(self) -> Iterator[Waiter]:
        """A waiter woken by every change while the block runs (on the running loop)."""
        waiter = Waiter(asyncio.get_running_loop())
        with self._lock:
            self._waiters.add(waiter)
        try:
            yield waiter
        finally:
            with self._lock:
                self._waiters.discard(waiter)

    @property
    def watchers(self) -> int:
        with self._lock:
            return len(self._waiters)
