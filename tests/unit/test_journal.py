"""journalctl arguments and journal entries: pure parts of pockestrator/journal.py.

The real journal is read in tests/integration/test_api_services.py; here are the argument
lists (what reaches the subprocess, element by element) and the parsing of its JSON lines.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from pockestrator.journal import (
    MAX_LINES,
    MESSAGE_MAX,
    JournalQuery,
    LogEntry,
    UnitScope,
    is_cursor,
    journal_matches,
    journalctl_arguments,
    parse_entry,
)
from pockestrator.specs.grammar import GrammarError

CURSOR = (
    "s=280fcb0bd5714850a2f58bcd4005a8ab;i=1e0;b=2709976250d94b0ab63883650cf7390f;"
    "m=627bb733;t=661316e8aab02;x=8922d9f79bf3d604"
)


def arguments(query: JournalQuery, **kwargs: object) -> list[str]:
    options: dict[str, object] = {"journal_dir": None, "scope": UnitScope("system", "")}
    options.update(kwargs)
    return journalctl_arguments(query, **options)  # type: ignore[arg-type]


def test_matches_are_joined_with_plus_so_journalctl_ors_them() -> None:
    assert journal_matches("app", UnitScope("system", "")) == [
        "_SYSTEMD_UNIT=app-pocketbase.service",
        "+",
        "UNIT=app-pocketbase.service",
        "_PID=1",
        "+",
        "_SYSTEMD_CGROUP=/system.slice/app-pocketbase.service",
    ]


def test_a_user_manager_matches_the_user_unit_and_its_cgroup_under_the_managers() -> None:
    assert journal_matches("app", UnitScope("user", "/pockestrator-8ee5b3728efd")) == [
        "_SYSTEMD_USER_UNIT=app-pocketbase.service",
        "+",
        "_SYSTEMD_CGROUP=/pockestrator-8ee5b3728efd/app.slice/app-pocketbase.service",
    ]


@pytest.mark.parametrize("manager", ["system", "user"])
def test_only_fields_journald_sets_itself_are_matched(manager: str) -> None:
    # SYSLOG_IDENTIFIER, UNIT= alone, and the like can be written by any local process.
    for cgroup in (None, "", "/user.slice/user-1000.slice/user@1000.service"):
        matches = journal_matches("app", UnitScope(manager, cgroup))  # type: ignore[arg-type]
        fields = {term.split("=", 1)[0] for term in matches if term != "+"}
        assert fields <= {"_SYSTEMD_UNIT", "_SYSTEMD_USER_UNIT", "_SYSTEMD_CGROUP", "UNIT", "_PID"}
        assert ("UNIT" in fields) == (manager == "system") and ("UNIT" in fields) <= (
            "_PID=1" in matches
        )
        assert ("_SYSTEMD_CGROUP" in fields) == (cgroup is not None)


@pytest.mark.parametrize(
    "cgroup", ["relative", "/a b", "/x\n", "/--all /y", "/a;b", "/" + "x" * 1100]
)
def test_a_cgroup_that_is_not_a_path_is_refused(cgroup: str) -> None:
    with pytest.raises(ValueError, match="not a cgroup path"):
        UnitScope("user", cgroup)


@pytest.mark.parametrize("name", ["a b", "--all", "app;rm", "App", "x" * 60, "app\n"])
def test_a_name_outside_the_grammar_never_becomes_an_argument(name: str) -> None:
    with pytest.raises(GrammarError):
        journal_matches(name, UnitScope("system", ""))


def test_the_sandbox_reads_its_own_journal_directory(tmp_path: Path) -> None:
    built = arguments(JournalQuery("app", lines=5), journal_dir=tmp_path)
    assert built[0] == "journalctl"
    assert f"--directory={tmp_path}" in built
    assert "--output=json" in built and "--no-pager" in built
    assert "--lines=5" in built
    assert "--follow" not in built


def test_production_reads_the_default_journal() -> None:
    assert not any(arg.startswith("--directory") for arg in arguments(JournalQuery("app")))


def test_since_is_passed_as_epoch_seconds_whatever_the_zone() -> None:
    moment = datetime(2025, 7, 31, 21, 30, tzinfo=timezone(timedelta(hours=2)))
    built = arguments(JournalQuery("app", since=moment))
    assert f"--since=@{moment.timestamp():.6f}" in built
    naive = arguments(JournalQuery("app", since=datetime(2025, 7, 31, 19, 30)))
    assert f"--since=@{datetime(2025, 7, 31, 19, 30, tzinfo=UTC).timestamp():.6f}" in naive


def test_follow_and_cursor_are_passed_through() -> None:
    built = arguments(JournalQuery("app", after_cursor=CURSOR, follow=True))
    assert f"--after-cursor={CURSOR}" in built
    assert "--follow" in built


@pytest.mark.parametrize("cursor", ["", "a b", "x\ny", "'", "s=1;" + "x" * 600])
def test_a_malformed_cursor_is_refused(cursor: str) -> None:
    assert not is_cursor(cursor)
    with pytest.raises(ValueError):
        arguments(JournalQuery("app", after_cursor=cursor))


def test_a_cursor_stays_one_argument_whatever_it_holds() -> None:
    sneaky = "s=1;--all"
    built = arguments(JournalQuery("app", after_cursor=sneaky))
    assert f"--after-cursor={sneaky}" in built
    assert "--all" in built  # the reader's own flag, once
    assert built.count("--all") == 1


@pytest.mark.parametrize("lines", [-1, MAX_LINES + 1])
def test_line_counts_are_bounded(lines: int) -> None:
    with pytest.raises(ValueError):
        arguments(JournalQuery("app", lines=lines))


def entry(**fields: object) -> str:
    data: dict[str, object] = {
        "__REALTIME_TIMESTAMP": "1753990215000000",
        "__CURSOR": CURSOR,
        "MESSAGE": "Server started at http://127.0.0.1:8080",
        "PRIORITY": "6",
        "SYSLOG_IDENTIFIER": "app-pocketbase",
        "_PID": "4242",
    }
    data.update(fields)
    return json.dumps({key: value for key, value in data.items() if value is not None})


def test_an_entry_has_timestamp_level_message_and_source() -> None:
    parsed = parse_entry(entry(), "app")
    assert parsed == LogEntry(
        timestamp=datetime(2025, 7, 31, 19, 30, 15, tzinfo=UTC),
        level="INFO",
        message="Server started at http://127.0.0.1:8080",
        source="pocketbase",
        cursor=CURSOR,
        pid=4242,
    )
    assert parsed.as_line() == "2025-07-31 19:30:15 [INFO] Server started at http://127.0.0.1:8080"


@pytest.mark.parametrize(
    ("priority", "level"),
    [
        ("0", "EMERG"),
        ("3", "ERROR"),
        ("4", "WARNING"),
        ("7", "DEBUG"),
        ("9", "INFO"),
        ("x", "INFO"),
    ],
)
def test_priority_becomes_a_level(priority: str, level: str) -> None:
    parsed = parse_entry(entry(PRIORITY=priority), "app")
    assert parsed is not None and parsed.level == level


def test_lines_from_others_keep_their_own_source() -> None:
    parsed = parse_entry(entry(SYSLOG_IDENTIFIER="systemd"), "app")
    assert parsed is not None and parsed.source == "systemd"
    parsed = parse_entry(entry(SYSLOG_IDENTIFIER=None, _COMM="pocketbase"), "app")
    assert parsed is not None and parsed.source == "pocketbase"


def test_binary_messages_arrive_as_byte_arrays_and_are_decoded() -> None:
    raw = [*"héllo".encode(), 0xFF]
    parsed = parse_entry(entry(MESSAGE=raw), "app")
    assert parsed is not None and parsed.message == "héllo\ufffd"


def test_huge_messages_are_truncated() -> None:
    parsed = parse_entry(entry(MESSAGE="x" * (MESSAGE_MAX + 100)), "app")
    assert parsed is not None
    assert parsed.message.startswith("x" * MESSAGE_MAX) and parsed.message.endswith("[truncated]")


@pytest.mark.parametrize(
    "line",
    ["", "not json", "[]", "42", entry(__REALTIME_TIMESTAMP=None), entry(__REALTIME_TIMESTAMP="x")],
)
def test_lines_that_are_not_entries_are_skipped(line: str) -> None:
    assert parse_entry(line, "app") is None


def test_a_cursor_that_is_not_one_is_dropped_not_trusted() -> None:
    parsed = parse_entry(entry(__CURSOR="a b"), "app")
    assert parsed is not None and parsed.cursor is None
