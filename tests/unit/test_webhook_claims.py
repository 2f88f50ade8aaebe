"""The delivery worker on a fleet's shared outbox: an agent starting leaves another agent's
claims alone (it may be sending them that moment), and a claim never finished lapses and is
sent again by whichever worker sees it, with the same key. The clock is a ``FakeClock``
shared by both agents, so a claim lapses only when the test moves it: nothing here depends
on how fast the machine is."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from aiohttp import web

from pockestrator.agent.webhooks import WebhookDispatcher
from pockestrator.clock import FakeClock
from pockestrator.config import AgentConfig
from pockestrator.specs.store import Store
from tests.testbed.receivers import receiving
from tests.testbed.store_backends import StoreBackend
from tests.testbed.waiting import wait_until


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[list[tuple[str, int]], str]]:
    """Every request as (idempotency key, attempt); each answered 200."""
    seen: list[tuple[str, int]] = []

    async def handle(request: web.Request) -> web.Response:
        document = json.loads(await request.read())
        seen.append((document["idempotency_key"], int(request.headers["X-Pockestrator-Attempt"])))
        return web.Response(status=200)

    async with receiving("/hook", handle) as url:
        yield seen, url


@pytest.mark.parametrize("store_backend", ["postgresql"], indirect=True)
async def test_a_starting_agent_leaves_another_s_claim_until_it_lapses_then_sends_it_once(
    store_backend: StoreBackend, receiver: tuple[list[tuple[str, int]], str]
) -> None:
    seen, url = receiver
    clock = FakeClock()
    sender = Store(store_backend.open(), clock=clock, node="beta")
    sender.create_webhook(url, created_by="t")
    in_flight = sender.add_event("blog", "reconciled", "beta is sending this one")
    (held,) = sender.claim_due(1)  # beta's worker has it, and never answers

    config = AgentConfig(webhook_timeout=5.0)
    starting = Store(store_backend.open(), clock=clock, node="alpha")
    assert starting.shared
    worker = WebhookDispatcher(starting, lambda: config, clock)
    running = asyncio.create_task(worker.run())
    try:
        fresh = starting.add_event("blog", "reconciled", "alpha's own")
        assert await wait_until(lambda: _heard(seen, str(fresh.id)), 10, 0.02)
        assert seen == [(str(fresh.id), 1)], "the claim beta holds was not released"
        assert starting.outbox_state(held.webhook.id, in_flight.id) == ("sending", 1)

        clock.advance(worker.claim_lapse().total_seconds() + 1)
        worker.wake()
        assert await wait_until(lambda: _heard(seen, str(in_flight.id)), 10, 0.02)
        await asyncio.sleep(0.2)  # a second send, were there one, would be in by now
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
    assert seen == [(str(fresh.id), 1), (str(in_flight.id), 2)]
    late = sender.finish(
        held,
        "delivered",
        started=datetime.now(UTC),
        duration_ms=1.0,
        status_code=200,
        error=None,
    )
    assert not late, "beta's answer, after its claim lapsed and was taken, is not recorded"
    assert starting.outbox_state(held.webhook.id, in_flight.id) == ("delivered", 2)


def test_a_claim_lasts_the_request_s_timeout_and_a_margin() -> None:
    config = AgentConfig(webhook_timeout=7.0)
    worker = WebhookDispatcher(None, lambda: config, FakeClock())  # type: ignore[arg-type]
    assert worker.claim_lapse() == timedelta(seconds=37)


async def _heard(seen: list[tuple[str, int]], key: str) -> bool:
    return any(found == key for found, _attempt in seen)
