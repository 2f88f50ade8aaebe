"""The open log streams: counted against a cap, each slot taken before its journalctl starts.

Each stream is one ``journalctl --follow`` process reading the journal for as long as its
client stays, so the agent caps them (``max_log_streams``). A slot is claimed at once, before
anything is awaited: a count of running followers, checked and added to around the
``await`` that starts one, would let requests that arrive together all pass it. Shutdown
ends every stream, and one whose journalctl is still starting is ended as soon as it runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from pockestrator.journal import LogFollower


class StreamsFull(Exception):
    """Every slot is taken (or the API is shutting down)."""


class LogStreams:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._claimed = 0
        self._followers: set[LogFollower] = set()
        self._closing = False

    @property
    def open(self) -> int:
        """Slots taken now: streams running and starting."""
        return self._claimed

    @contextmanager
    def slot(self) -> Iterator[StreamSlot]:
        """One stream's slot for as long as the block runs; ``StreamsFull`` when none is free."""
        if self._closing or self._claimed >= self.limit:
            raise StreamsFull
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
        self._follower: LogFollower | None = None

    def attach(self, follower: LogFollower) -> None:
        self._follower = follower
        self._streams._followers.add(follower)
        if self._streams._closing:
            follower.stop()

    def detach(self) -> None:
        if self._follower is not None:
            self._streams._followers.discard(self._follower)
            self._follower = None
