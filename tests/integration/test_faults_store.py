"""Faults of the agent's own store: a file that is not its store, and a disk that is full.

A damaged file, another program's SQLite database or a store of a newer schema: the agent
(``python -m pockestrator agent``, as systemd runs it) refuses to start with a message that
says what the file is and how to recover, and changes nothing: not the file, not a unit,
site, environment file or service folder, not a running instance.

The database's folder on a small tmpfs, filled to the last block: API writes answer 507
``DATABASE_FULL`` and change nothing, the system health names the folder, the agent goes on
repairing the host (a hand-stopped instance is started again) without losing a worker; once
space returns it records again, and the store is whole.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import yaml

from pockestrator.agent.daemon import Agent, api_factory
from pockestrator.agent.sandbox import Sandbox
from pockestrator.config import AgentConfig
from pockestrator.migrations import MIGRATIONS
from tests.testbed.api_client import Api, api_for, create, wait_running
from tests.testbed.waiting import pocketbase_health, wait_until

KEEPER = "keeper"


@pytest.fixture(scope="module")
async def store_copy(
    agent_config: AgentConfig, pocketbase_versions: tuple[str, str], sandbox: Sandbox
) -> Path:
    """A host with one running service, its agent stopped; a copy of its good store."""
    async with Agent(agent_config, api_factory=api_factory()) as agent, api_for(agent) as api:
        await create(api, pocketbase_versions[1], KEEPER)
        await wait_running(api, KEEPER)
    copy = sandbox.layout.root / "good-store.db"
    shutil.copyfile(agent_config.database, copy)
    return copy


def host_snapshot(config: AgentConfig) -> dict[str, tuple[int, int, str]]:
    """Every file the agent manages (mode, size, content hash), symlinks not followed.

    Inside a ``pb_data`` only names and modes: the running instance writes its own
    databases (its WAL, its logs) whenever it likes, and that is not the agent."""
    snapshot: dict[str, tuple[int, int, str]] = {}
    folders = (
        config.systemd_dir,
        config.caddy_sites_dir,
        config.environment_path,
        config.base_dir,
        config.state_directory_root / "private",
        config.database.parent,
    )
    for folder in folders:
        for top, dirs, files in os.walk(folder):
            for entry in [*dirs, *files]:
                path = Path(top) / entry
                info = path.lstat()
                if "pb_data" in path.relative_to(folder).parts:
                    snapshot[str(path)] = (info.st_mode, 0, "")
                    continue
                digest = ""
                if path.is_file() and not path.is_symlink():
                    digest = hashlib.sha256(path.read_bytes()).hexdigest()
                snapshot[str(path)] = (info.st_mode, info.st_size, digest)
    return snapshot


def garbage(path: Path, good: Path) -> None:
    path.write_bytes(os.urandom(64 * 1024))


def foreign(path: Path, good: Path) -> None:
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("CREATE TABLE photos (id INTEGER PRIMARY KEY, path TEXT)")
        db.execute("INSERT INTO photos (path) VALUES ('holiday.jpg')")
        db.commit()


def newer(path: Path, good: Path) -> None:
    shutil.copyfile(good, path)
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")


def damaged(path: Path, good: Path) -> None:
    """Our store with its header intact and its second page overwritten."""
    data = bytearray(good.read_bytes())
    page = int.from_bytes(data[16:18], "big")
    assert len(data) >= 3 * page
    data[page : 2 * page] = os.urandom(page)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("make", "says"),
    [
        (garbage, "is not an SQLite database"),
        (damaged, "is damaged"),
        (foreign, "another program's SQLite database (tables: photos)"),
        (newer, f"schema version {len(MIGRATIONS) + 1}, newer than this agent's"),
    ],
    ids=["garbage", "damaged", "foreign", "newer-schema"],
)
async def test_a_store_that_is_not_ours_is_refused_and_nothing_is_touched(
    store_copy: Path, agent_config: AgentConfig, sandbox: Sandbox, make: object, says: str
) -> None:
    database = agent_config.database
    for leftover in (database, Path(f"{database}-wal"), Path(f"{database}-shm")):
        leftover.unlink(missing_ok=True)
    assert callable(make)
    make(database, store_copy)
    config_file = sandbox.layout.root / "refusing-agent.yaml"
    config_file.write_text(yaml.safe_dump(agent_config.model_dump(mode="json", exclude_none=True)))
    bus = sandbox.bus
    assert bus is not None
    pid_before = (await bus.unit_status(f"{KEEPER}-pocketbase.service")).main_pid
    before = host_snapshot(agent_config)
    try:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "pockestrator",
            "agent",
            "--config",
            str(config_file),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await asyncio.wait_for(process.communicate(), 60)
        text = output.decode(errors="replace")
        assert process.returncode == 1, text
        assert says in text, text
        assert "Nothing was changed" in text, text
        assert str(database) in text, text
        assert host_snapshot(agent_config) == before, "the refusing agent changed the host"
        assert (await bus.unit_status(f"{KEEPER}-pocketbase.service")).main_pid == pid_before
        assert await pocketbase_health(sandbox.caddy_url, f"{KEEPER}.localhost")
    finally:
        for leftover in (database, Path(f"{database}-wal"), Path(f"{database}-shm")):
            leftover.unlink(missing_ok=True)
        shutil.copyfile(store_copy, database)


# -- the disk of the database full -----------------------------------------------------


def fill(folder: Path) -> Path:
    """Take every free block of ``folder``'s file system (a file, removed to free them)."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for size in (1 << 20, 4096, 512, 1):
            chunk = b"\0" * size
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, chunk)
    finally:
        os.close(fd)
    return filler


def checkpoint(database: Path) -> None:
    """Fold the WAL into the database and truncate it: the next write must grow a file."""
    with contextlib.closing(sqlite3.connect(database, timeout=30)) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()


@contextlib.contextmanager
def small_tmpfs(folder: Path) -> Iterator[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16m,mode=0700", "tmpfs", str(folder)], check=True
    )
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


@pytest.fixture(scope="module")
async def full_disk_agent(
    store_copy: Path, agent_config: AgentConfig, sandbox: Sandbox
) -> AsyncIterator[tuple[Agent, Path]]:
    """An agent whose database is on a 16 MiB tmpfs (a copy of the host's store), with two
    workers, so that losing them to failures would show."""
    with small_tmpfs(sandbox.layout.root / "small-state") as folder:
        database = folder / "pockestrator.db"
        shutil.copyfile(store_copy, database)
        # The instances' environment files stay where the test bed's manager sees them: it
        # runs in a mount namespace of its own, which a tmpfs mounted now never reaches.
        config = agent_config.model_copy(
            update={
                "database": database,
                "workers": 2,
                "environment_dir": agent_config.environment_path,
            }
        )
        async with Agent(config, api_factory=api_factory()) as agent:
            yield agent, folder


async def _health_codes(api: Api) -> set[str]:
    reply = await api.call("GET", "/system/health")
    return {issue["code"] for issue in reply.body.get("errors", [])}


async def test_a_full_database_disk_is_reported_refused_and_recovered_from(
    full_disk_agent: tuple[Agent, Path], pocketbase_versions: tuple[str, str], sandbox: Sandbox
) -> None:
    agent, folder = full_disk_agent
    bus = sandbox.bus
    assert bus is not None
    async with api_for(agent) as api:
        await wait_running(api, KEEPER)
        filler = fill(folder)
        checkpoint(agent.config.database)
        fill(folder)  # what the checkpoint freed

        # The host is still kept right, though nothing can be recorded (and the failures
        # to record do not cost the agent its two workers).
        await bus.stop_unit(f"{KEEPER}-pocketbase.service")

        async def keeper_runs_again() -> bool:
            return await pocketbase_health(sandbox.caddy_url, f"{KEEPER}.localhost")

        assert await wait_until(keeper_runs_again, 30, interval=0.1)

        refused = await api.call(
            "POST",
            "/services",
            {
                "project_name": "latecomer",
                "port": 18999,
                "pocketbase_version": pocketbase_versions[1],
            },
        )
        assert refused.status == 507, refused.body
        assert refused.body["errors"][0]["code"] == "DATABASE_FULL", refused.body
        assert str(folder) in refused.body["errors"][0]["message"]
        assert not (agent.config.systemd_dir / "latecomer-pocketbase.service").exists()
        assert "DATABASE_FULL" in await _health_codes(api)

        filler.unlink()
        assert await wait_until(lambda: _no_full_disk(api), 10, interval=0.1), (
            "the system health still reports a full disk"
        )
        created = await api.call(
            "POST",
            "/services",
            {
                "project_name": "latecomer",
                "port": 18999,
                "pocketbase_version": pocketbase_versions[1],
            },
            params={"wait": "true"},
        )
        assert created.status == 201, created.body
        assert created.body["reconciled"] is True, "the workers did not survive the full disk"
        await wait_running(api, "latecomer")
        await wait_running(api, KEEPER)
    with contextlib.closing(sqlite3.connect(agent.config.database)) as db:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        names = {row[0] for row in db.execute("SELECT name FROM services")}
    assert {KEEPER, "latecomer"} <= names


async def _no_full_disk(api: Api) -> bool:
    return "DATABASE_FULL" not in await _health_codes(api)
