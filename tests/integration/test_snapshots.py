"""Snapshots of running instances on the test bed: real PocketBase, real records, real boxes.

Services are made through the agent's API; records are written through PocketBase's own
API; a snapshot is taken while the instance runs, and what it holds is read back with
SQLite (the snapshot is root's own file) and compared with what PocketBase answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import sqlite3
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from pockestrator.agent.daemon import Agent
from pockestrator.agent.health import wait_healthy
from pockestrator.clock import utc_now
from pockestrator.controllers.servicedirs import ServiceFolders
from pockestrator.controllers.snapshots.folder import SnapshotError, SnapshotFolder
from pockestrator.controllers.snapshots.take import take_snapshot
from pockestrator.controllers.snapshots.verify import verify_snapshot
from pockestrator.controllers.systemd import UnitSettings
from pockestrator.files import HashedFile
from tests.testbed import boxes
from tests.testbed.api_client import Api, create, notes_service, wait_running
from tests.testbed.waiting import wait_for_pocketbase, wait_until


@pytest.fixture(scope="module")
def snapshots(agent: Agent) -> SnapshotFolder:
    return SnapshotFolder(agent.config.snapshots_path)


async def snapshot_of(agent: Agent, snapshots: SnapshotFolder, name: str, kind: str = "manual"):  # type: ignore[no-untyped-def]
    record = agent.store.get_service(name)
    assert record is not None
    return await take_snapshot(
        agent.bus,
        UnitSettings.from_config(agent.config),
        ServiceFolders(agent.config),
        snapshots,
        record.spec,
        kind=kind,  # type: ignore[arg-type]
        now=utc_now(),
        python=agent.config.instance_python,
    )


def titles_in(database: Path) -> list[str]:
    with contextlib.closing(sqlite3.connect(database)) as db:
        return [row[0] for row in db.execute("SELECT title FROM notes ORDER BY id")]


async def test_a_snapshot_of_a_running_instance_holds_its_records_and_app_folders(
    agent: Agent, api: Api, newer: str, snapshots: SnapshotFolder
) -> None:
    client, _, _ = await notes_service(api, newer, "shot", 25, extra_dirs=["pb_hooks"])
    hooks = ServiceFolders(agent.config).private_path("shot") / "pb_hooks"
    (hooks / "hello.pb.js").write_text("// the app's own code\n")
    # PocketBase restarts itself when its hooks change: let that happen before the test.
    reply = await api.call("POST", "/services/shot/control", {"action": "restart"})
    assert reply.status == 200, reply.body
    assert await wait_for_pocketbase(client.base_url)
    async with client:
        expected = await client.titles()

        snapshot = await snapshot_of(agent, snapshots, "shot")

        assert await client.titles() == expected  # it kept serving
    manifest = snapshot.manifest
    assert manifest.service == "shot" and manifest.kind == "manual"
    assert manifest.pocketbase_version == newer
    paths = [entry.path for entry in manifest.files]
    assert "pb_data/data.db" in paths and "pb_hooks/hello.pb.js" in paths
    assert not any(path.endswith(("-wal", "-shm")) for path in paths)
    for entry in manifest.files:
        data = (snapshot.path / entry.path).read_bytes()
        assert (len(data), hashlib.sha256(data).hexdigest()) == (entry.size, entry.sha256)
    assert titles_in(snapshot.path / "pb_data" / "data.db") == expected
    with contextlib.closing(sqlite3.connect(snapshot.path / "pb_data" / "data.db")) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert db.execute("PRAGMA journal_mode").fetchone() == ("delete",)
    assert [s.snapshot_id for s in snapshots.list("shot")] == [snapshot.snapshot_id]
    assert oct(snapshot.path.stat().st_mode & 0o777) == "0o700"
    folder = ServiceFolders(agent.config).private_path("shot")
    assert not [p for p in folder.iterdir() if p.name.startswith(".pockestrator-snapshot")]


async def test_an_interrupted_snapshot_is_never_listed_and_is_cleaned_up(
    agent: Agent, api: Api, newer: str, snapshots: SnapshotFolder
) -> None:
    client, _, _ = await notes_service(api, newer, "halted", 3)
    await client.session.close()
    before = [s.snapshot_id for s in snapshots.list("halted")]
    task = asyncio.create_task(snapshot_of(agent, snapshots, "halted"))

    async def begun() -> bool:
        return any(snapshots.service_dir("halted").glob(".*.partial"))

    assert await wait_until(begun, 30, 0.001)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task

    assert [s.snapshot_id for s in snapshots.list("halted")] == before
    leftovers = list(snapshots.service_dir("halted").glob(".*.partial"))
    assert leftovers == [] or snapshots.clean_partials("halted")
    assert list(snapshots.service_dir("halted").glob(".*.partial")) == []


async def test_a_database_the_instance_replaced_with_a_symlink_is_not_followed(
    agent: Agent, api: Api, newer: str, snapshots: SnapshotFolder
) -> None:
    created = await create(api, newer, "liar")
    await wait_running(api, "liar")
    spec = agent.store.get_service("liar").spec  # type: ignore[union-attr]
    reply = await api.call("POST", "/services/liar/control", {"action": "stop"})
    assert reply.status == 200, reply.body
    planted = await boxes.run_in_box(
        agent.bus,
        UnitSettings.from_config(agent.config),
        spec,
        "rm -f pb_data/data.db* && ln -s /etc/shadow pb_data/data.db",
    )
    assert planted.ok, planted.output

    with pytest.raises(SnapshotError, match=r"no pb_data/data\.db"):
        await snapshot_of(agent, snapshots, "liar")

    assert snapshots.list("liar") == []
    assert created["service"]["project_name"] == "liar"


async def healthy_on(port: int, deadline: float) -> bool:
    async with aiohttp.ClientSession() as session:
        loop = asyncio.get_running_loop()
        return await wait_healthy(session, port, loop.time() + deadline)


async def verify(agent: Agent, snapshot: Any) -> Any:
    return await verify_snapshot(
        agent.bus,
        UnitSettings.from_config(agent.config),
        snapshot,
        now=utc_now(),
        python=agent.config.instance_python,
        healthy=healthy_on,
    )


async def test_a_good_snapshot_is_verified_by_a_restore_a_check_and_a_boot(
    agent: Agent, api: Api, newer: str, snapshots: SnapshotFolder
) -> None:
    client, _, _ = await notes_service(api, newer, "checked", 5, extra_dirs=["pb_migrations"])
    await client.session.close()
    snapshot = await snapshot_of(agent, snapshots, "checked")

    verification = await verify(agent, snapshot)

    assert verification.ok, verification.detail
    assert "boot of PocketBase" in verification.detail
    scratch = [p for p in agent.config.base_dir.iterdir() if p.name.startswith(".scratch-")]
    assert scratch == []  # the throwaway folder and systemd's link to it are gone
    private = agent.config.state_directory_root / "private"
    assert not [p for p in private.rglob(".scratch-*")]


async def test_a_snapshot_with_one_byte_flipped_fails_verification_and_says_where(
    agent: Agent, api: Api, newer: str, snapshots: SnapshotFolder
) -> None:
    client, _, _ = await notes_service(api, newer, "flipped", 5)
    await client.session.close()
    snapshot = await snapshot_of(agent, snapshots, "flipped")
    database = snapshot.path / "pb_data" / "data.db"
    data = bytearray(database.read_bytes())
    data[len(data) // 2] ^= 0x01
    database.write_bytes(bytes(data))

    verification = await verify(agent, snapshot)

    assert not verification.ok
    assert "pb_data/data.db is not the file the manifest describes" in verification.detail


async def test_a_damaged_database_fails_its_integrity_check_even_with_matching_hashes(
    agent: Agent, api: Api, newer: str, snapshots: SnapshotFolder
) -> None:
    client, _, _ = await notes_service(api, newer, "damaged", 200)
    await client.session.close()
    snapshot = await snapshot_of(agent, snapshots, "damaged")
    database = snapshot.path / "pb_data" / "data.db"
    with contextlib.closing(sqlite3.connect(database)) as db:
        page_size = db.execute("PRAGMA page_size").fetchone()[0]
        (root,) = db.execute("SELECT rootpage FROM sqlite_master WHERE name = 'notes'").fetchone()
    data = bytearray(database.read_bytes())
    start = (root - 1) * page_size  # the notes table's b-tree: its header and cell pointers
    data[start : start + 64] = b"\xff" * 64
    database.write_bytes(bytes(data))
    entry = snapshot.manifest.file("pb_data/data.db")
    assert entry is not None
    files = [
        HashedFile(e.path, len(data), hashlib.sha256(data).hexdigest()) if e is entry else e
        for e in snapshot.manifest.files
    ]
    rewritten = replace(snapshot, manifest=replace(snapshot.manifest, files=tuple(files)))

    verification = await verify(agent, rewritten)

    assert not verification.ok
    assert verification.detail.startswith("integrity_check:"), verification.detail
