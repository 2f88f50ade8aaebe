"""The injectable clock: the system's readings, and a fake one that moves only when told."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta, timezone

import pytest

from pockestrator.clock import FAKE_EPOCH, SYSTEM_CLOCK, FakeClock, utc_now


def test_the_system_clock_reads_aware_utc_wall_time() -> None:
    before = datetime.now(UTC)
    now = SYSTEM_CLOCK.now()
    assert now.utcoffset() == timedelta(0)
    assert before <= now <= datetime.now(UTC)
    assert before <= utc_now()


def test_the_system_clocks_monotonic_time_is_the_machines() -> None:
    before = time.monotonic()
    reading = SYSTEM_CLOCK.monotonic()
    assert before <= reading <= time.monotonic()


def test_a_fake_clock_stands_still_until_it_is_advanced() -> None:
    clock = FakeClock()
    assert clock.now() == FAKE_EPOCH and clock.monotonic() == 0.0
    time.sleep(0.01)
    assert clock.now() == FAKE_EPOCH and clock.monotonic() == 0.0


def test_advancing_a_fake_clock_moves_both_readings_by_the_same_amount() -> None:
    clock = FakeClock(datetime(2030, 1, 1, tzinfo=UTC), monotonic=100.0)
    clock.advance(0.25)
    clock.advance(1.5)
    assert clock.now() == datetime(2030, 1, 1, 0, 0, 1, 750000, tzinfo=UTC)
    assert clock.monotonic() == 101.75


def test_a_fake_clock_does_not_go_back() -> None:
    clock = FakeClock()
    with pytest.raises(ValueError, match="does not go back"):
        clock.advance(-1)
    assert clock.now() == FAKE_EPOCH


def test_a_fake_clock_starts_in_utc_even_when_given_another_zone() -> None:
    start = datetime(2030, 1, 1, 3, 0, tzinfo=timezone(timedelta(hours=3)))
    clock = FakeClock(start)
    assert clock.now() == datetime(2030, 1, 1, 0, 0, tzinfo=UTC)
    assert clock.now().tzinfo is UTC
    with pytest.raises(ValueError, match="aware"):
        FakeClock(datetime(2030, 1, 1))
