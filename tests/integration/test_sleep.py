"""Sleeping instances on the real test bed: real systemd, Caddy and PocketBase.

A service with a short ``sleep_after`` goes to sleep after its last request through Caddy,
stays asleep across resyncs and the health prober's rounds, and the next requests through
Caddy wake it and are all answered (none is a 502); a control ``start`` wakes it too.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from pockestrator.agent.daemon import Agent
from pockestrator.agent.sandbox import Sandbox
from pockestrator.config import AgentConfig, AlertRules
from pockestrator.specs.model import unit_name
from tests.testbed.api_client import Api, create, read_sse
from tests.testbed.waiting import wait_until

SLEEP_AFTER = "5s"


@pytest.fixture(scope="module")
async def agent_config(agent_config: AgentConfig) -> AgentConfig:
    """A one-second service_down rule: a sleeping service must not count as down."""
    return agent_config.model_copy(update={"alerts": AlertRules(service_down_seconds=1.0)})


async def through_caddy(
    sandbox: Sandbox, domain: str, method: str = "GET", path: str = "/api/health", **kw: Any
) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.request(
            method,
            sandbox.caddy_url + path,
            headers={"Host": domain},
            timeout=aiohttp.ClientTimeout(total=30),
            **kw,
        ) as response,
    ):
        return response.status, await response.text()


async def state_of(api: Api, name: str) -> str:
    reply = await api.call("GET", f"/services/{name}")
    assert reply.status == 200, reply.body
    return str(reply.body["data"]["status"])


async def unit_running(agent: Agent, name: str) -> bool:
    return (await agent.bus.unit_status(unit_name(name))).is_running


async def fall_asleep(agent: Agent, api: Api, name: str) -> None:
    async def asleep() -> bool:
        return await state_of(api, name) == "sleeping" and not await unit_running(agent, name)

    assert await wait_until(asleep, 30, 0.2), agent.store.get_status(name)


def kinds(agent: Agent, name: str) -> list[str]:
    return [event.kind for event in agent.store.list_events(name, limit=200)]


@pytest.fixture(scope="module")
async def napper(api: Api, version: str, sandbox: Sandbox) -> dict[str, Any]:
    created = await create(api, version, "napper", sleep_after=SLEEP_AFTER)
    domain = created["data"]["domain"]
    status, _body = await through_caddy(sandbox, domain)
    assert status == 200
    return {"name": "napper", "domain": domain}


async def test_an_idle_service_sleeps_and_a_resync_leaves_it_asleep(
    agent: Agent, api: Api, napper: dict[str, Any]
) -> None:
    name = napper["name"]
    await fall_asleep(agent, api, name)
    assert "sleeping" in kinds(agent, name)
    listed = await api.call("GET", "/services", params={"status": "active"})
    assert name in [service["project_name"] for service in listed.body["services"]]
    only = await api.call("GET", "/services", params={"status": "sleeping"})
    assert [service["project_name"] for service in only.body["services"]] == [name]
    # A resync (and the health prober's rounds, each second here) repairs nothing.
    for _ in range(2):
        agent.enqueue_many(agent.known_names())
        assert await agent.wait_reconciled(name, 20)
    await asyncio.sleep(2.5)
    assert not await unit_running(agent, name)
    assert await state_of(api, name) == "sleeping"
    assert "woken" not in kinds(agent, name)
    await agent.alerts.evaluate_now()  # asleep for longer than service_down's second
    assert "alert_firing" not in kinds(agent, name)


async def watched(api: Api, query: str) -> dict[str, str]:
    """What a fresh list watch sends before ``synced``: each name with its status."""
    headers = {"Authorization": f"Bearer {api.token}", "Accept": "text/event-stream"}
    seen: dict[str, str] = {}
    async with api.session.get(
        f"{api.root}/services?watch=true{query}",
        headers=headers,
        timeout=aiohttp.ClientTimeout(total=None),
    ) as response:
        assert response.status == 200, await response.text()
        while True:
            (event,) = await read_sse(response, 1)
            if event.get("event") == "synced":
                return seen
            seen[event["data"]["project_name"]] = event["data"]["status"]


async def test_a_watch_shows_a_sleeping_service_as_the_list_does(
    agent: Agent, api: Api, napper: dict[str, Any]
) -> None:
    name = napper["name"]
    await fall_asleep(agent, api, name)
    assert (await watched(api, ""))[name] == "sleeping"
    assert await watched(api, "&status=sleeping") == {name: "sleeping"}
    assert (await watched(api, "&status=active")).get(name) == "sleeping"
    assert name not in await watched(api, "&status=error")


async def test_requests_through_caddy_wake_a_sleeping_service_and_none_fails(
    agent: Agent, api: Api, sandbox: Sandbox, napper: dict[str, Any]
) -> None:
    name, domain = napper["name"], napper["domain"]
    await fall_asleep(agent, api, name)
    last_seen = agent.store.list_events(name, limit=1)[0].id

    async def reconcile_at_the_knock() -> None:
        """A reconcile queued while the wake's own start is under way (a resync, a status
        change) must not take the unit for one that stopped."""
        # No event says "knocked"; a 1 ms look lands inside the wake's start.
        while agent.reconciler.sleep.is_asleep(name):  # noqa: ASYNC110
            await asyncio.sleep(0.001)
        agent.enqueue(name)

    # A burst: GETs and POSTs (which Caddy does not retry once connected) at once.
    answers = await asyncio.gather(
        reconcile_at_the_knock(),
        *(through_caddy(sandbox, domain) for _ in range(8)),
        *(
            through_caddy(
                sandbox,
                domain,
                "POST",
                "/api/collections/_superusers/auth-with-password",
                json={"identity": "nobody@example.com", "password": "wrong-password"},
            )
            for _ in range(4)
        ),
    )
    statuses = [status for status, _body in answers[1:]]
    assert statuses[:8] == [200] * 8, answers
    assert statuses[8:] == [400] * 4, answers  # PocketBase's own answer, not Caddy's 502
    assert await unit_running(agent, name)
    assert await agent.wait_reconciled(name, 20)
    since = [e.kind for e in agent.store.list_events(name, limit=200) if e.id > last_seen]
    assert "woken" in since and "drift_repaired" not in since, since

    async def active() -> bool:
        return await state_of(api, name) == "active"

    assert await wait_until(active, 20, 0.1)


async def test_a_control_start_wakes_a_sleeping_service(
    agent: Agent, api: Api, napper: dict[str, Any]
) -> None:
    name = napper["name"]
    await fall_asleep(agent, api, name)
    reply = await api.call("POST", f"/services/{name}/control", {"action": "start"})
    assert reply.status == 200, reply.body
    assert await unit_running(agent, name)
    assert reply.body["service"]["status"] == "active"


async def test_a_request_in_flight_through_caddy_keeps_a_service_awake_past_sleep_after(
    agent: Agent, api: Api, sandbox: Sandbox, napper: dict[str, Any]
) -> None:
    """A realtime subscription writes its access-log line only when it ends: Caddy's count
    of the requests it proxies keeps the instance awake while one is open."""
    name, domain = napper["name"], napper["domain"]
    status, _body = await through_caddy(sandbox, domain)  # awake now, whatever it was
    assert status == 200
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            sandbox.caddy_url + "/api/realtime",
            headers={"Host": domain, "Accept": "text/event-stream"},
            timeout=aiohttp.ClientTimeout(total=None, sock_read=60),
        ) as stream,
    ):
        assert stream.status == 200
        first = await stream.content.readline()
        assert first.startswith(b"id:"), first  # PocketBase's PB_CONNECT event
        sleeps_before = kinds(agent, name).count("sleeping")
        await asyncio.sleep(2.5 * int(SLEEP_AFTER.rstrip("s")))  # past sleep_after twice
        assert await unit_running(agent, name)
        assert await state_of(api, name) == "active"
        assert kinds(agent, name).count("sleeping") == sleeps_before
        assert not stream.content.at_eof()
    await fall_asleep(agent, api, name)  # and once it has ended, it sleeps


async def test_a_wake_schedule_wakes_a_sleeping_service_with_no_request(
    agent: Agent, api: Api, version: str
) -> None:
    """Every minute: woken a minute before the next minute's time, so within about 60 s."""
    await create(api, version, "cron", sleep_after=SLEEP_AFTER, wake_schedule="* * * * *")

    def woken_on_schedule() -> list[str]:
        events = agent.store.list_events("cron", limit=200)
        return [e.message for e in events if e.kind == "woken" and "scheduled" in e.message]

    async def slept_then_woken() -> bool:
        # By the events, which stay: the sleep may last well under a second.
        return "sleeping" in kinds(agent, "cron") and bool(woken_on_schedule())

    assert await wait_until(slept_then_woken, 100, 0.5), kinds(agent, "cron")
    assert woken_on_schedule() == ["woken: scheduled (* * * * *)"]

    async def running() -> bool:
        return await unit_running(agent, "cron")

    assert await wait_until(running, 20, 0.1)  # the start follows the event
    await api.call("DELETE", "/services/cron")


async def test_a_service_asleep_across_an_agent_restart_stays_asleep_and_still_wakes(
    agent: Agent, api: Api, sandbox: Sandbox, napper: dict[str, Any], agent_config: AgentConfig
) -> None:
    """Last in the module: it stops the module's agent and runs a second one."""
    name, domain = napper["name"], napper["domain"]
    await fall_asleep(agent, api, name)
    await agent.stop()
    second = Agent(agent_config)
    await second.start()
    try:
        assert await second.wait_reconciled(name, 20)
        assert second.sleeping(name)
        assert not await unit_running(second, name)
        status, body = await through_caddy(sandbox, domain)
        assert (status, '"code":200' in body) == (200, True), body
        assert await unit_running(second, name)
        assert not second.sleeping(name)
    finally:
        await second.stop()
