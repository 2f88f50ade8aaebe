"""The open streams: log streams and watches, each kind counted against its own cap.

Log streams: each slot is taken before its journalctl starts.

Each stream is one ``journalctl --follow`` process reading the journal for as long as its
client stays, so the agent caps them (``max_log_streams``). A slot is claimed at once, before
anything is awaited: a count of running followers, checked and added to around the
``await`` that starts one, would let requests that arrive together all pass it. Shutdown
ends every stream, and one whose journalctl is still starting is ended as soon as it runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

from aiohttp import web

from pockestrator.api import sse
from pockestrator.api.errors import ApiError
from pockestrator.specs.errors import ErrorCode
from pockestrator.specs.store.changes import Waiter

# How long a client refused for want of a slot is asked to wait (Retry-After).
RETRY_AFTER_SECONDS = 5
# How long a client whose stream ended waits before it reconnects (SSE ``retry:``).
RECONNECT_MILLISECONDS = 3000


async def opened_stream(request: web.Request) -> web.StreamResponse:
    """A ``text/event-stream`` answer with its headers sent: past this nothing can become
    a JSON error, the stream just ends (the client goes, or the agent shuts down)."""
    response = web.StreamResponse(headers=sse.HEADERS)
    await response.prepare(request)
    return response


class Follower(Protocol):
    """What holds a stream open: a journalctl follower, or a stream relayed from the
    owning node (``api.owner_calls``); ``stop`` ends it."""

    def stop(self) -> None: ...


class StreamsFull(ApiError):
    """Every slot of a kind of stream is taken (or the API is shutting down): the 503 that
    refuses one more, so no route has to translate it; ``what`` names the kind (plural)."""

    def __init__(self, limit: int, what: str) -> None:
        super().__init__(
            503,
            ErrorCode.TOO_MANY_STREAMS,
            f"At most {limit} {what} at once; try again later",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )


class LogStreams:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._claimed = 0
        self._followers: set[Follower] = set()
        self._closing = False

    @property
    def open(self) -> int:
        """Slots taken now: streams running and starting."""
        return self._claimed

    @contextmanager
    def slot(self) -> Iterator[StreamSlot]:
        """One stream's slot for as long as the block runs; ``StreamsFull`` when none is free."""
        if self._closing or self._claimed >= self.limit:
            raise StreamsFull(self.limit, "log streams")
        self._claimed += 1
        taken = StreamSlot(self)
        try:
            yield taken
        finally:
            taken.detach()
            self._claimed -= 1

    def stop_all(self) -> None:
        """At shutdown: end every stream (its journalctl ends, then its handler returns)."""
        self._closing = True
        for follower in list(self._followers):
            follower.stop()


class StreamSlot:
    """A claimed slot, and the follower that uses it once journalctl runs."""

    def __init__(self, streams: LogStreams) -> None:
        self._streams = streams
        self._follower: Follower | None = None

    def attach(self, follower: Follower) -> None:
        self._follower = follower
        self._streams._followers.add(follower)
        if self._streams._closing:
            follower.stop()

    def detach(self) -> None:
        if self._follower is not None:
            self._streams._followers.discard(self._follower)
            self._follower = None


class WatchSlots:
    """The open watch streams (``services?watch=true``): counted against ``max_watches``.

    A watch costs no process, only a task and its socket, but each one renders every
    change it is told of, so their number is bounded too. Shutdown wakes every watch
    (``closing`` then says to end) rather than waiting for its client to go.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: set[Waiter] = set()
        self.closing = False

    @property
    def open(self) -> int:
        return len(self._open)

    @contextmanager
    def slot(self, waiter: Waiter) -> Iterator[None]:
        """One watch for as long as the block runs; ``StreamsFull`` when none is free."""
        if self.closing or len(self._open) >= self.limit:
            raise StreamsFull(self.limit, "watches")
        self._open.add(waiter)
        try:
            yield
        finally:
            self._open.discard(waiter)

    def stop_all(self) -> None:
        self.closing = True
        for waiter in list(self._open):
            waiter.wake()
