"""Snapshots' pure rules: the manifest, retention, and schedules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pockestrator.controllers.snapshots.manifest import (
    Manifest,
    ManifestError,
    build_manifest,
)
from pockestrator.controllers.snapshots.retention import Candidate, to_prune
from pockestrator.controllers.snapshots.schedule import is_due, last_fire, next_due
from pockestrator.files import HashedFile
from pockestrator.specs.backups import KeepPolicy as Keep
from pockestrator.specs.errors import ErrorCode
from pockestrator.specs.grammar import GrammarError, check_schedule

AT = datetime(2026, 12, 2, 3, 15, tzinfo=UTC)
SHA = "a" * 64


def manifest(**changes: object) -> Manifest:
    fields: dict[str, object] = {
        "service": "app",
        "snapshot_id": "20261202T031500Z",
        "kind": "scheduled",
        "created_at": AT,
        "pocketbase_version": "0.40.6",
        "files": [HashedFile("pb_data/data.db", 4096, SHA), HashedFile("pb_hooks/a.pb.js", 3, SHA)],
    }
    fields.update(changes)
    return build_manifest(**fields)  # type: ignore[arg-type]


def test_a_manifest_reads_back_exactly_what_was_written() -> None:
    written = manifest()
    assert Manifest.from_json(written.to_json()) == written
    assert written.size == 4099
    assert written.file("pb_data/data.db") == HashedFile("pb_data/data.db", 4096, SHA)


def test_files_are_listed_in_path_order_whatever_order_they_came_in() -> None:
    built = manifest(files=[HashedFile("z", 1, SHA), HashedFile("a/b", 2, SHA)])
    assert [entry.path for entry in built.files] == ["a/b", "z"]


@pytest.mark.parametrize(
    "path", ["../etc/passwd", "/etc/passwd", "a/../b", "a//b", "./a", "a/", "", "a\nb", "a\x00"]
)
def test_a_path_that_could_leave_the_snapshot_is_refused(path: str) -> None:
    with pytest.raises(ManifestError, match="not a path inside a snapshot"):
        manifest(files=[HashedFile(path, 1, SHA)])


def test_any_name_without_control_characters_is_a_path() -> None:
    assert manifest(files=[HashedFile("pb_hooks/my hook é.pb.js", 1, SHA)]).files[0].path == (
        "pb_hooks/my hook é.pb.js"
    )


def test_a_file_listed_twice_is_refused() -> None:
    with pytest.raises(ManifestError, match="twice"):
        manifest(files=[HashedFile("a", 1, SHA), HashedFile("a", 1, SHA)])


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.update(extra=1), "extra"),
        (lambda d: d.update(format=2), "format"),
        (lambda d: d.update(snapshot_id="yesterday"), "not a backup id"),
        (lambda d: d.update(kind="weekly"), "kind"),
        (lambda d: d["files"][0].update(sha256="A" * 64), "SHA-256"),
        (lambda d: d["files"][0].update(size=-1), "size"),
        (lambda d: d["files"][0].update(size="12"), "size"),
        (lambda d: d["files"][0].update(path="../x"), "not a path inside"),
        (lambda d: d["files"].reverse(), "sorted"),
        (lambda d: d.update(created_at="2026-12-02T03:15:00"), "time zone"),
    ],
)
def test_a_manifest_that_is_not_ours_or_lies_is_refused(edit: object, message: str) -> None:
    import json

    data = json.loads(manifest().to_json())
    edit(data)  # type: ignore[operator]
    with pytest.raises(ManifestError, match=message):
        Manifest.from_json(json.dumps(data))


def candidate(
    day: int, hour: int = 3, kind: str = "scheduled", verified: bool = False
) -> Candidate:
    at = datetime(2026, 11, 1, hour, tzinfo=UTC) + timedelta(days=day)
    return Candidate(at.strftime("%Y%m%dT%H%M%SZ"), kind, at, verified)  # type: ignore[arg-type]


def ids(candidates: list[Candidate]) -> list[str]:
    return [c.snapshot_id for c in candidates]


def test_the_newest_last_are_kept_and_the_rest_pruned_oldest_first() -> None:
    snapshots = [candidate(day) for day in range(10)]
    pruned = to_prune(snapshots, Keep(last=3, daily=0, weekly=0, monthly=0))
    assert pruned == ids(snapshots[:7])


def test_daily_keeps_the_newest_of_each_of_the_newest_days() -> None:
    snapshots = [candidate(day, hour) for day in range(4) for hour in (1, 13)]
    pruned = to_prune(snapshots, Keep(last=0, daily=2, weekly=0, monthly=0))
    kept = set(ids(snapshots)) - set(pruned)
    assert kept == {candidate(3, 13).snapshot_id, candidate(2, 13).snapshot_id}


def test_weekly_and_monthly_keep_one_per_iso_week_and_per_month() -> None:
    snapshots = [candidate(day) for day in range(0, 70)]
    pruned = to_prune(snapshots, Keep(last=0, daily=0, weekly=2, monthly=3))
    kept = sorted(set(ids(snapshots)) - set(pruned))
    # Newest of the two newest ISO weeks, and of November, December and January.
    assert kept == [
        "20261130T030000Z",  # the last of November
        "20261231T030000Z",  # the last of December
        "20270103T030000Z",  # Sunday: the end of ISO week 53 of 2026
        "20270109T030000Z",  # the newest overall (and of January, and of its week)
    ]


def test_manual_snapshots_and_imports_are_never_pruned_nor_counted() -> None:
    snapshots = [candidate(day) for day in range(5)] + [
        candidate(0, 5, "manual"),
        candidate(1, 5, "import"),
    ]
    pruned = to_prune(snapshots, Keep(last=1, daily=0, weekly=0, monthly=0))
    assert pruned == ids(snapshots[:4])


def test_the_newest_and_the_newest_verified_survive_any_rules() -> None:
    snapshots = [candidate(0, verified=True), candidate(1), candidate(2)]
    assert to_prune(snapshots, Keep(last=0, daily=0, weekly=0, monthly=0)) == [
        snapshots[1].snapshot_id
    ]
    assert to_prune([], Keep()) == []


@pytest.mark.parametrize("expression", ["0 3 * * *", "*/15 * * * *", "@daily", "@hourly"])
def test_five_fields_or_a_macro_is_a_schedule(expression: str) -> None:
    assert check_schedule(expression) == expression


@pytest.mark.parametrize(
    "expression", ["", "daily", "* * * * * *", "0 3 * * * 2027", "61 * * * *", " 0 3 * * *"]
)
def test_anything_else_is_refused_with_what_a_schedule_looks_like(expression: str) -> None:
    with pytest.raises(GrammarError, match="five cron fields") as raised:
        check_schedule(expression)
    assert raised.value.code is ErrorCode.INVALID_SCHEDULE


def test_the_next_fire_time_is_strictly_after_and_the_last_one_at_or_before() -> None:
    assert next_due("0 3 * * *", AT) == datetime(2026, 12, 3, 3, tzinfo=UTC)
    assert last_fire("0 3 * * *", AT) == datetime(2026, 12, 2, 3, tzinfo=UTC)
    exactly = datetime(2026, 12, 2, 3, tzinfo=UTC)
    assert last_fire("0 3 * * *", exactly) == exactly
    assert next_due("0 3 * * *", exactly) == datetime(2026, 12, 3, 3, tzinfo=UTC)


@pytest.mark.parametrize(
    ("last", "now", "due"),
    [
        (None, AT, True),  # a fire time (03:00) passed since the service was made (01:00)
        (datetime(2026, 12, 2, 3, 0, 5, tzinfo=UTC), AT, False),  # taken at that fire time
        (datetime(2026, 12, 1, 3, tzinfo=UTC), AT, True),  # yesterday's: today's is due
        (None, datetime(2026, 12, 2, 2, 59, tzinfo=UTC), False),  # none passed yet
    ],
)
def test_a_snapshot_is_due_when_a_fire_time_passed_since_the_last(
    last: datetime | None, now: datetime, due: bool
) -> None:
    since = datetime(2026, 12, 2, 1, tzinfo=UTC)
    assert is_due("0 3 * * *", last, since, now) is due
