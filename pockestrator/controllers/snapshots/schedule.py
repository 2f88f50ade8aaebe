"""When a scheduled snapshot (or verification) is due: cron expressions, read by croniter.

A schedule (``specs.grammar.check_schedule`` says what one is) is in UTC. The reconciler
asks two questions, both pure: is one due now (``is_due``: a fire time has passed since
the last one), and when to look again (``next_due``).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from croniter import croniter

# The fire times on either side of the last moment asked about, by expression: every
# reconcile asks both questions, and croniter took most of a quiet reconcile's backup
# look (the answers only change once a fire time passes).
_WINDOWS: dict[str, tuple[datetime, datetime]] = {}
_WINDOWS_MAX = 1024


def _window(expression: str, at: datetime) -> tuple[datetime, datetime]:
    """The latest fire time at or before ``at`` and the first one strictly after it."""
    at = at.astimezone(UTC)
    known = _WINDOWS.get(expression)
    if known is not None and known[0] <= at < known[1]:
        return known
    # croniter's get_prev is strictly before its start: start a second later, so that a
    # fire time equal to ``at`` (schedules have whole minutes) counts.
    before = croniter(expression, at + timedelta(seconds=1)).get_prev(datetime).astimezone(UTC)
    after = croniter(expression, at).get_next(datetime).astimezone(UTC)
    if len(_WINDOWS) >= _WINDOWS_MAX:
        _WINDOWS.clear()
    _WINDOWS[expression] = (before, after)
    return before, after


def next_due(expression: str, after: datetime) -> datetime:
    """The first fire time strictly after ``after``."""
    return _window(expression, after)[1]


def last_fire(expression: str, at: datetime) -> datetime:
    """The latest fire time at or before ``at``."""
    return _window(expression, at)[0]


def is_due(expression: str, last: datetime | None, since: datetime, now: datetime) -> bool:
    """A fire time has passed since the last snapshot (or since ``since`` when none)."""
    return last_fire(expression, now) > (last or since)
