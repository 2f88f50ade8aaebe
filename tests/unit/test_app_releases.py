"""The release record and folders: staging, the live pointer, pruning, the file diff."""

from __future__ import annotations

import io
import tarfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pockestrator.apparchive import UnsafeAppArchive
from pockestrator.config import AgentConfig
from pockestrator.controllers.apps import AppReleases, ReleaseError, file_diff

NOW = datetime(2026, 12, 2, 4, 0, tzinfo=UTC)


def _archive(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture
def releases(tmp_path: Path) -> AppReleases:
    config = AgentConfig(
        state_directory_root=tmp_path / "state",
        base_dir=tmp_path / "state" / "services",
        database=tmp_path / "agent" / "db.sqlite",
    )
    (config.base_dir / "todo").mkdir(parents=True)
    return AppReleases(config)


def _stage(releases: AppReleases, tmp_path: Path, body: bytes, minutes: int = 0) -> str:
    archive = _archive(tmp_path / f"a{minutes}.tar.gz", {"pb_hooks/main.pb.js": body})
    when = NOW + timedelta(minutes=minutes)
    return releases.stage("todo", archive, by="alice", source="api", now=when).release_id


def test_a_staged_release_is_in_its_folder_recorded_and_not_live(
    releases: AppReleases, tmp_path: Path
) -> None:
    release_id = _stage(releases, tmp_path, b"// one")
    folder = releases.release_dir("todo", release_id)
    assert (folder / "pb_hooks/main.pb.js").read_bytes() == b"// one"
    assert (folder / "pb_public").is_dir() and (folder / "pb_migrations").is_dir()
    record = releases.load("todo")
    assert record.live is None
    assert record.releases[0].created_by == "alice"
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".partial-")]


def test_pointing_makes_a_release_live_and_the_previous_one_is_the_rollback_target(
    releases: AppReleases, tmp_path: Path
) -> None:
    first = _stage(releases, tmp_path, b"// one", 0)
    releases.point("todo", first)
    second = _stage(releases, tmp_path, b"// two", 1)
    record = releases.point("todo", second)
    assert releases.live("todo") == second
    previous = record.previous()
    assert previous is not None and previous.release_id == first
    with pytest.raises(ReleaseError, match="no release"):
        releases.point("todo", "0" * 16)


def test_pruning_keeps_the_newest_and_always_the_live_one(
    releases: AppReleases, tmp_path: Path
) -> None:
    ids = [_stage(releases, tmp_path, f"// {n}".encode(), n) for n in range(4)]
    releases.point("todo", ids[0])
    dropped = releases.prune("todo", 2)
    assert sorted(dropped) == sorted(ids[1:3])
    assert {r.release_id for r in releases.load("todo").releases} == {ids[0], ids[3]}
    assert not releases.release_dir("todo", ids[1]).exists()
    assert releases.release_dir("todo", ids[0]).exists()


def test_a_refused_archive_leaves_no_release_and_no_record(
    releases: AppReleases, tmp_path: Path
) -> None:
    archive = _archive(tmp_path / "bad.tar.gz", {"pb_hooks/a.js": b"1", "../x": b"2"})
    with pytest.raises(UnsafeAppArchive):
        releases.stage("todo", archive, by="alice", source="api", now=NOW)
    assert list((releases.folders.path_for("todo") / ".releases").iterdir()) == []
    assert releases.load("todo").releases == ()


def test_the_diff_names_what_was_added_removed_and_changed(
    releases: AppReleases, tmp_path: Path
) -> None:
    old = releases.stage(
        "todo",
        _archive(tmp_path / "1.tgz", {"pb_hooks/a.pb.js": b"1", "pb_hooks/b.pb.js": b"1"}),
        by="a",
        source="api",
        now=NOW,
    )
    new = releases.stage(
        "todo",
        _archive(tmp_path / "2.tgz", {"pb_hooks/a.pb.js": b"2", "pb_public/index.html": b"x"}),
        by="a",
        source="api",
        now=NOW,
    )
    assert file_diff(new, old) == {
        "added": ["pb_public/index.html"],
        "removed": ["pb_hooks/b.pb.js"],
        "changed": ["pb_hooks/a.pb.js"],
    }
    assert file_diff(old, None)["added"] == ["pb_hooks/a.pb.js", "pb_hooks/b.pb.js"]


def test_a_symlink_planted_as_the_releases_folder_is_moved_aside_not_followed(
    releases: AppReleases, tmp_path: Path
) -> None:
    target = tmp_path / "elsewhere"
    target.mkdir()
    service = releases.folders.path_for("todo")
    (service / ".releases").symlink_to(target)
    release_id = _stage(releases, tmp_path, b"// one")
    assert list(target.iterdir()) == []
    assert not (service / ".releases").is_symlink()
    assert (releases.release_dir("todo", release_id) / "pb_hooks/main.pb.js").exists()
    assert [p.name for p in service.iterdir() if p.name.startswith(".releases-moved-")]
