"""When a scheduled snapshot (or verification) is due: cron expressions, read by croniter.

A schedule (``specs.grammar.check_schedule`` says what one is) is in UTC. The reconciler
asks two questions, both pure: is one due now (``is_due``: a fire time has passed since
the last one), and when to look again (``next_due``).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from croniter import croniter


def next_due(expression: str, after: datetime) -> datetime:
    """The first fire time strictly after ``after``."""
    return croniter(expression, after.astimezone(UTC)).get_next(datetime).astimezone(UTC)


def last_fire(expression: str, at: datetime) -> datetime:
    """The latest fire time at or before ``at``."""
    # croniter's get_prev is strictly before its start: start a second later, so that a
    # fire time equal to ``at`` (schedules have whole minutes) counts.
    start = at.astimezone(UTC) + timedelta(seconds=1)
    return croniter(expression, start).get_prev(datetime).astimezone(UTC)


def is_due(expression: str, last: datetime | None, since: datetime, now: datetime) -> bool:
    """A fire time has passed since the last snapshot (or since ``since`` when none)."""
    return last_fire(expression, now) > (last or since)
