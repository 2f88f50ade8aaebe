"""The history's charts in Chromium, with real data: a service on the test bed answers
requests sent through Caddy, the agent keeps a point a second (a minute in production),
and the page draws them with the vendored uPlot, on a desktop and on a phone. Screenshots
of both stay in test-artifacts/e2e/."""

from __future__ import annotations

import json
import re
from typing import Any

import aiohttp
import pytest

from pockestrator.agent.daemon import Agent
from pockestrator.agent.sandbox import Sandbox, free_port
from pockestrator.config import AgentConfig
from tests.e2e.browser import PHONE, Dashboard
from tests.testbed.waiting import http_get, wait_until

expect = pytest.importorskip("playwright.async_api").expect

pytestmark = pytest.mark.e2e

NAME = "charted"
DOMAIN = f"{NAME}.localhost"
CHART_TIMEOUT_MS = 20_000

# True when the canvas has a drawn pixel of the line's colour (not only axes and grid).
PAINTED = """canvas => {
  const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  for (let i = 0; i < data.length; i += 4) {
    const [r, g, b, a] = [data[i], data[i + 1], data[i + 2], data[i + 3]];
    if (a > 0 && b > 150 && r < 120 && g < 160) return true;
  }
  return false;
}"""


@pytest.fixture(scope="module")
async def agent_config(agent_config: AgentConfig) -> AgentConfig:
    return agent_config.model_copy(update={"history_interval": 1.0})


@pytest.fixture(scope="module")
async def charted(agent: Agent, sandbox: Sandbox, pocketbase_versions: tuple[str, str]) -> Any:
    """A running service with memory_max, and a history that holds its requests."""
    token, _record = agent.accounts.create_token("chart tests")
    root = f"http://127.0.0.1:{agent.config.listen_port}/api/pockestrator"
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    body = {
        "project_name": NAME,
        "port": free_port(),
        "pocketbase_version": pocketbase_versions[1],
        "resources": {"memory_max": "256M"},
    }
    async with aiohttp.ClientSession(headers=headers) as session:
        async with session.post(f"{root}/services?wait=true", data=json.dumps(body)) as reply:
            assert reply.status == 201, await reply.text()

        async def history_with_requests() -> bool:
            for _ in range(4):
                await http_get(f"{sandbox.caddy_url}/api/health", DOMAIN)
            async with session.get(f"{root}/services/{NAME}/history") as reply:
                series = (await reply.json())["series"]
            rates = [rate for rate in series["requests_per_second"] if rate]
            memory = [value for value in series["memory_bytes"] if value]
            return len(rates) >= 3 and len(memory) >= 3

        assert await wait_until(history_with_requests, 60, 0.3)
        yield


async def painted(locator: Any) -> bool:
    return bool(await locator.evaluate(PAINTED))


async def test_the_list_draws_sparklines_and_the_service_page_four_charts(
    dashboard: Dashboard, charted: None
) -> None:
    page = dashboard.page
    await dashboard.sign_in("/services")
    link = page.get_by_role("link", name=NAME, exact=True)
    row = page.locator("tbody tr", has=link)
    memory_spark = row.locator(".memory-spark canvas")
    requests_spark = row.locator(".requests-spark canvas")
    await expect(memory_spark).to_be_visible(timeout=CHART_TIMEOUT_MS)
    await expect(requests_spark).to_be_visible()
    await expect(row.locator(".requests")).to_have_text(re.compile(r"^\d+\.\d\d/s$"))
    assert await painted(memory_spark) and await painted(requests_spark)
    await dashboard.shot("sparklines")

    await link.click()
    charts = page.locator(".charts .chart")
    await expect(charts).to_have_count(4)
    for key in ("memory", "cpu", "requests", "latency"):
        canvas = page.locator(f'.chart[data-chart="{key}"] canvas')
        await expect(canvas).to_be_visible(timeout=CHART_TIMEOUT_MS)
    memory = page.locator('.chart[data-chart="memory"]')
    # The limit is drawn with the memory: its series is in the chart's legend.
    await expect(memory.locator(".u-legend")).to_contain_text("memory_max")
    await expect(page.locator('.chart[data-chart="requests"] .u-legend')).to_contain_text("5xx")
    assert await painted(page.locator('.chart[data-chart="memory"] canvas'))
    assert await painted(page.locator('.chart[data-chart="requests"] canvas'))
    assert await painted(page.locator('.chart[data-chart="latency"] canvas'))
    await page.locator(".history").scroll_into_view_if_needed()
    await dashboard.shot("charts")


async def test_the_charts_fit_a_phone_screen(phone: Dashboard, charted: None) -> None:
    page = phone.page
    await phone.sign_in(f"/services/{NAME}")
    canvas = page.locator('.chart[data-chart="memory"] canvas')
    await expect(canvas).to_be_visible(timeout=CHART_TIMEOUT_MS)
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"the page is {width}px wide on a {PHONE['width']}px screen"
    box = await page.locator('.chart[data-chart="memory"]').bounding_box()
    assert box is not None and box["width"] <= PHONE["width"]
    assert await painted(canvas)
    await page.locator(".history").scroll_into_view_if_needed()
    await phone.shot("charts-phone")
