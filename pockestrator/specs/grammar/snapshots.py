"""Backups' names and times: a snapshot's id, a backup target's name, a deleted
service's archive id, and the cron schedule snapshots are taken on.
"""

from __future__ import annotations

from croniter import croniter

from pockestrator.specs.errors import ErrorCode
from pockestrator.specs.grammar.pattern import GrammarError, Pattern, check_pattern

# A snapshot's id: the UTC second it was taken, with -1, -2 ... for two in one second.
SNAPSHOT_ID = Pattern(r"[0-9]{8}T[0-9]{6}Z(?:-[0-9]{1,4})?")


def check_snapshot_id(value: str) -> str:
    why = f"{value[:40]!r} is not a backup id (the UTC second it was taken: 20261202T031500Z)"
    return check_pattern(value, SNAPSHOT_ID, ErrorCode.INVALID_VALUE, why)


# A backup target's name (the agent's ``backup_targets``); "local" is the snapshot folder.
TARGET_NAME = Pattern(r"[a-z](?:[a-z0-9-]{0,30}[a-z0-9])?")
LOCAL_TARGET = "local"


def check_target_name(value: str) -> str:
    why = (
        f"{value[:40]!r} is not a backup target's name: lowercase letters, digits and "
        "'-', starting with a letter, at most 32 characters"
    )
    return check_pattern(value, TARGET_NAME, ErrorCode.INVALID_TARGET_NAME, why)


ARCHIVE_ID = Pattern(
    r"(?P<service>[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?)-(?P<stamp>[0-9]{8}T[0-9]{6}Z)(?:-[0-9]{1,4})?"
)


def check_archive_id(value: str) -> str:
    """The name of a deleted service's archived folder: ``<name>-<UTC stamp>[-n]``."""
    why = f"{value[:80]!r} is not an archive id (<name>-<UTC second>: blog-20261202T031500Z)"
    return check_pattern(value, ARCHIVE_ID, ErrorCode.INVALID_VALUE, why)


SCHEDULE_MACROS = ("@hourly", "@daily", "@midnight", "@weekly", "@monthly", "@yearly")


_CRON_FIELD = r"[0-9A-Za-z*,/?#-]+"
SCHEDULE_SHAPE = Pattern(
    rf"@(?:hourly|daily|midnight|weekly|monthly|yearly)|{_CRON_FIELD}(?: {_CRON_FIELD}){{4}}"
)


def check_schedule(value: str) -> str:
    """A five-field cron expression (minute hour day month weekday, UTC) or a macro.

    Six and seven fields (seconds, years) are refused: a snapshot a second is not a
    schedule. croniter (a maintained library, not a parser of ours) judges the fields.
    """
    fields = value.split()
    valid = SCHEDULE_SHAPE.fullmatch(value) is not None and (
        (len(fields) == 1 and value in SCHEDULE_MACROS)
        or (len(fields) == 5 and len(value) <= 100 and croniter.is_valid(value))
    )
    if not valid:
        raise GrammarError(
            ErrorCode.INVALID_SCHEDULE,
            f"{value[:60]!r} is not a schedule: five cron fields such as '0 3 * * *' "
            "(minute hour day month weekday, UTC) or @hourly, @daily, @weekly, @monthly",
        )
    return value
