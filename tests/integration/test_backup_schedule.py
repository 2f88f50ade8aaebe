"""Scheduled snapshots, retention and verification on the test bed, on a fake clock.

The agent here reads the time from a ``FakeClock`` (the stores and the backup work do), so
a test moves it past a schedule's fire time and asks for a reconcile, instead of waiting
for 03:00. Everything else is real: systemd, PocketBase, the snapshots on disk.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from pockestrator.agent.daemon import Agent
from pockestrator.clock import FakeClock
from tests.testbed.api_client import Api, create, wait_running
from tests.testbed.waiting import wait_until

START = datetime(2026, 12, 1, 2, 58, tzinfo=UTC)


@pytest.fixture(scope="module")
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture(scope="module")
def agent_clock(clock: FakeClock) -> FakeClock:
    return clock


async def backups(api: Api, name: str) -> list[dict[str, object]]:
    reply = await api.call("GET", f"/services/{name}/backups")
    assert reply.status == 200, reply.body
    return list(reply.body["backups"])


async def reconciled(agent: Agent, name: str) -> None:
    assert await agent.wait_reconciled(name, 120)


async def test_snapshots_follow_the_schedule_and_the_retention_prunes_them(
    agent: Agent, api: Api, clock: FakeClock, pocketbase_versions: tuple[str, str]
) -> None:
    policy = {"schedule": "0 3 * * *", "keep": {"last": 2, "daily": 0, "weekly": 0, "monthly": 0}}
    await create(api, pocketbase_versions[1], "nightly", backups=policy)
    await wait_running(api, "nightly")
    await reconciled(agent, "nightly")
    assert await backups(api, "nightly") == []  # 03:00 has not come yet

    taken = []
    for day in range(3):
        clock.advance(24 * 3600 if day else 5 * 60)  # 03:03 on the first day, then daily
        await reconciled(agent, "nightly")

        async def one_more() -> bool:
            return len({str(b["id"]) for b in await backups(api, "nightly")} - set(taken)) == 1

        assert await wait_until(one_more, 60, 0.1)
        newest = (await backups(api, "nightly"))[0]
        assert newest["kind"] == "scheduled"
        taken.append(str(newest["id"]))
        await reconciled(agent, "nightly")  # nothing more is due the same day
        assert str((await backups(api, "nightly"))[0]["id"]) == taken[-1]

    assert [str(b["id"]) for b in await backups(api, "nightly")] == taken[:0:-1]
    events = await api.call("GET", "/services/nightly/events", params={"limit": "100"})
    kinds = [e["kind"] for e in events.body["events"]]
    assert kinds.count("snapshot_taken") == 3 and "snapshots_pruned" in kinds


async def test_the_newest_snapshot_is_verified_when_the_verify_schedule_comes(
    agent: Agent, api: Api, clock: FakeClock, pocketbase_versions: tuple[str, str]
) -> None:
    policy = {"schedule": None, "verify": "@hourly"}
    await create(api, pocketbase_versions[1], "checked", backups=policy)
    await wait_running(api, "checked")
    made = await api.call("POST", "/services/checked/backups")
    assert made.status == 201, made.body
    assert (await backups(api, "checked"))[0]["verified"] is None

    clock.advance(3600)
    await reconciled(agent, "checked")

    async def verified() -> bool:
        return (await backups(api, "checked"))[0]["verified"] is True

    assert await wait_until(verified, 90, 0.2)
