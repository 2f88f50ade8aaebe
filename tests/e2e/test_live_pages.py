"""The services list and a service's page follow the agent's watch stream, in Chromium.

While nothing changes the page asks nothing: the requests it makes are counted over an
idle stretch and the only one open is its stream, opened before. A change made elsewhere
(through the API, or the agent's own status writes) shows without a reload, and costs a
request only for what it changed. The host banner follows the event stream and asks
``/system/health`` only when an event comes (a change made elsewhere records one), so an
idle page sends nothing at all.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from pockestrator.config import AgentConfig
from tests.e2e.browser import Dashboard, row
from tests.testbed.api_client import Api, create

expect = pytest.importorskip("playwright.async_api").expect

pytestmark = pytest.mark.e2e

IDLE_SECONDS = 5.0
UI_TIMEOUT_MS = 15_000


@pytest.fixture(scope="module")
async def agent_config(agent_config: AgentConfig) -> AgentConfig:
    """Probes a loaded machine answers in time: one that timed out at 2 s (load 18) turned
    live-one unhealthy in the idle stretch, and the page rightly asked for its status."""
    return agent_config.model_copy(update={"health_timeout": 30.0})


@pytest.fixture(scope="module")
async def api(api: Api, newer: str) -> Api:
    """conftest's client, once the two services every test here watches run."""
    for name in ("live-one", "live-two"):
        await create(api, newer, name)
    return api


class Requests:
    """Every request the page starts, by URL path and query."""

    def __init__(self, page: Any) -> None:
        self.seen: list[str] = []
        page.on("request", lambda request: self.seen.append(request.url))

    def mark(self) -> int:
        return len(self.seen)

    def since(self, mark: int) -> list[str]:
        return [url.split("/api/pockestrator", 1)[-1] for url in self.seen[mark:]]

    async def quiet(self, seconds: float = 1.0, limit: float = 30.0) -> None:
        """Until the page has started no request for ``seconds`` (its first state loaded;
        on a loaded machine that takes longer than a fixed pause)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        while True:
            mark = self.mark()
            await asyncio.sleep(seconds)
            if self.mark() == mark:
                return
            assert loop.time() < deadline, f"the page never went quiet: {self.since(mark)}"


async def test_the_services_list_asks_nothing_while_idle_and_shows_a_change_made_elsewhere(
    dashboard: Dashboard, api: Api
) -> None:
    requests = Requests(dashboard.page)
    await dashboard.sign_in("/services")
    await expect(row(dashboard, "live-one")).to_have_count(1)
    await expect(row(dashboard, "live-two")).to_have_count(1)
    await requests.quiet()  # the first state settles (the stream's snapshot compared)
    opened = requests.since(0)
    assert any(url.startswith("/services?watch=true") for url in opened), opened
    assert any(url.startswith("/events?follow=true") for url in opened), opened

    idle = requests.mark()
    await asyncio.sleep(IDLE_SECONDS)
    assert requests.since(idle) == []

    two = (await api.call("GET", "/services/live-two")).body
    changed = requests.mark()
    reply = await api.call("POST", "/services/live-two/control", {"action": "stop"})
    assert reply.status == 200, reply.body
    badge = row(dashboard, "live-two").locator(".badge")
    await expect(badge).to_have_text("Stopped", timeout=UI_TIMEOUT_MS)
    await expect(row(dashboard, "live-one").locator(".badge")).to_have_text("Active")
    # The change cost the changed row's status, not a round of every row.
    asked = requests.since(changed)
    assert asked, "a row changed without asking for its status"
    # (and the banner's one look at the host, for the events the stop recorded)
    assert set(asked) - {"/system/health"} == {f"/services/{two['id']}/status"}, asked
    await dashboard.shot("stopped-live")
    reply = await api.call("POST", "/services/live-two/control", {"action": "start"})
    assert reply.status == 200, reply.body
    await expect(badge).to_have_text("Active", timeout=UI_TIMEOUT_MS)


async def test_a_service_page_asks_nothing_while_idle_and_shows_a_stop_made_elsewhere(
    dashboard: Dashboard, api: Api
) -> None:
    requests = Requests(dashboard.page)
    await dashboard.sign_in("/services/live-one")
    state = dashboard.page.locator("main .badge").first
    await expect(state).to_have_text("Active")
    await requests.quiet()
    assert any("/services/" in url and "watch=true" in url for url in requests.since(0))

    idle = requests.mark()
    await asyncio.sleep(IDLE_SECONDS)
    assert requests.since(idle) == []

    reply = await api.call("POST", "/services/live-one/control", {"action": "stop"})
    assert reply.status == 200, reply.body
    await expect(state).to_have_text("Stopped", timeout=UI_TIMEOUT_MS)
    reply = await api.call("POST", "/services/live-one/control", {"action": "start"})
    assert reply.status == 200, reply.body
    await expect(state).to_have_text("Active", timeout=UI_TIMEOUT_MS)
