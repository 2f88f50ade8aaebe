"""A whole agent on the PostgreSQL store: what was built on one host's SQLite file
(webhooks and their outbox, idempotency keys, the alert rules) works the same with the
fleet's store, against a real PostgreSQL server, the test bed's systemd and Caddy and real
PocketBase.

A webhook receiver on loopback (``test_webhooks.Receiver``: it checks every signature and
records every request) gets a service's events; a create retried with its
``Idempotency-Key`` gets the first answer and makes one service; a service killed and held
down fires ``service_down`` and the receiver gets the alert. A second delivery worker on a
store client of its own (another agent of the fleet, sharing the outbox) competes for the
same rows: no receiver gets an event twice.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest
from aiohttp import web

from pockestrator.agent.daemon import Agent
from pockestrator.agent.sandbox import Sandbox, free_port
from pockestrator.agent.webhooks import WebhookDispatcher
from pockestrator.clock import SYSTEM_CLOCK
from pockestrator.config import AgentConfig, AlertRules, StoreConfig
from pockestrator.database_postgres import PostgresDatabase
from pockestrator.specs.store import Claimed, Store
from tests.integration.test_webhooks import Receiver
from tests.testbed.api_client import Api, wait_running
from tests.testbed.held_port import killed_and_held
from tests.testbed.postgres import PostgresServer
from tests.testbed.receivers import receiving
from tests.testbed.waiting import wait_until

# Each answer takes this long, so that a burst fills one worker's slots and the other
# worker's claims find rows too.
ANSWER_SECONDS = 0.05


@pytest.fixture(scope="module")
def store_dsn(postgres_server: PostgresServer) -> str:
    return postgres_server.dsn(postgres_server.new_database())


@pytest.fixture(scope="module")
async def agent_config(
    sandbox: Sandbox, agent_config: AgentConfig, postgres_server: PostgresServer, store_dsn: str
) -> AgentConfig:
    store = StoreConfig(
        backend="postgresql",
        dsn=store_dsn,
        password_file=postgres_server.password_file,
        sslmode="disable",  # loopback; a fleet's default is verify-full
    )
    rules = AlertRules(service_down_seconds=2.0, restart_loop_count=2, restart_loop_minutes=1)
    return agent_config.model_copy(
        update={
            "store": store,
            "node_name": "solo",
            "node_public_address": f"127.0.0.1:{sandbox.caddy_http_port}",
            "alerts": rules,
            "webhook_retry_base": 0.2,
            "webhook_retry_cap": 1.0,
        }
    )


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    hooks = Receiver()

    async def slowly(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(ANSWER_SECONDS)
        return await hooks.handle(request)

    async with receiving("/hook", slowly) as url:
        yield hooks, url


def _rows(server: PostgresServer, dsn: str, sql: str) -> list[tuple[Any, ...]]:
    """What the PostgreSQL database itself holds (not what the agent says it holds)."""
    with psycopg.connect(dsn, password=server.password, autocommit=True) as connection:
        return list(connection.execute(sql).fetchall())


async def test_the_agent_keeps_its_state_in_postgresql_and_a_retried_create_makes_one_service(
    api: Api,
    agent: Agent,
    postgres_server: PostgresServer,
    store_dsn: str,
    pocketbase_versions: tuple[str, str],
) -> None:
    assert agent.store.shared, "the agent's store is the PostgreSQL one"
    key = str(uuid.uuid4())
    body = {
        "project_name": "retried",
        "port": free_port(),
        "pocketbase_version": pocketbase_versions[1],
        "superuser_email": "admin@example.com",
    }
    first = await api.call("POST", "/services", body, headers={"Idempotency-Key": key})
    assert first.status == 201, first.body
    password = first.body["superuser_password"]
    again = await api.call("POST", "/services", body, headers={"Idempotency-Key": key})
    assert (again.status, again.body) == (201, first.body)
    assert again.headers["Idempotent-Replayed"] == "true"
    other = {**body, "port": free_port()}
    reused = await api.call("POST", "/services", other, headers={"Idempotency-Key": key})
    assert reused.status == 422 and reused.codes() == {"Idempotency-Key": "IDEMPOTENCY_KEY_REUSED"}
    await wait_running(api, "retried", timeout=60)
    names = _rows(postgres_server, store_dsn, "SELECT name, node FROM services")
    assert names == [("retried", "solo")]
    sealed = _rows(postgres_server, store_dsn, "SELECT lookup, sealed FROM idempotency_keys")
    assert len(sealed) == 1, "one key, kept in PostgreSQL"
    assert password.encode() not in bytes(sealed[0][1]) and key not in sealed[0][0]


async def test_a_killed_service_s_alert_reaches_the_receiver_once_with_two_workers_competing(
    api: Api,
    agent: Agent,
    postgres_server: PostgresServer,
    store_dsn: str,
    receiver: tuple[Receiver, str],
    pocketbase_versions: tuple[str, str],
) -> None:
    hooks, url = receiver
    created = await api.call("POST", "/webhooks", {"url": url})
    assert created.status == 201, created.body
    webhook_id, hooks.secret = created.body["id"], created.body["secret"]

    # Another agent of the fleet: its own store client, its own delivery worker, woken by
    # every event this agent records, so the two take rows from one outbox at once.
    other_database = PostgresDatabase(
        store_dsn, path=agent.config.database, password=postgres_server.password, sslmode="disable"
    )
    other = CountingDispatcher(Store(other_database, node="other"), agent.config)
    stop_waking = agent.store.listen_events(other.wake)
    worker = asyncio.create_task(other.run())
    try:
        await _fire_service_down(api, agent, pocketbase_versions[1])

        async def alert_delivered() -> bool:
            return "alert_firing" in {r.kind for r in hooks.requests}

        assert await wait_until(alert_delivered, 30, 0.1), hooks.requests
        # A burst on top, for the two workers to compete over.
        burst = [api.call("POST", f"/webhooks/{webhook_id}/test") for _ in range(30)]
        assert {reply.status for reply in await asyncio.gather(*burst)} == {202}

        async def all_delivered() -> bool:
            counts = _rows(
                postgres_server,
                store_dsn,
                "SELECT count(*) FILTER (WHERE state <> 'delivered'), count(*) FROM outbox",
            )[0]
            return counts[0] == 0 and counts[1] >= 30

        assert await wait_until(all_delivered, 60, 0.2), await _deliveries(api, webhook_id)
        await asyncio.sleep(0.5)  # a duplicate, were one in flight, would arrive by now
    finally:
        stop_waking()
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)
        other_database.close()
    sent = Counter(r.key for r in hooks.requests)
    assert sent and max(sent.values()) == 1, f"an event was sent twice: {sent.most_common(3)}"
    assert all(r.signed for r in hooks.requests)
    assert 0 < other.sent < len(hooks.requests), "both workers delivered"
    # The service keeps recording events (it comes back up): rows delivered by now.
    delivered = _rows(
        postgres_server, store_dsn, "SELECT event_id FROM outbox WHERE state = 'delivered'"
    )
    assert {str(row[0]) for row in delivered} <= set(sent), "every delivered row was received"
    alert = next(r for r in hooks.requests if r.kind == "alert_firing")
    assert alert.service == "alerted"
    firing = _rows(
        postgres_server,
        store_dsn,
        "SELECT details FROM events WHERE kind = 'alert_firing' AND service = 'alerted'",
    )
    assert any('"service_down"' in row[0] for row in firing), firing


class CountingDispatcher(WebhookDispatcher):
    """A delivery worker of another agent, counting what it sent."""

    def __init__(self, store: Store, config: AgentConfig) -> None:
        super().__init__(store, lambda: config, SYSTEM_CLOCK)
        self.sent = 0

    async def _deliver(self, claimed: Claimed) -> None:
        self.sent += 1
        await super()._deliver(claimed)


async def _fire_service_down(api: Api, agent: Agent, version: str) -> None:
    """Create ``alerted``, kill its PocketBase and hold its port until ``service_down``
    fires (the agent's restarts cannot listen)."""
    body = {"project_name": "alerted", "port": free_port(), "pocketbase_version": version}
    reply = await api.call("POST", "/services", body)
    assert reply.status == 201, reply.body
    await wait_running(api, "alerted", timeout=60)
    unit = await agent.bus.unit_status("alerted-pocketbase.service")
    assert unit.main_pid is not None
    async with killed_and_held(unit.main_pid, body["port"]):

        async def fired() -> bool:
            events = agent.store.list_events("alerted", limit=100)
            return any(
                e.kind == "alert_firing" and e.details.get("rule") == "service_down" for e in events
            )

        assert await wait_until(fired, 20, 0.2), agent.store.list_events("alerted", limit=20)


async def _deliveries(api: Api, webhook_id: str) -> Any:
    return (await api.call("GET", f"/webhooks/{webhook_id}")).body
