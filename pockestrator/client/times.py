"""``--since`` and ``--until`` as people type them, to the UTC moment the API takes.

Accepted, as journalctl and docker take them:

- a duration back from now: ``10m``, ``-1h``, ``1h30m``, ``2d``, ``90s`` (the sign is
  optional: both mean "ago", as ``docker logs --since 10m`` and ``journalctl -S -1h``);
- ``now``, ``today``, ``yesterday`` (local midnight);
- an ISO 8601 time with a zone (``2025-07-31T19:30:00Z``, ``...+02:00``): that moment;
- a time without a zone (``2025-07-31 19:30``, ``2025-07-31T19:30:00``, ``2025-07-31``,
  ``19:30``, ``19:30:15``): **local** time, as journalctl reads it (a time alone is today).

``parse_moment`` is pure (``now`` and the local zone are arguments) and table-tested.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, time, timedelta, tzinfo

_DURATION = re.compile(r"^[-+]?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
_TIME_ONLY = re.compile(r"^\d{1,2}:\d{2}(?::\d{2})?$")
# Past this a duration means nothing for a journal (it starts in 1971 at the earliest).
DURATION_DAYS_MAX = 36500


class BadMoment(ValueError):
    """Text that is none of the accepted forms; the message lists them."""


HELP = (
    "10m, -1h, 1h30m or 2d ago; now, today, yesterday; 2025-07-31T19:30:00Z (ISO, with a"
    " zone); or 2025-07-31 19:30 / 19:30 (no zone: local time, as journalctl)"
)


def _duration(text: str) -> timedelta | None:
    match = _DURATION.match(text)
    if match is None or not any(match.groups()):
        return None
    days, hours, minutes, seconds = (int(part or 0) for part in match.groups())
    if days > DURATION_DAYS_MAX or hours > 24 * DURATION_DAYS_MAX:
        raise BadMoment(f"{text!r} reaches back too far")
    return timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)


def parse_moment(text: str, now: datetime, local: tzinfo) -> datetime:
    """The UTC moment ``text`` means at ``now`` (aware) in the zone ``local``."""
    value = text.strip()
    if not value:
        raise BadMoment(f"an empty time; use {HELP}")
    back = _duration(value)
    if back is not None:
        return (now - back).astimezone(UTC)
    local_now = now.astimezone(local)
    if value == "now":
        return now.astimezone(UTC)
    days_back = {"today": 0, "yesterday": 1}.get(value)
    if days_back is not None:
        day = local_now.date() - timedelta(days=days_back)
        return datetime.combine(day, time(), local).astimezone(UTC)
    if _TIME_ONLY.match(value):
        hour, minute, second = [*(int(p) for p in value.split(":")), 0][:3]
        try:
            clock = time(hour, minute, second)
        except ValueError:
            raise BadMoment(f"{text!r} is not a time of day") from None
        return datetime.combine(local_now.date(), clock, local).astimezone(UTC)
    try:
        moment = datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        raise BadMoment(f"{text!r} is not a time; use {HELP}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=local)
    if moment.year < 1971:
        raise BadMoment(f"{text!r} is before 1971, older than any journal")
    return moment.astimezone(UTC)


def api_time(moment: datetime) -> str:
    """A UTC moment as the API's ``since``/``until`` takes it."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
