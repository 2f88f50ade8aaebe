"""Which backups of a service's data there are, and which version wrote each (for downgrades)."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

from pockestrator.config import AgentConfig
from pockestrator.controllers.servicedirs.backups import DataBackup, list_backups
from pockestrator.controllers.servicedirs.folders import ServiceFolders


def folders_in(root: Path) -> ServiceFolders:
    return ServiceFolders(
        AgentConfig(base_dir=root / "lib" / "services", state_directory_root=root / "lib")
    )


def test_backups_are_listed_newest_first_with_the_version_that_wrote_them(tmp_path: Path) -> None:
    folders = folders_in(tmp_path)
    backups = folders.backups_dir / "blog"
    for name in (
        "pb_data-0.39.11-20260101T000000Z",
        "pb_data-0.40.6-20260301T101010Z",
        "pb_data-0.40.6-20260301T101010Z-1",
        "pb_data-0.23.0-rc12-20250505T050505Z",
    ):
        (backups / name).mkdir(parents=True)
    assert list_backups(folders, "blog") == [
        DataBackup(
            "0.40.6",
            datetime(2026, 3, 1, 10, 10, 10, tzinfo=UTC),
            backups / "pb_data-0.40.6-20260301T101010Z-1",
        ),
        DataBackup(
            "0.40.6",
            datetime(2026, 3, 1, 10, 10, 10, tzinfo=UTC),
            backups / "pb_data-0.40.6-20260301T101010Z",
        ),
        DataBackup(
            "0.39.11",
            datetime(2026, 1, 1, tzinfo=UTC),
            backups / "pb_data-0.39.11-20260101T000000Z",
        ),
        DataBackup(
            "0.23.0-rc12",
            datetime(2025, 5, 5, 5, 5, 5, tzinfo=UTC),
            backups / "pb_data-0.23.0-rc12-20250505T050505Z",
        ),
    ]


def test_what_belongs_to_no_version_is_not_offered(tmp_path: Path) -> None:
    folders = folders_in(tmp_path)
    backups = folders.backups_dir / "blog"
    for name in (
        "pb_data-20260101T000000Z",  # made before backups carried a version
        "pb_data-replaced-20260101T000000Z",  # data a rollback displaced
        ".pb_data-0.40.6-20260101T000000Z.partial",  # a backup still being written
        "pb_data-0.40.6-2026",  # not a stamp
    ):
        (backups / name).mkdir(parents=True)
    (backups / "pb_data-0.40.6-20260102T000000Z").write_text("a file, not a backup")
    os.symlink(tmp_path, backups / "pb_data-0.40.7-20260103T000000Z")
    assert list_backups(folders, "blog") == []


def test_a_service_without_backups_has_none(tmp_path: Path) -> None:
    assert list_backups(folders_in(tmp_path), "blog") == []
