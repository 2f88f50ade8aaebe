"""The ``/metrics`` operation on the API (behind a token), and the token-free listener the
configuration may name instead (``metrics_listen``), for a Prometheus on a private network.

Neighbours: ``api.metrics`` (what a scrape reports), ``telemetry`` (the agent's instruments).
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from pockestrator.api.context import AgentContext
from pockestrator.api.metrics import CONTENT_TYPE, ScrapeMemory, gather, render
from pockestrator.api.routing import Operation, agent_of

# What the application remembers between scrapes (Caddy's series, the text of ours).
SCRAPE_MEMORY = web.AppKey("scrape_memory", ScrapeMemory)


async def scrape_text(agent: AgentContext, memory: ScrapeMemory) -> web.Response:
    scrape = await gather(agent)
    text = await asyncio.to_thread(render, scrape, agent.metrics.registry, memory)
    return web.Response(body=text, headers={"Content-Type": CONTENT_TYPE})


async def get_metrics(request: web.Request) -> web.StreamResponse:
    """Every service and the agent in Prometheus' text format, observed now."""
    return await scrape_text(agent_of(request), request.app[SCRAPE_MEMORY])


OPERATIONS = [
    Operation(
        "GET",
        "/metrics",
        get_metrics,
        "getMetrics",
        "Prometheus metrics of every service and of the agent",
        {},
        "system",
        description="Prometheus' text exposition format (version 0.0.4): per service its"
        " state, restarts, memory, CPU, pb_data size, health-probe latency, last backup, and"
        " requests by code and latency through Caddy; the agent's reconcile, wave and API"
        " figures. docs/observability.md lists every metric.",
        binary={200: "text/plain"},
    ),
]


def metrics_app(agent: AgentContext) -> web.Application:
    """``GET /metrics`` alone, without a token: for ``metrics_listen``, an address the
    operator keeps private (the numbers name services but hold no secret)."""

    memory = ScrapeMemory()

    async def handler(_request: web.Request) -> web.StreamResponse:
        return await scrape_text(agent, memory)

    app = web.Application()
    app.router.add_route("GET", "/metrics", handler)
    return app
