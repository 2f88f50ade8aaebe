"""The open event streams (``GET /events?follow=true``): woken by each new event, capped.

One listener on the store wakes every stream's loop after an event's commit (from any
thread: ``call_soon_threadsafe``); each stream then reads what came after the last id it
sent, so a wake-up that finds nothing, or several events, is fine, and none is skipped.
Streams are counted against a cap; shutdown wakes and ends them all.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from pockestrator.api.streams import StreamsFull
from pockestrator.specs.store import Event, Store


class EventFeed:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.closing = False
        self._waiting: dict[asyncio.Event, asyncio.AbstractEventLoop] = {}
        self._stop_listening: Callable[[], None] | None = None

    def attach(self, store: Store) -> None:
        self._stop_listening = store.listen_events(self._heard)

    def _heard(self, _event: Event, _queued: int) -> None:
        for wakeup, loop in list(self._waiting.items()):
            loop.call_soon_threadsafe(wakeup.set)

    @property
    def open(self) -> int:
        return len(self._waiting)

    @contextmanager
    def subscription(self) -> Iterator[asyncio.Event]:
        """An event set after each new event (and at shutdown) for as long as the block runs."""
        if self.closing or len(self._waiting) >= self.limit:
            raise StreamsFull(self.limit, "event streams")
        wakeup = asyncio.Event()
        self._waiting[wakeup] = asyncio.get_running_loop()
        try:
            yield wakeup
        finally:
            del self._waiting[wakeup]

    def close(self) -> None:
        self.closing = True
        if self._stop_listening is not None:
            self._stop_listening()
        for wakeup in list(self._waiting):
            wakeup.set()
