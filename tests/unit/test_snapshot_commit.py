"""A snapshot's commit runs in a worker thread, which a cancel cannot stop: the cancelled
caller waits for it, so its clean-up never races the rename, and takes back a snapshot
the thread made visible, since the caller was told none was taken. Real folders, a real
thread held at the start of its commit."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pockestrator.controllers.snapshots.folder import (
    PartialSnapshot,
    Snapshot,
    SnapshotFolder,
    commit_in_thread,
)
from pockestrator.controllers.snapshots.manifest import Manifest, build_manifest
from pockestrator.files import HashedFile

AT = datetime(2026, 12, 2, 3, 15, tzinfo=UTC)


class HeldFolder(SnapshotFolder):
    """A snapshot folder whose commit waits for ``release`` first (told by ``entered``)."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.entered = threading.Event()
        self.release = threading.Event()

    def commit(self, partial: PartialSnapshot, manifest: Manifest) -> Snapshot:
        self.entered.set()
        assert self.release.wait(30), "the test never released the commit"
        return super().commit(partial, manifest)


def started(folder: SnapshotFolder) -> tuple[PartialSnapshot, Manifest]:
    partial = folder.begin("app", AT)
    (partial.path / "pb_data").mkdir()
    (partial.path / "pb_data" / "data.db").write_bytes(b"x" * 10)
    manifest = build_manifest(
        "app",
        partial.snapshot_id,
        "manual",
        AT,
        "0.40.6",
        [HashedFile("pb_data/data.db", 10, "0" * 64)],
    )
    return partial, manifest


@pytest.mark.asyncio(loop_scope="function")
async def test_a_commit_is_listed_once_it_returns(tmp_path: Path) -> None:
    folder = SnapshotFolder(tmp_path)
    partial, manifest = started(folder)
    made = await commit_in_thread(folder, partial, manifest)
    assert [s.snapshot_id for s in folder.list("app")] == [made.snapshot_id]


@pytest.mark.asyncio(loop_scope="function")
async def test_a_caller_cancelled_during_the_commit_waits_for_it_and_nothing_is_listed(
    tmp_path: Path,
) -> None:
    folder = HeldFolder(tmp_path)
    partial, manifest = started(folder)
    task = asyncio.create_task(commit_in_thread(folder, partial, manifest))
    assert await asyncio.to_thread(folder.entered.wait, 30)
    for _ in range(3):  # however often: a stop cancels again each second
        task.cancel()
        await asyncio.sleep(0.05)
        assert not task.done()  # still waiting for the thread, not gone before its rename
    folder.release.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert folder.list("app") == []
    assert not partial.path.exists()
    assert [entry.name for entry in folder.service_dir("app").iterdir()] == []
