"""``Snapshot.newer_than``: the one rule a restore and a new service's seed both refuse by,
a snapshot taken with a newer PocketBase than the one that would open its data."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from pockestrator.controllers.snapshots.folder import Snapshot
from pockestrator.controllers.snapshots.manifest import build_manifest


def taken_with(version: str | None) -> Snapshot:
    at = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
    manifest = build_manifest("blog", "20261202T120000Z", "manual", at, version, [])
    return Snapshot(Path("/nowhere"), manifest)


@pytest.mark.parametrize(
    ("taken", "running", "refused"),
    [
        ("0.23.4", "0.23.4", None),  # the same: fine
        ("0.23.4", "0.23.5", None),  # older data under a newer binary: its migrations run
        ("0.23.5", "0.23.4", "0.23.5"),
        ("0.24.0", "0.23.9", "0.24.0"),
        ("0.9.0", "0.10.0", None),  # compared as numbers, not as text
        ("0.10.0", "0.9.0", "0.10.0"),
        ("0.23.0", "0.23.0-rc.1", "0.23.0"),  # a release is newer than its candidate
        ("0.23.0-rc.1", "0.23.0", None),
        (None, "0.23.4", None),  # an old manifest that does not say: not refused
    ],
)
def test_a_snapshot_is_newer_than_a_version_only_when_its_pocketbase_is(
    taken: str | None, running: str, refused: str | None
) -> None:
    assert taken_with(taken).newer_than(running) == refused
