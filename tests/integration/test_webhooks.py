"""Webhooks end to end: a receiver started here gets signed events, once per key.

The agent runs as deployed (a unit of the test bed's manager, ``tests/testbed/agent_unit``)
so that it can be killed with SIGKILL and started again by systemd. The receiver is an
aiohttp server in the test that checks every signature with the secret the API showed
once, and processes each idempotency key at most once, as docs/observability.md tells receivers
to: the test proves what it saw, request by request.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from pockestrator.accounts.store import AccountStore
from pockestrator.agent.daemon import Agent
from pockestrator.agent.sandbox import Sandbox
from pockestrator.agent.signatures import verify
from pockestrator.client import exits
from pockestrator.config import AgentConfig
from pockestrator.database import Database
from tests.testbed.agent_unit import AgentUnit
from tests.testbed.api_client import Api, api_for, create, read_sse, wait_running
from tests.testbed.cli_env import Cli
from tests.testbed.receivers import receiving
from tests.testbed.waiting import wait_until


@dataclass
class Received:
    key: str
    kind: str
    attempt: int
    signed: bool
    service: str | None


@dataclass
class Receiver:
    """A webhook receiver: checks signatures, answers as told, processes each key once."""

    secret: str = ""
    requests: list[Received] = field(default_factory=list)
    processed: Counter[str] = field(default_factory=Counter)
    fail_first: set[str] = field(default_factory=set)  # kinds answered 500 the first time
    # Kinds whose first delivery runs this after processing and before answering.
    before_answer: dict[str, Callable[[], Awaitable[None]]] = field(default_factory=dict)
    _failed: set[str] = field(default_factory=set)

    def keys(self, kind: str) -> list[str]:
        return [r.key for r in self.requests if r.kind == kind]

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        signed = verify(
            self.secret,
            request.headers.get("X-Pockestrator-Timestamp", ""),
            body,
            request.headers.get("X-Pockestrator-Signature", ""),
            now=time.time(),
        )
        document = json.loads(body)
        key = document["idempotency_key"]
        kind = document["event"]["kind"]
        self.requests.append(
            Received(
                key,
                kind,
                int(request.headers["X-Pockestrator-Attempt"]),
                signed,
                document["event"]["service"],
            )
        )
        assert request.headers["Idempotency-Key"] == key
        if not signed:
            return web.Response(status=401)
        if kind in self.fail_first and key not in self._failed:
            self._failed.add(key)
            return web.Response(status=500, text="receiver failing on purpose")
        if self.processed[key]:
            return web.Response(status=200, text="duplicate, dropped")
        self.processed[key] += 1
        hook = self.before_answer.pop(kind, None)
        if hook is not None:
            await hook()
        return web.Response(status=200, text="ok")


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    hooks = Receiver()
    async with receiving("/hook", hooks.handle) as url:
        yield hooks, url


async def _answers(api: Api) -> bool:
    try:
        return (await api.call("GET", "/system/health")).status == 200
    except aiohttp.ClientError:
        return False


async def _outbox_state(api: Api, webhook_id: str) -> dict[str, int]:
    reply = await api.call("GET", f"/webhooks/{webhook_id}")
    assert reply.status == 200, reply.body
    return dict(reply.body["deliveries"])


async def test_a_killed_services_event_reaches_the_receiver_signed_once_across_an_agent_kill(
    sandbox: Sandbox,
    agent_config: AgentConfig,
    pocketbase_versions: tuple[str, str],
    receiver: tuple[Receiver, str],
) -> None:
    hooks, url = receiver
    config = agent_config.model_copy(update={"webhook_retry_base": 0.2, "webhook_retry_cap": 1.0})
    unit = AgentUnit(sandbox, config, watchdog_seconds=30)
    await unit.start()
    database = Database(config.database)
    try:
        token, _record = AccountStore(database).create_token("webhook test")
    finally:
        database.close()
    async with aiohttp.ClientSession() as session:
        api = Api(
            session, f"http://{config.listen_host}:{config.listen_port}/api/pockestrator", token
        )
        try:
            created = await api.call(
                "POST", "/webhooks", {"url": url, "kinds": ["process_restarted"]}
            )
            assert created.status == 201, created.body
            webhook_id, hooks.secret = created.body["id"], created.body["secret"]
            listed = await api.call("GET", "/webhooks")
            assert hooks.secret not in json.dumps(listed.body), "the secret is shown only once"

            # A receiver answering 500 gets the event again, later, with the same key.
            hooks.fail_first.add("webhook_test")
            queued = await api.call("POST", f"/webhooks/{webhook_id}/test")
            assert queued.status == 202, queued.body
            test_key = str(queued.body["event_id"])
            assert await wait_until(lambda: _delivered(api, webhook_id, 1), 20, 0.1)
            assert [(r.key, r.attempt) for r in hooks.requests] == [(test_key, 1), (test_key, 2)]
            log = await api.call("GET", f"/webhooks/{webhook_id}/deliveries")
            assert [(d["status_code"], d["outcome"]) for d in log.body["deliveries"]] == [
                (200, "delivered"),
                (500, "retry"),
            ]

            # The agent dies between the receiver's processing and its 2xx being recorded.
            async def kill_agent() -> None:
                os.kill(await unit.main_pid(), signal.SIGKILL)

            hooks.before_answer["process_restarted"] = kill_agent
            await create(api, pocketbase_versions[1], "victim")
            status = await wait_running(api, "victim")
            os.kill(status["pid"], signal.SIGKILL)

            async def sent_again() -> bool:
                return len(hooks.keys("process_restarted")) >= 2

            assert await wait_until(sent_again, 60, 0.1), hooks.requests
            assert await wait_until(lambda: _answers(api), 30, 0.1)
            assert await wait_until(lambda: _delivered(api, webhook_id, 2), 20, 0.1)
            (key,) = set(hooks.keys("process_restarted"))
            assert hooks.processed[key] == 1, "the receiver processed the event once"
            again = [r for r in hooks.requests if r.key == key]
            assert [r.attempt for r in again] == [1, 2] and again[0].service == "victim"

            # Acknowledged and recorded: another agent restart does not send it again.
            os.kill(await unit.main_pid(), signal.SIGKILL)
            await asyncio.sleep(0.5)
            assert await wait_until(lambda: _answers(api), 30, 0.1)
            second = await api.call("POST", f"/webhooks/{webhook_id}/test")
            assert await wait_until(lambda: _delivered(api, webhook_id, 3), 20, 0.1)
            assert hooks.keys("process_restarted") == [key, key]
            assert hooks.keys("webhook_test")[-1] == str(second.body["event_id"])
            assert all(r.signed for r in hooks.requests), hooks.requests
            assert await _outbox_state(api, webhook_id) == {
                "pending": 0,
                "sending": 0,
                "delivered": 3,
                "failed": 0,
            }
        finally:
            await api.call("DELETE", "/services/victim", params={"purge": "true"})
            await unit.stop()


async def _delivered(api: Api, webhook_id: str, count: int) -> bool:
    try:
        return (await _outbox_state(api, webhook_id))["delivered"] >= count
    except (aiohttp.ClientError, AssertionError):
        return False


async def test_the_follow_stream_sees_a_new_event_and_resumes_after_last_event_id(
    agent: Agent,
) -> None:
    async with api_for(agent) as api:
        created = await api.call("POST", "/webhooks", {"url": "http://127.0.0.1:9/none"})
        webhook_id = created.body["id"]
        headers = {"Authorization": f"Bearer {api.token}"}
        stream_url = f"{api.root}/events"
        async with api.session.get(
            stream_url, params={"follow": "true"}, headers=headers
        ) as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/event-stream")
            first = await api.call("POST", f"/webhooks/{webhook_id}/test")
            second = await api.call("POST", f"/webhooks/{webhook_id}/test")
            events = await read_sse(response, 2, 15.0)
        ids = [str(first.body["event_id"]), str(second.body["event_id"])]
        assert [event["id"] for event in events] == ids
        assert [event["data"]["kind"] for event in events] == ["webhook_test"] * 2
        assert events[0]["data"]["service"] is None

        # A reconnect with the first id gets what came after it, nothing before.
        async with api.session.get(
            stream_url,
            params={"follow": "true"},
            headers={**headers, "Last-Event-ID": ids[0]},
        ) as response:
            (resumed,) = await read_sse(response, 1, 15.0)
        assert resumed["id"] == ids[1]

        # Without follow, the answer is a page of the log, newest first.
        page = await api.call("GET", "/events", params={"limit": "2"})
        assert [str(e["id"]) for e in page.body["events"]] == ids[::-1]
        refused = await api.call(
            "GET", "/events", params={"follow": "true"}, headers={"Last-Event-ID": "x"}
        )
        assert refused.status == 400 and refused.codes() == {"Last-Event-ID": "INVALID_VALUE"}
        await api.call("DELETE", f"/webhooks/{webhook_id}")


async def test_the_cli_adds_tests_lists_and_deletes_a_webhook_and_follows_events(
    agent: Agent, receiver: tuple[Receiver, str], tmp_path: Path
) -> None:
    hooks, url = receiver
    cli = Cli.for_agent(agent, tmp_path, "cli webhooks")
    follow = await cli.start("events", "-f", "-o", "json")
    try:
        added = await cli("webhooks", "add", url, "--kind", "process_restarted")
        assert added.code == 0, added
        hooks.secret = added.out.strip()
        assert len(hooks.secret) >= 40 and "shown only this once" in added.err
        listed = await cli("webhooks", "list", "-o", "json")
        (webhook,) = [h for h in listed.json() if h["url"] == url]
        assert hooks.secret not in listed.out
        assert webhook["kinds"] == ["process_restarted"]

        tested = await cli("webhooks", "test", webhook["id"], "-o", "json")
        assert tested.code == 0, tested
        (delivery,) = tested.json()
        assert (delivery["status_code"], delivery["outcome"]) == (200, "delivered")
        assert [r.signed for r in hooks.requests] == [True]
        shown = await cli("webhooks", "deliveries", webhook["id"])
        assert shown.code == 0 and "delivered" in shown.out

        assert follow.stdout is not None
        streamed: list[dict[str, Any]] = []
        while not any(e["id"] == delivery["event_id"] for e in streamed):
            streamed.append(json.loads(await asyncio.wait_for(follow.stdout.readline(), 20)))
        assert streamed[-1]["kind"] == "webhook_test"

        deleted = await cli("webhooks", "delete", webhook["id"])
        assert deleted.code == 0, deleted
        gone = await cli("webhooks", "test", webhook["id"])
        assert gone.code == exits.NOT_FOUND and "WEBHOOK_NOT_FOUND" in gone.err
        refused = await cli("webhooks", "add", "http://user:pw@example.com/hook")
        assert refused.code == exits.INVALID and "INVALID_WEBHOOK_URL" in refused.err
    finally:
        follow.send_signal(signal.SIGINT)
        code = await asyncio.wait_for(follow.wait(), 20)
    assert code == 0


async def test_a_receiver_that_never_answers_holds_no_reconcile(
    agent: Agent, pocketbase_versions: tuple[str, str]
) -> None:
    """Deliveries run beside the reconciler: with every delivery slot held by a receiver
    that does not answer, a service is still created, reconciled and running."""
    held = asyncio.Event()
    arrived = 0

    async def hang(request: web.Request) -> web.Response:
        nonlocal arrived
        arrived += 1
        await held.wait()
        return web.Response(status=200)

    async with receiving("/slow", hang) as url:
        try:
            async with api_for(agent) as api:
                created = await api.call("POST", "/webhooks", {"url": url})
                webhook_id = created.body["id"]
                for _ in range(agent.config.webhook_concurrency):
                    await api.call("POST", f"/webhooks/{webhook_id}/test")
                assert await wait_until(
                    lambda: _async_true(arrived >= agent.config.webhook_concurrency), 10, 0.05
                )
                await create(api, pocketbase_versions[1], "steady")
                await wait_running(api, "steady")
                counts = await _outbox_state(api, webhook_id)
                assert counts["sending"] == agent.config.webhook_concurrency, counts
                assert counts["pending"] >= 1, "the service's own events wait their turn"
                held.set()
                assert await wait_until(lambda: _drained(api, webhook_id), 20, 0.1)
                await api.call("DELETE", f"/webhooks/{webhook_id}")
                await api.call("DELETE", "/services/steady", params={"purge": "true"})
        finally:
            held.set()


async def _async_true(value: bool) -> bool:
    return value


async def _drained(api: Api, webhook_id: str) -> bool:
    counts = await _outbox_state(api, webhook_id)
    return counts["pending"] == counts["sending"] == 0


@pytest.mark.parametrize(
    ("body", "field", "code"),
    [
        ({"url": "http://user:pw@example.com/in"}, "url", "INVALID_WEBHOOK_URL"),
        ({"url": "ftp://example.com/in"}, "url", "INVALID_WEBHOOK_URL"),
        ({"url": "https://example.com/in?token=x"}, "url", "INVALID_WEBHOOK_URL"),
        ({"url": "https://Example.com/in"}, "url", "INVALID_WEBHOOK_URL"),
        ({"url": "https://example.com:0/in"}, "url", "INVALID_WEBHOOK_URL"),
        ({"url": "https://example.com", "kinds": ["Crash Loop"]}, "kinds.0", "INVALID_EVENT_KIND"),
        ({"url": "https://example.com", "services": ["-x"]}, "services.0", None),
        ({"url": "https://example.com", "secret": "mine"}, "secret", None),
        ({}, "url", "FIELD_REQUIRED"),
    ],
)
async def test_a_webhook_that_cannot_be_is_refused_naming_the_field(
    agent: Agent, body: dict[str, Any], field: str, code: str | None
) -> None:
    async with api_for(agent) as api:
        before = (await api.call("GET", "/webhooks")).body["total"]
        reply = await api.call("POST", "/webhooks", body)
        assert reply.status == 400, reply.body
        assert field in reply.codes(), reply.body
        if code is not None:
            assert reply.codes()[field] == code
        assert (await api.call("GET", "/webhooks")).body["total"] == before, "nothing was made"


async def test_an_unknown_webhook_is_a_404_naming_its_code(agent: Agent) -> None:
    async with api_for(agent) as api:
        for method, path in [
            ("GET", "/webhooks/wh_0000000000000000"),
            ("DELETE", "/webhooks/wh_0000000000000000"),
            ("POST", "/webhooks/not-an-id/test"),
            ("GET", "/webhooks/wh_0000000000000000/deliveries"),
        ]:
            reply = await api.call(method, path)
            assert (reply.status, reply.body["code"]) == (404, "WEBHOOK_NOT_FOUND"), path
