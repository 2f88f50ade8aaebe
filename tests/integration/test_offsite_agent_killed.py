"""``kill -9`` of the agent (the real one, run by systemd) during an upload to S3.

The snapshot's upload is cut while a multipart upload is half-way: nothing is listed on
the target (no manifest), and when the agent is back it resumes the upload (parts already
there are kept) and only then lists the snapshot there.
"""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import botocore.exceptions
import pytest

from pockestrator.accounts import AccountStore
from pockestrator.agent.sandbox import Sandbox, free_port
from pockestrator.config import AgentConfig
from pockestrator.controllers.servicedirs import ServiceFolders
from pockestrator.controllers.snapshots.s3 import S3Store
from pockestrator.specs.store import Store
from tests.testbed.agent_unit import AGENT_UNIT, AgentUnit
from tests.testbed.api_client import Api
from tests.testbed.mirror import ReleaseMirror
from tests.testbed.s3 import S3Server
from tests.testbed.waiting import wait_until

MIB = 1024 * 1024


@pytest.fixture(scope="module")
async def agent_config(
    sandbox: Sandbox, release_mirror: ReleaseMirror, s3_server: S3Server
) -> AgentConfig:
    return release_mirror.agent_config(
        sandbox,
        health_interval=1.0,
        backup_targets={"offsite": s3_server.target(part_size=5 * MIB)},
    )


@pytest.fixture(scope="module")
async def agent_unit(agent_config: AgentConfig, sandbox: Sandbox) -> AsyncIterator[AgentUnit]:
    handle = AgentUnit(sandbox, agent_config, watchdog_seconds=30)
    await handle.start()
    yield handle
    await handle.stop()


@pytest.fixture(scope="module")
async def api(agent_unit: AgentUnit) -> AsyncIterator[Api]:
    token, _record = AccountStore(agent_unit.config.database).create_token("kill test")
    config = agent_unit.config
    async with aiohttp.ClientSession() as session:
        yield Api(session, f"http://127.0.0.1:{config.listen_port}/api/pockestrator", token)


def uploaded_events(config: AgentConfig, name: str) -> list[dict[str, Any]]:
    events = Store(config.database).list_events(name, limit=50)
    return [dict(e.details) for e in events if e.kind == "snapshot_uploaded"]


async def test_an_upload_cut_by_kill_9_is_never_listed_and_resumes_after_the_restart(
    agent_unit: AgentUnit, api: Api, s3_server: S3Server, pocketbase_versions: tuple[str, str]
) -> None:
    config = agent_unit.config
    (config.spec_dir / "hoard.yaml").write_text(
        f"project_name: hoard\nport: {free_port()}\n"
        f'pocketbase_version: "{pocketbase_versions[1]}"\n'
        "backups: {schedule: null, verify: null, targets: [offsite]}\n"
    )

    async def running() -> bool:
        reply = await api.call("GET", "/services/hoard/status")
        return reply.status == 200 and reply.body.get("state") == "active"

    assert await wait_until(running, timeout=60, interval=0.2)
    storage = ServiceFolders(config).private_path("hoard") / "pb_data" / "storage" / "bulk"
    storage.mkdir(parents=True, exist_ok=True)
    (storage / "video.bin").write_bytes(os.urandom(60 * MIB))  # an upload of the app's
    target = S3Store("offsite", config.backup_targets["offsite"])
    bucket = s3_server.bucket

    taken = await api.call("POST", "/services/hoard/backups", params={"wait": "false"})
    assert taken.status in (201, 202), taken.body

    async def half_way() -> bool:
        try:
            uploads = target.client().list_multipart_uploads(Bucket=bucket).get("Uploads", [])
        except Exception:  # rclone's NoSuchUpload while there is none
            return False
        for upload in uploads:
            try:
                parts = target.client().list_parts(
                    Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                )
            except botocore.exceptions.ClientError:
                continue  # that upload was completed after it was listed: another file's
            if len(parts.get("Parts", [])) >= 3:
                return True
        return False

    assert await wait_until(half_way, timeout=120, interval=0.01)
    os.kill(await agent_unit.main_pid(), signal.SIGKILL)
    await agent_unit.bus.stop_unit(AGENT_UNIT)  # no restart yet: look at what was left

    assert target.list("hoard") == []
    assert uploaded_events(config, "hoard") == []
    assert any(key.startswith("pockestrator/hoard/") for key in s3_server.objects())

    await agent_unit.bus.start_unit(AGENT_UNIT)
    Path(config.spec_dir / "hoard.yaml").touch()  # a reconcile of hoard soon

    async def uploaded() -> bool:
        return bool(uploaded_events(config, "hoard"))

    assert await wait_until(uploaded, timeout=180, interval=0.2)
    [event] = uploaded_events(config, "hoard")
    assert event["resumed_files"] >= 1
    assert event["bytes_sent"] < 60 * MIB
    assert [m.snapshot_id for m in target.list("hoard")] == [event["snapshot"]]
