"""``--since``/``--until`` as journalctl and docker users type them (client/times.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from pockestrator.client.times import BadMoment, api_time, parse_moment

NOW = datetime(2026, 12, 2, 7, 30, 0, tzinfo=UTC)
BERLIN = timezone(timedelta(hours=1))  # a fixed zone: the test does not depend on the host


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10m", NOW - timedelta(minutes=10)),
        ("-1h", NOW - timedelta(hours=1)),
        ("+1h", NOW - timedelta(hours=1)),
        ("1h30m", NOW - timedelta(minutes=90)),
        ("2d", NOW - timedelta(days=2)),
        ("90s", NOW - timedelta(seconds=90)),
        ("now", NOW),
        # Local midnight of today and yesterday, in the given zone.
        ("today", datetime(2026, 12, 1, 23, 0, tzinfo=UTC)),
        ("yesterday", datetime(2026, 11, 30, 23, 0, tzinfo=UTC)),
        # No zone: local time, as journalctl reads it.
        ("2026-12-02 08:00", datetime(2026, 12, 2, 7, 0, tzinfo=UTC)),
        ("2026-12-02T08:00:30", datetime(2026, 12, 2, 7, 0, 30, tzinfo=UTC)),
        ("2026-12-02", datetime(2026, 12, 1, 23, 0, tzinfo=UTC)),
        ("08:15", datetime(2026, 12, 2, 7, 15, tzinfo=UTC)),
        ("08:15:20", datetime(2026, 12, 2, 7, 15, 20, tzinfo=UTC)),
        # A zone given is kept.
        ("2025-07-31T19:30:00Z", datetime(2025, 7, 31, 19, 30, tzinfo=UTC)),
        ("2025-07-31T19:30:00+02:00", datetime(2025, 7, 31, 17, 30, tzinfo=UTC)),
        ("  10m ", NOW - timedelta(minutes=10)),
    ],
)
def test_each_accepted_form_is_the_moment_it_means(text: str, expected: datetime) -> None:
    assert parse_moment(text, NOW, BERLIN) == expected


@pytest.mark.parametrize(
    "text", ["", "soon", "10x", "-", "1h-30m", "25:00", "2026-13-01", "1960-01-01", "99999999d"]
)
def test_other_text_is_refused_with_the_accepted_forms(text: str) -> None:
    with pytest.raises(BadMoment):
        parse_moment(text, NOW, BERLIN)


def test_the_api_gets_utc_with_a_z() -> None:
    moment = datetime(2025, 7, 31, 21, 30, tzinfo=timezone(timedelta(hours=2)))
    assert api_time(moment) == "2025-07-31T19:30:00.000000Z"
