"""A service whose node's lease has ended reads "Node lost" in the dashboard, in Chromium:
its row's badge and node column, and the status filter's "Node lost" keeps it alone.

The agent's store is a real PostgreSQL server (a fleet's store: one host's SQLite holds a
single node), where a second node registers and its lease ends at once.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from pockestrator.agent.daemon import Agent
from pockestrator.agent.sandbox import Sandbox, free_port
from pockestrator.config import AgentConfig, StoreConfig
from pockestrator.specs.store import NodeInfo
from tests.e2e.browser import Dashboard, row
from tests.testbed.api_client import Api, create
from tests.testbed.mirror import ReleaseMirror
from tests.testbed.postgres import PostgresServer

expect = pytest.importorskip("playwright.async_api").expect

pytestmark = pytest.mark.e2e

UI_TIMEOUT_MS = 15_000


@pytest.fixture(scope="module")
async def agent_config(
    sandbox: Sandbox, release_mirror: ReleaseMirror, postgres_server: PostgresServer
) -> AgentConfig:
    """conftest's agent, node "alpha" of a fleet whose store is a fresh database."""
    store = StoreConfig(
        backend="postgresql",
        dsn=postgres_server.dsn(postgres_server.new_database()),
        password_file=postgres_server.password_file,
        sslmode="disable",  # loopback
    )
    return release_mirror.agent_config(sandbox, store=store, node_name="alpha", health_interval=1.0)


async def test_a_lost_nodes_service_shows_the_node_lost_badge_and_the_filter_keeps_it(
    dashboard: Dashboard, api: Api, agent: Agent, newer: str
) -> None:
    await create(api, newer, "at-home")
    # Node delta registered once and went away: its lease is over.
    agent.store.register_node(
        NodeInfo("delta", f"http://127.0.0.1:{free_port()}", "", 1024**3, 1), timedelta(0)
    )
    body = {"project_name": "stranded", "port": free_port(), "pocketbase_version": newer}
    reply = await api.call("POST", "/services", {**body, "node": "delta"})
    assert reply.status == 201, reply.body

    page = dashboard.page
    await dashboard.sign_in("/services")
    stranded, at_home = row(dashboard, "stranded"), row(dashboard, "at-home")
    await expect(stranded.locator(".badge")).to_have_text("Node lost", timeout=UI_TIMEOUT_MS)
    await expect(stranded.locator(".badge")).to_have_class(re.compile(r"\bbadge-node_lost\b"))
    await expect(stranded.locator(".node")).to_have_text("delta")
    await expect(at_home.locator(".badge")).to_have_text("Active", timeout=UI_TIMEOUT_MS)
    await expect(at_home.locator(".node")).to_have_text("alpha")
    await dashboard.shot("node-lost-in-the-list")

    await page.get_by_label("Status").select_option(label="Node lost")
    await expect(at_home).to_have_count(0, timeout=UI_TIMEOUT_MS)
    await expect(stranded).to_have_count(1)
    assert set(await page.locator("tbody .badge").all_text_contents()) == {"Node lost"}
    assert page.url.endswith("#/services?status=node_lost")
    await dashboard.shot("node-lost-only")
