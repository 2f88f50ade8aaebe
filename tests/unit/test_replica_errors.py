"""Litestream's errors turned into an event (``agent.replica_errors``), and the journal
matches that read them: only the replica unit's own lines, the secret never repeated."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from pockestrator.agent.replica_errors import MESSAGE_MAX, error_report, litestream_errors
from pockestrator.journal import LogEntry, UnitScope, journal_matches

LINES = [
    'time=2026-12-02T09:55:23.713Z level=ERROR msg="sync error" system=store db=data.db '
    'error="ensure wal exists: disk I/O error (522)" consecutive_errors=1 backoff=1s',
    'time=2026-12-02T09:55:30.809Z level=INFO msg="compaction complete" level=1',
    'time=2026-12-02T09:55:31.000Z level=WARN msg="slow sync"',
    'level=ERROR msg="cannot open database"',
    'msg="an instance wrote level=ERRORS into a record" level=INFO',
]


def _entries(messages: list[str]) -> list[LogEntry]:
    at = datetime(2026, 12, 2, tzinfo=UTC)
    return [LogEntry(at, "INFO", message, "litestream") for message in messages]


def test_only_litestreams_error_level_lines_are_errors() -> None:
    assert litestream_errors(_entries(LINES)) == [LINES[0], LINES[3]]


def test_the_report_counts_the_errors_and_quotes_the_first_cut_short() -> None:
    message, details = error_report([LINES[0], LINES[3]], None)
    assert details == {"errors": 2, "first_error": LINES[0][:MESSAGE_MAX]}
    assert message.startswith("litestream reported 2 error(s)")
    assert "ensure wal exists" in message
    long_message, long_details = error_report(["level=ERROR " + "x" * 5000], None)
    assert len(str(long_details["first_error"])) == MESSAGE_MAX
    assert len(long_message) < MESSAGE_MAX + 100


def test_the_targets_secret_never_reaches_the_report() -> None:
    secret = "s3cr3t-key-0123456789"
    message, details = error_report([f"level=ERROR msg=auth error={secret}"], secret)
    assert secret not in message and secret not in str(details)
    assert "[secret]" in message


def test_a_replica_units_lines_are_matched_by_that_unit_alone() -> None:
    scope = UnitScope("user", "/sandbox/user@0.service")
    unit = "pockestrator-replica-ledger.service"
    assert journal_matches("ledger", scope, unit) == [
        f"_SYSTEMD_USER_UNIT={unit}",
        "+",
        f"_SYSTEMD_CGROUP=/sandbox/user@0.service/app.slice/{unit}",
    ]


@pytest.mark.parametrize(
    "unit",
    [
        "pocketbase-ledger.service",  # not one of the agent's units
        "pockestrator-replica-other.service",  # another service's
        "pockestrator-replica-ledger.service --output=cat",
        "pockestrator-replica-ledger.service\n",
    ],
)
def test_a_unit_that_is_not_the_agents_own_for_the_service_is_refused(unit: str) -> None:
    with pytest.raises(ValueError):
        journal_matches("ledger", UnitScope("system"), unit)
