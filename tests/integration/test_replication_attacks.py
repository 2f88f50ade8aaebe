"""A hostile instance attacks its own Litestream replica on the test bed, as docs/security.md
says it may: each attempt fails, or is reported as a ``replication_failed`` event.

Each test gives one replicating service (Litestream in its root box, shipping to a real S3
server, ``rclone serve s3``) and attacks it from a process in the instance's own box, with
the instance's identity and hardening (``tests/testbed/boxes.py``): reading the target's
secret (Litestream's configuration, its ``/proc`` files, the credential file), making
Litestream write outside its prefix or its folder (the WAL, the shared memory and
Litestream's own folder swapped for links; a WAL of a gigabyte), and stopping replication
unseen (the WAL deleted, the database locked). "Replication goes on" is proved by the
newest writes reaching the bucket as level-0 LTX files (Litestream's per-sync files; its
compactions of older data write other levels), not by the unit being active.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pockestrator.agent.daemon import Agent
from pockestrator.agent.sandbox import Sandbox, free_port
from pockestrator.config import AgentConfig
from pockestrator.controllers.servicedirs import ServiceFolders
from pockestrator.controllers.snapshots.litestream import unit_name
from pockestrator.controllers.systemd import UnitSettings
from pockestrator.journal import JournalQuery, JournalReader
from pockestrator.specs.model import ServiceSpec
from tests.testbed import boxes
from tests.testbed.api_client import Api, create, wait_running
from tests.testbed.mirror import ReleaseMirror
from tests.testbed.pocketbase_client import PocketBaseClient
from tests.testbed.s3 import S3Server
from tests.testbed.waiting import wait_until

POLICY = {"schedule": None, "verify": None, "replication": {"target": "offsite"}}
PYTHON = "/usr/bin/python3"

# As the instance: every way to the target's secret, each outcome printed as JSON.
READ_SECRET = r"""
import json, os, sys
targets = json.loads(sys.argv[1])
def attempt(path):
    try:
        with open(path, "rb") as file:
            return "ok:" + file.read(65536).decode("utf-8", "replace")
    except OSError as exc:
        return "error:" + os.strerror(exc.errno or 0)
found = {label: attempt(path) for label, path in targets["files"].items()}
visible = sorted(entry for entry in os.listdir("/proc") if entry.isdigit())
for pid in visible + [str(targets["litestream_pid"])]:
    for part in ("environ", "cmdline", "maps", "root/etc/litestream.yml"):
        found[pid + "/" + part] = attempt("/proc/" + pid + "/" + part)
for folder, _dirs, files in os.walk("pb_data"):
    for leaf in files:
        found["own:" + os.path.join(folder, leaf)] = attempt(os.path.join(folder, leaf))
found["visible"] = visible
with open("pb_data/.findings.partial", "w") as out:
    json.dump(found, out)
os.rename("pb_data/.findings.partial", "pb_data/findings.json")
"""


@pytest.fixture(scope="module")
async def agent_config(
    sandbox: Sandbox, release_mirror: ReleaseMirror, s3_server: S3Server
) -> AgentConfig:
    return sandbox.agent_config(
        release_source="mirror",
        release_base_url=release_mirror.base_url,
        release_index_url=release_mirror.index_url,
        listen_port=free_port(),
        health_interval=1.0,
        upgrade_health_deadline=8.0,
        backup_targets={"offsite": s3_server.target()},
    )


@pytest.fixture
def precious(sandbox: Sandbox) -> Iterator[Path]:
    """Root's files outside every instance's folder, which no link may get written."""
    folder = Path(tempfile.mkdtemp(prefix="precious-", dir=sandbox.layout.root))
    (folder / "secret.txt").write_text("root's own")
    (folder / "dir").mkdir()
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@dataclass
class Replicated:
    """A running service whose data.db Litestream ships; how to write to it and act in it."""

    name: str
    agent: Agent
    api: Api
    s3: S3Server
    client: PocketBaseClient
    spec: ServiceSpec

    @property
    def level0(self) -> Path:
        return self.s3.data / self.s3.bucket / f"pockestrator/{self.name}/replica/data.db/0000"

    async def write(self, count: int, label: str) -> float:
        """``count`` records through PocketBase's API; the time after the last."""
        for number in range(count):
            await self.client.add(f"{label} {number}")
        return time.time()

    async def shipped_after(self, moment: float, timeout: float) -> bool:
        """A level-0 LTX file (one sync's frames) uploaded after ``moment``."""

        def newer() -> bool:
            return self.level0.is_dir() and any(
                path.stat().st_mtime > moment for path in self.level0.rglob("*.ltx")
            )

        async def check() -> bool:
            return await asyncio.to_thread(newer)

        return await wait_until(check, timeout=timeout, interval=0.2)

    async def in_box(self, script: str, timeout: float = 60) -> str:
        assert self.agent.bus is not None
        run = await boxes.run_in_box(
            self.agent.bus,
            UnitSettings.from_config(self.agent.config),
            self.spec,
            script,
            timeout=timeout,
        )
        assert run.ok, run.output
        return run.output

    def failures_since(self, event_id: int) -> list[dict[str, Any]]:
        return [
            {"message": event.message, "details": event.details}
            for event in self.agent.store.list_events(self.name, limit=200)
            if event.kind == "replication_failed" and event.id > event_id
        ]

    def last_event_id(self) -> int:
        events = self.agent.store.list_events(self.name, limit=1)
        return events[0].id if events else 0

    async def reported_since(self, event_id: int, timeout: float) -> list[dict[str, Any]]:
        async def reported() -> bool:
            return bool(self.failures_since(event_id))

        await wait_until(reported, timeout=timeout, interval=0.5)
        return self.failures_since(event_id)


@pytest.fixture
async def replicated(
    request: pytest.FixtureRequest,
    api: Api,
    agent: Agent,
    s3_server: S3Server,
    pocketbase_versions: tuple[str, str],
) -> AsyncIterator[Replicated]:
    name = request.node.name.removeprefix("test_").split("_")[0][:12] + "x"
    created = await create(
        api,
        pocketbase_versions[1],
        name,
        superuser_email=f"a@{name}.example",
        backups=POLICY,
    )
    await wait_running(api, name)
    record = agent.store.get_service(name)
    assert record is not None
    client = PocketBaseClient(f"http://127.0.0.1:{created['service']['port']}")
    async with client:
        await client.sign_in(f"a@{name}.example", created["superuser_password"])
        await client.notes()
        agent.enqueue(name)

        async def replicating() -> bool:
            status = await agent.bus.unit_status(unit_name(name))
            return status.active_state == "active"

        assert await wait_until(replicating, timeout=60, interval=0.2)
        service = Replicated(name, agent, api, s3_server, client, record.spec)
        written = await service.write(3, "first")
        assert await service.shipped_after(written, timeout=60), (
            "replication never started",
            written,
            _keys(s3_server, name),
            await _journal(agent, name),
        )
        yield service


async def _journal(agent: Agent, service: str) -> list[str]:
    """The last lines of a service's Litestream unit, read as the agent reads them."""
    reader = JournalReader(agent.config.journal_dir, agent.host.journal_scope)
    query = JournalQuery(project_name=service, unit=unit_name(service), lines=30)
    return [entry.message for entry in await reader.read(query)]


def _keys(s3: S3Server, service: str) -> list[str]:
    bucket = s3.data / s3.bucket
    return [
        f"{key} {(bucket / key).stat().st_mtime:.1f}"
        for key in s3.objects()
        if key.startswith(f"pockestrator/{service}/")
    ]


def _s3_sha256(s3: S3Server, prefix: str) -> dict[str, str]:
    bucket = s3.data / s3.bucket
    return {
        key: hashlib.sha256((bucket / key).read_bytes()).hexdigest()
        for key in s3.objects()
        if key.startswith(prefix)
    }


# Reading the target's secret -------------------------------------------------------------


async def test_secret_of_the_replica_is_out_of_reach_of_its_instance(
    replicated: Replicated, s3_server: S3Server
) -> None:
    agent = replicated.agent
    config = agent.snapshots.replication.config_path(replicated.name)
    litestream = await agent.bus.unit_status(unit_name(replicated.name))
    assert litestream.main_pid is not None
    # What there is to steal, as root sees it: the secret in the configuration, a process.
    assert s3_server.secret in config.read_text()
    assert "litestream" in Path(f"/proc/{litestream.main_pid}/cmdline").read_text()
    targets = {
        "files": {
            "config": str(config),
            "config_folder": str(config.parent),
            "credential_file": str(s3_server.secret_file),
            "own_data": "pb_data/data.db",
        },
        "litestream_pid": litestream.main_pid,
    }
    await replicated.in_box(f"exec {PYTHON} -c '{READ_SECRET}' '{json.dumps(targets)}'")
    folders = ServiceFolders(agent.config)
    findings = folders.private_path(replicated.name) / "pb_data" / "findings.json"
    output = findings.read_text()
    found = json.loads(output)

    assert found["own_data"].startswith("ok:SQLite format 3")  # the attack could read
    assert s3_server.secret not in output
    assert str(litestream.main_pid) not in found["visible"]  # another user's: invisible
    for label in ("config", "config_folder", "credential_file"):
        assert found[label].startswith("error:"), (label, found[label][:80])
    for part in ("environ", "cmdline", "maps", "root/etc/litestream.yml"):
        assert found[f"{litestream.main_pid}/{part}"].startswith("error:"), part
    # Litestream's own files in the instance's folder take the database's owner and mode:
    # the instance reads them (its own pages, as LTX), and the key is in none of them.
    own = [k for k in found if k.startswith("own:pb_data/.data.db-litestream/")]
    assert own, "Litestream wrote nothing into the instance's folder to read"


# Making Litestream write elsewhere ---------------------------------------------------------


async def test_links_for_the_wal_shm_and_litestreams_folder_write_nothing_and_are_reported(
    replicated: Replicated, s3_server: S3Server, precious: Path
) -> None:
    agent = replicated.agent
    config = agent.snapshots.replication.config_path(replicated.name)
    config_before = config.read_bytes()
    others_before = {
        key: digest
        for key, digest in _s3_sha256(s3_server, "").items()
        if not key.startswith(f"pockestrator/{replicated.name}/")
    }
    since = replicated.last_event_id()
    # Litestream stopped, the links planted, Litestream started again by the reconcile: it
    # opens every one of them by name.
    await agent.bus.stop_unit(unit_name(replicated.name))
    await replicated.in_box(
        "cd pb_data && mv .data.db-litestream .gone && "
        f"ln -s {precious}/dir .data.db-litestream && "
        "mv data.db-wal .wal-real && ln -s /etc/litestream.yml data.db-wal && "
        f"mv data.db-shm .shm-real && ln -s {precious}/secret.txt data.db-shm"
    )
    agent.enqueue(replicated.name)

    async def restarted() -> bool:
        status = await agent.bus.unit_status(unit_name(replicated.name))
        return status.active_state in ("active", "failed", "activating")

    assert await wait_until(restarted, timeout=60, interval=0.2)
    await replicated.write(5, "after the links")
    # Litestream cannot open the database through those links ("unable to open database
    # file"): replication stops, and the agent says so.
    reported = await replicated.reported_since(since, timeout=90)

    assert reported, "replication stopped and nobody was told"
    assert sorted(p.name for p in precious.iterdir()) == ["dir", "secret.txt"]
    assert (precious / "secret.txt").read_text() == "root's own"
    assert list((precious / "dir").iterdir()) == []
    assert config.read_bytes() == config_before
    after = _s3_sha256(s3_server, "")
    # Objects already there are unchanged (those since removed by Litestream's retention
    # aside); every object is some service's replica, under its own prefix.
    assert {k: v for k, v in after.items() if k in others_before} == {
        k: v for k, v in others_before.items() if k in after
    }
    services = set(agent.known_names())
    for key in after:
        prefix, service, replica, _rest = key.split("/", 3)
        assert (prefix, replica) == ("pockestrator", "replica") and service in services, key
    bucket = s3_server.data / s3_server.bucket
    ours = [key for key in after if key.startswith(f"pockestrator/{replicated.name}/")]
    for key in ours:
        body = (bucket / key).read_bytes()
        assert s3_server.secret.encode() not in body and b"root's own" not in body, key
    for failure in replicated.failures_since(since):
        assert s3_server.secret not in json.dumps(failure)


async def test_bloated_wal_of_a_gigabyte_is_not_shipped_and_replication_goes_on(
    replicated: Replicated, s3_server: S3Server
) -> None:
    prefix = f"pockestrator/{replicated.name}/"
    before = sum(
        (s3_server.data / s3_server.bucket / key).stat().st_size
        for key in s3_server.objects()
        if key.startswith(prefix)
    )
    since = replicated.last_event_id()
    # Sparse: a gigabyte of zeros past the real frames, which PocketBase goes on appending to.
    await replicated.in_box("truncate -s 1G pb_data/data.db-wal")
    written = await replicated.write(5, "after the bloat")
    shipped = await replicated.shipped_after(written, timeout=60)
    after = sum(
        (s3_server.data / s3_server.bucket / key).stat().st_size
        for key in s3_server.objects()
        if key.startswith(prefix)
    )

    assert shipped, ("the writes after the bloat never shipped", replicated.failures_since(since))
    assert after - before < 16 * 1024 * 1024, (before, after)


# Stopping replication unseen ---------------------------------------------------------------


async def test_erased_wal_stops_replication_and_that_is_reported(
    replicated: Replicated, s3_server: S3Server
) -> None:
    since = replicated.last_event_id()
    # PocketBase keeps writing into the deleted file; Litestream, after one error, watches a
    # new empty WAL and ships nothing: the unit stays active.
    await replicated.in_box("rm pb_data/data.db-wal")
    await replicated.write(5, "after the erase")

    reported = await replicated.reported_since(since, timeout=90)

    assert reported, "the WAL was deleted and no replication_failed event said so"
    assert reported[0]["details"]["errors"] >= 1
    assert "wal" in reported[0]["message"].lower()
    assert s3_server.secret not in json.dumps(reported)
    status = await replicated.agent.bus.unit_status(unit_name(replicated.name))
    assert status.active_state == "active"  # why it had to be told: nothing else shows


async def test_locked_database_does_not_stop_replication_for_good(
    replicated: Replicated,
) -> None:
    since = replicated.last_event_id()
    # Every lock the instance can take: the exclusive locking mode (refused while
    # Litestream reads) and the write lock, held for 15 s, then let go.
    locker = (
        "import sqlite3, time\n"
        "db = sqlite3.connect('pb_data/data.db', timeout=0.2, isolation_level=None)\n"
        "try:\n"
        "    db.execute('PRAGMA locking_mode=EXCLUSIVE')\n"
        "    db.execute('BEGIN EXCLUSIVE')\n"
        "    print('exclusive: taken')\n"
        "except sqlite3.Error as exc:\n"
        "    print('exclusive:', exc)\n"
        "    db.close()\n"
        "    db = sqlite3.connect('pb_data/data.db', timeout=5, isolation_level=None)\n"
        "    db.execute('BEGIN IMMEDIATE')\n"
        "    print('write lock: taken')\n"
        "time.sleep(15)\n"
        "db.close()\n"
    )
    held = await replicated.in_box(f'exec {PYTHON} -c "{locker}"')
    assert "taken" in held, held
    written = await replicated.write(5, "after the lock")
    shipped = await replicated.shipped_after(written, timeout=60)

    assert "exclusive: database is locked" in held, held  # Litestream's reader refuses it
    assert shipped, (
        held,
        "the writes after the lock never shipped",
        replicated.failures_since(since),
    )
