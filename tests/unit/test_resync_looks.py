"""The resync round's decisions: which statuses ask for a reconcile, the full turns, and
a look that equals itself only while nothing about the files or the unit changed."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pockestrator.agent.observe_round import (
    FULL_EVERY,
    Look,
    file_stamp,
    folder_stamp,
    full_turn,
    status_asks,
    unit_states,
)
from pockestrator.controllers.systemd.unit_state import UnitRow, UnitStatus
from pockestrator.specs.store import ServiceStatus

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
CHECKED = NOW - timedelta(seconds=10)


def settled(**fields: object) -> ServiceStatus:
    values: dict[str, object] = {
        "state": "active",
        "health_ok": True,
        "settings_checked_at": CHECKED,
    }
    values.update(fields)
    return ServiceStatus("app", **values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("status", "asleep", "asks"),
    [
        (settled(), False, None),
        (settled(state="inactive", settings_checked_at=None), False, None),
        (None, False, "status"),
        (settled(state="deploying"), False, "status"),
        (settled(state="error"), False, "status"),
        (settled(last_error="Caddy refused the site"), False, "status"),
        (settled(health_ok=False), False, "status"),
        # The instance's settings are read again once settings_interval (300 s) passed...
        (settled(settings_checked_at=NOW - timedelta(seconds=300)), False, "settings"),
        (settled(settings_checked_at=None), False, "settings"),
        # ...but not while it sleeps (its API would wake it)...
        (settled(settings_checked_at=None), True, None),
        # ...and a settings check is a full reconcile when something else is due too.
        (settled(settings_checked_at=None, health_ok=False), False, "status"),
        (
            settled(
                settings_checked_at=None,
                certificate_checked_at=NOW - timedelta(seconds=61),
                certificate_not_before=NOW - timedelta(days=80),
                certificate_not_after=NOW + timedelta(days=10),
            ),
            False,
            "status",
        ),
        # A served certificate is asked for again after a resync, when due for renewal.
        (
            settled(
                certificate_checked_at=NOW - timedelta(seconds=61),
                certificate_not_before=NOW - timedelta(days=80),
                certificate_not_after=NOW + timedelta(days=10),
            ),
            False,
            "status",
        ),
        (
            settled(
                certificate_checked_at=NOW - timedelta(seconds=61),
                certificate_not_before=NOW - timedelta(days=10),
                certificate_not_after=NOW + timedelta(days=80),
            ),
            False,
            None,
        ),
        (settled(certificate_checked_at=NOW - timedelta(seconds=5)), False, None),
    ],
)
def test_a_status_asks_for_a_reconcile_only_when_something_is_unsettled_or_due(
    status: ServiceStatus | None, asleep: bool, asks: str | None
) -> None:
    assert (
        status_asks(status, NOW, settings_interval=300.0, certificate_interval=60.0, asleep=asleep)
        == asks
    )


def test_every_name_has_exactly_one_full_turn_in_every_run_of_rounds() -> None:
    names = [f"app{index}" for index in range(500)]
    for start in (0, 7, 123):
        turns = {n: sum(full_turn(n, r) for r in range(start, start + FULL_EVERY)) for n in names}
        assert set(turns.values()) == {1}
    per_round = [sum(full_turn(n, r) for n in names) for r in range(FULL_EVERY)]
    assert max(per_round) < 2 * 500 / FULL_EVERY  # spread, not all in one round


def status(active: str, sub: str, load: str = "loaded", job: bool = False) -> UnitStatus:
    return UnitStatus(
        name="app-pocketbase.service",
        load_state=load,
        active_state=active,
        sub_state=sub,
        unit_file_state="enabled",
        main_pid=42,
        n_restarts=0,
        exec_main_status=None,
        result="success",
        memory_current=1,
        cpu_usage_nsec=1,
        need_daemon_reload=False,
        fragment_path=None,
        active_enter_timestamp_usec=1,
        job_pending=job,
    )


def test_a_unit_reads_the_same_from_its_properties_and_from_its_row() -> None:
    row = UnitRow("app-pocketbase.service", "loaded", "active", "running")
    assert unit_states(status("active", "running")) == unit_states(row)
    assert unit_states(status("inactive", "dead")) != unit_states(row)
    assert unit_states(status("active", "running", job=True)) != unit_states(row)
    # Unknown to systemd, either way.
    assert unit_states(None) is None
    assert unit_states(UnitRow("x.service", "not-found", "inactive", "dead")) is None


def test_any_write_to_a_file_changes_its_stamp_even_with_its_times_put_back(
    tmp_path: Path,
) -> None:
    path = tmp_path / "app-pocketbase.service"
    path.write_text("[Unit]\n")
    first = file_stamp(path)
    assert first is not None and file_stamp(path) == first
    info = path.stat()
    path.write_text("[Unit]\n")  # the same text, written again
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns))  # and its times put back
    assert file_stamp(path) != first
    second = file_stamp(path)
    path.chmod(0o666)
    assert file_stamp(path) != second
    path.unlink()
    assert file_stamp(path) is None
    look = Look((first,), unit_states(status("active", "running")))
    assert look == Look((first,), unit_states(status("active", "running")))
    assert look != Look((second,), look.unit)


def test_a_folder_stamp_ignores_what_happens_inside(tmp_path: Path) -> None:
    folder = tmp_path / "app"
    folder.mkdir()
    before = folder_stamp(folder)
    (folder / "pb_data").mkdir()
    assert folder_stamp(folder) == before
    folder.chmod(0o700)
    assert folder_stamp(folder) != before
