"""The open event streams: woken by each new event's commit, capped, all ended at shutdown."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from pockestrator.api.event_feed import EventFeed
from pockestrator.api.streams import StreamsFull
from pockestrator.specs.store import Store


async def test_a_new_event_wakes_every_open_stream(tmp_path: Path) -> None:
    store = Store(tmp_path / "pockestrator.db")
    feed = EventFeed(limit=4)
    feed.attach(store)
    try:
        with feed.subscription() as first, feed.subscription() as second:
            assert feed.open == 2
            store.add_event("blog", "reconciled", "x")
            await asyncio.wait_for(asyncio.gather(first.wait(), second.wait()), 5)
        assert feed.open == 0
    finally:
        store.close()


async def test_streams_past_the_cap_are_refused_and_a_freed_slot_is_taken_again() -> None:
    feed = EventFeed(limit=1)
    with feed.subscription(), pytest.raises(StreamsFull), feed.subscription():
        pass
    with feed.subscription():
        assert feed.open == 1


async def test_shutdown_wakes_every_stream_and_refuses_new_ones(tmp_path: Path) -> None:
    store = Store(tmp_path / "pockestrator.db")
    feed = EventFeed(limit=4)
    feed.attach(store)
    try:
        with feed.subscription() as waiting:
            feed.close()
            assert waiting.is_set() and feed.closing
            store.add_event("blog", "reconciled", "heard by nobody")  # no listener left
        with pytest.raises(StreamsFull), feed.subscription():
            pass
    finally:
        store.close()
