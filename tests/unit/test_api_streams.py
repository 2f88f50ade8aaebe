"""The log streams' slots: claimed at once, never more than the cap, ended at shutdown.

The follower here stands in for a journalctl one only in what the slots use of it (``stop``);
tests/integration/test_api_services.py runs real streams against the cap.
"""

from __future__ import annotations

from contextlib import ExitStack
from typing import cast

import pytest

from pockestrator.api.streams import RETRY_AFTER_SECONDS, LogStreams, StreamsFull
from pockestrator.journal import LogFollower
from pockestrator.specs.errors import ErrorCode


class Follower:
    def __init__(self) -> None:
        self.stopped = False

    def stop(self) -> None:
        self.stopped = True


def follower() -> tuple[Follower, LogFollower]:
    made = Follower()
    return made, cast(LogFollower, made)


def test_slots_past_the_cap_are_refused_until_one_is_released() -> None:
    streams = LogStreams(limit=3)
    with ExitStack() as held:
        for _ in range(3):
            held.enter_context(streams.slot())
        assert streams.open == 3
        with pytest.raises(StreamsFull), streams.slot():
            pass
        assert streams.open == 3
    assert streams.open == 0
    with streams.slot():
        assert streams.open == 1


def test_a_slot_is_released_when_its_stream_fails() -> None:
    streams = LogStreams(limit=1)
    with pytest.raises(RuntimeError), streams.slot():
        raise RuntimeError("journalctl would not start")
    assert streams.open == 0


def test_shutdown_stops_every_follower_and_refuses_new_streams() -> None:
    streams = LogStreams(limit=5)
    first, first_as_follower = follower()
    with streams.slot() as slot:
        slot.attach(first_as_follower)
        streams.stop_all()
        assert first.stopped
        with pytest.raises(StreamsFull), streams.slot():
            pass


def test_a_follower_that_starts_after_shutdown_began_is_stopped_at_once() -> None:
    streams = LogStreams(limit=5)
    late, late_as_follower = follower()
    with streams.slot() as slot:
        streams.stop_all()  # the stream's journalctl was still starting
        slot.attach(late_as_follower)
        assert late.stopped


def test_a_released_slot_forgets_its_follower() -> None:
    streams = LogStreams(limit=5)
    gone, gone_as_follower = follower()
    with streams.slot() as slot:
        slot.attach(gone_as_follower)
    streams.stop_all()
    assert not gone.stopped


def test_a_refused_slot_is_the_503_that_names_the_cap_and_when_to_retry() -> None:
    streams = LogStreams(limit=2)
    with streams.slot(), streams.slot(), pytest.raises(StreamsFull) as refused, streams.slot():
        pass
    assert (refused.value.status, refused.value.code) == (503, ErrorCode.TOO_MANY_STREAMS)
    assert refused.value.message == "At most 2 log streams at once; try again later"
    assert refused.value.headers == {"Retry-After": str(RETRY_AFTER_SECONDS)}
