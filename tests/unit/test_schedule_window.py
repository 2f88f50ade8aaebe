"""A schedule's answers, kept between fire times, are croniter's own at every moment."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from croniter import croniter

from pockestrator.controllers.snapshots.schedule import last_fire, next_due

START = datetime(2026, 12, 2, 11, 58, 30, tzinfo=UTC)


def croniters(expression: str, at: datetime) -> tuple[datetime, datetime]:
    before = croniter(expression, at + timedelta(seconds=1)).get_prev(datetime)
    return before.astimezone(UTC), croniter(expression, at).get_next(datetime).astimezone(UTC)


@pytest.mark.parametrize("expression", ["0 * * * *", "*/5 * * * *", "30 2 * * 1", "* * * * *"])
def test_the_kept_answers_are_croniters_forwards_backwards_and_on_fire_times(
    expression: str,
) -> None:
    steps = [timedelta(seconds=s) for s in (0, 29, 30, 31, 59, 60, 61, 300, 3600, 7 * 86400)]
    moments = [START + step for step in steps]
    moments += [START.replace(minute=0, second=0) + timedelta(hours=h) for h in range(3)]
    for at in [*moments, *reversed(moments), *moments]:  # the cache moved both ways
        assert (last_fire(expression, at), next_due(expression, at)) == croniters(expression, at), (
            expression,
            at,
        )
