"""``python -m tests.benchmarks.replication_lag``: Litestream's replication lag under writes.

A service on a sandbox replicates to ``rclone serve s3`` (the agent's own Litestream unit,
``sync_seconds`` 1). Writers insert records through PocketBase's API at a steady rate, each
record's commit time noted when the API answers. About once a second (at a random phase,
0.5 to 1.5 s apart) a *restore* of the replica is made from the bucket (``litestream
restore``, latest) and the newest record in it is looked up: the lag of that sample is
the restore's start minus the commit time of that newest record, so it is what a restore
at that moment would lose (the RPO), an upper bound that includes Litestream's sync
interval and the upload. The floor, measured in the same run, is the same loop with a
Litestream on the host replicating a plain SQLite file written directly (no PocketBase,
no box, no agent): the ratio is what the service's path adds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from pockestrator.agent.daemon import Agent, api_factory
from pockestrator.agent.sandbox import Sandbox
from pockestrator.config import S3Target
from pockestrator.controllers.snapshots.litestream import AWS_ENVIRONMENT, render_config
from pockestrator.controllers.snapshots.litestream import unit_name as replica_unit
from pockestrator.specs.backups import ReplicationPolicy
from tests.benchmarks.bench import in_sandbox
from tests.testbed.api_client import api_for, create, wait_running
from tests.testbed.mirror import ReleaseMirror, installed_version, pocketbase_binary
from tests.testbed.pocketbase_client import PocketBaseClient
from tests.testbed.s3 import S3Server
from tests.testbed.waiting import wait_until

LITESTREAM = Path(shutil.which("litestream") or "litestream")


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in AWS_ENVIRONMENT}


async def restore_latest(config: Path, database: str, out: Path) -> bool:
    for leftover in out.parent.glob(out.name + "*"):
        leftover.unlink()
    process = await asyncio.create_subprocess_exec(
        str(LITESTREAM),
        "restore",
        "-no-expand-env",
        "-config",
        str(config),
        "-o",
        str(out),
        database,
        env=_env(),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _out, err = await process.communicate()
    if process.returncode != 0:
        message = err.decode()[-500:]
        if "no matching backup" in message:  # nothing shipped yet
            return False
        raise RuntimeError(f"litestream restore: {message}")
    return True


def newest(out: Path, table: str, column: str) -> int | None:
    db = sqlite3.connect(f"file:{out}?mode=ro", uri=True)
    try:
        rows = db.execute(f"SELECT {column} FROM {table}").fetchall()
    except sqlite3.OperationalError:
        return None
    finally:
        db.close()
    numbers = [int(str(row[0]).split()[-1]) for row in rows if str(row[0]).startswith("w ")]
    return max(numbers, default=None)


async def sample_lags(
    committed: dict[int, float],
    restore: Callable[[], Awaitable[int | None]],
    seconds: float,
) -> list[float]:
    lags = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        started = time.monotonic()
        found = await restore()
        if found is not None and found in committed:
            lags.append(started - committed[found])
        # A random phase: samples locked to Litestream's 1 s sync would all see one lag.
        pause = random.uniform(0.5, 1.5)
        await asyncio.sleep(max(0.0, pause - (time.monotonic() - started)))
    return lags


async def write_steadily(
    add: Callable[[int], Awaitable[None]], rate: float, seconds: float, committed: dict[int, float]
) -> int:
    """Insert at ``rate`` a second for ``seconds``; each commit time noted; how many."""
    number = 0
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        number += 1
        await add(number)
        committed[number] = time.monotonic()
        ahead = start + number / rate - time.monotonic()
        if ahead > 0:
            await asyncio.sleep(ahead)
    return number


async def measure(
    add: Callable[[int], Awaitable[None]],
    restore: Callable[[], Awaitable[int | None]],
    rate: float,
    seconds: float,
    committed: dict[int, float],
) -> tuple[int, list[float]]:
    writer = asyncio.create_task(write_steadily(add, rate, seconds, committed))
    try:
        lags = await sample_lags(committed, restore, seconds)
    except BaseException:
        writer.cancel()
        raise
    return await writer, lags


def summary(lags: list[float]) -> dict[str, float]:
    ordered = sorted(lags)
    if not ordered:
        return {"samples": 0}
    return {
        "samples": len(ordered),
        "p50_s": round(statistics.median(ordered), 3),
        "p99_s": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 3),
        "max_s": round(ordered[-1], 3),
    }


async def floor(s3: S3Server, rate: float, seconds: float, work: Path) -> dict[str, Any]:
    """A host Litestream on a plain SQLite file written directly: the same loop."""
    database = work / "floor.db"
    db = sqlite3.connect(database, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE notes (title TEXT)")
    target = s3.target(prefix="floor/")
    policy = ReplicationPolicy(target="offsite")
    text = render_config("floor", target, s3.secret, policy).replace(
        "/service/pb_data/data.db", str(database)
    )
    config = work / "floor.yml"
    config.write_text(text)
    config.chmod(0o600)
    process = await asyncio.create_subprocess_exec(
        str(LITESTREAM),
        "replicate",
        "-no-expand-env",
        "-config",
        str(config),
        env=_env(),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    committed: dict[int, float] = {}

    async def add(number: int) -> None:  # in a thread, as the service's writes are elsewhere
        await asyncio.to_thread(db.execute, "INSERT INTO notes VALUES (?)", (f"w {number}",))

    async def restore() -> int | None:
        out = work / "floor-restored.db"
        if not await restore_latest(config, str(database), out):
            return None
        return newest(out, "notes", "title")

    try:
        await asyncio.sleep(2)
        written, lags = await measure(add, restore, rate, seconds, committed)
    finally:
        process.terminate()
        await process.wait()
        db.close()
    return {"written": written, "rate_per_s": round(written / seconds, 1), **summary(lags)}


async def service(
    sandbox: Sandbox, s3: S3Server, rate: float, seconds: float, work: Path
) -> dict[str, Any]:
    mirror = ReleaseMirror()
    version = installed_version()
    mirror.add_release(version, pocketbase_binary(version))
    await mirror.start()
    target: S3Target = s3.target()
    agent = Agent(
        mirror.agent_config(
            sandbox,
            backup_targets={"offsite": target},
        ),
        api_factory=api_factory(),
    )
    await agent.start()
    try:
        async with api_for(agent) as api:
            policy = {"schedule": None, "verify": None, "replication": {"target": "offsite"}}
            created = await create(
                api, version, "lagged", superuser_email="a@lagged.example", backups=policy
            )
            await wait_running(api, "lagged")
            client = PocketBaseClient(f"http://127.0.0.1:{created['service']['port']}")
            async with client:
                await client.sign_in("a@lagged.example", created["superuser_password"])
                await client.notes()
                agent.enqueue("lagged")

                async def replicating() -> bool:
                    status = await agent.bus.unit_status(replica_unit("lagged"))
                    return status.active_state == "active"

                if not await wait_until(replicating, timeout=60, interval=0.2):
                    raise RuntimeError("the replica unit did not start")
                config = work / "service.yml"
                text = render_config("lagged", target, s3.secret, ReplicationPolicy(target="x"))
                config.write_text(text)
                config.chmod(0o600)
                committed: dict[int, float] = {}

                async def add(number: int) -> None:
                    await client.add(f"w {number}")

                async def restore() -> int | None:
                    out = work / "service-restored.db"
                    if not await restore_latest(config, "/service/pb_data/data.db", out):
                        return None
                    return newest(out, "notes", "title")

                await client.add("w 0")  # a first transaction for Litestream to ship
                out = work / "service-restored.db"
                for _ in range(60):
                    if await restore_latest(config, "/service/pb_data/data.db", out):
                        break
                    await asyncio.sleep(0.5)
                written, lags = await measure(add, restore, rate, seconds, committed)
    finally:
        await agent.stop()
        await mirror.stop()
    return {"written": written, "rate_per_s": round(written / seconds, 1), **summary(lags)}


async def run(rate: float, seconds: float) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="lag-"))
    s3 = S3Server(work / "s3")
    (work / "s3").mkdir()
    await s3.start()
    result: dict[str, Any] = {"rate_asked_per_s": rate, "seconds": seconds, "sync_seconds": 1}
    try:
        result["floor"] = await floor(s3, rate, seconds, work)

        async def body(sandbox: Sandbox) -> None:
            result["service"] = await service(sandbox, s3, rate, seconds, work)

        await in_sandbox(body)
    finally:
        await s3.stop()
        shutil.rmtree(work, ignore_errors=True)
    floor_p50 = result["floor"].get("p50_s")
    if floor_p50:
        result["service_over_floor_p50"] = round(result["service"]["p50_s"] / floor_p50, 2)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=float, default=200.0, help="inserts a second")
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.rate, args.seconds)), indent=1))


if __name__ == "__main__":
    main()
