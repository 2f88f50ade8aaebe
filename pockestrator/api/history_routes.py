"""The short history's operations: one service's (its page's charts) and every service's
with the host's totals (the list's sparklines). The agent keeps the points
(``agent.history``); these only shape them.
"""

from __future__ import annotations

from collections.abc import Sequence

from aiohttp import web

from pockestrator.api.context import HistoryPoint
from pockestrator.api.inputs import parse_query
from pockestrator.api.models.history import (
    HistoryQuery,
    HistorySeries,
    HostHistory,
    ServiceHistory,
)
from pockestrator.api.routing import Operation, agent_of, answer
from pockestrator.api.service_routes.checks import find_service


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def series_of(points: Sequence[HistoryPoint]) -> HistorySeries:
    return HistorySeries(
        at=[int(point.at.timestamp()) for point in points],
        memory_bytes=[point.memory_bytes for point in points],
        cpu_cores=[_rounded(point.cpu_cores) for point in points],
        requests_per_second=[_rounded(point.requests_per_second) for point in points],
        errors_per_second=[_rounded(point.errors_per_second) for point in points],
        p95_seconds=[_rounded(point.p95_seconds) for point in points],
    )


async def service_history(request: web.Request) -> web.StreamResponse:
    agent = agent_of(request)
    record = find_service(agent, request.match_info["id"])
    query = parse_query(request, HistoryQuery)
    history = agent.history
    return answer(
        ServiceHistory(
            service=record.name,
            interval_seconds=agent.config.history_interval,
            memory_max_bytes=history.memory_max(record.name),
            series=series_of(history.series(record.name)[-query.points :]),
        )
    )


async def host_history(request: web.Request) -> web.StreamResponse:
    agent = agent_of(request)
    query = parse_query(request, HistoryQuery)
    history = agent.history
    return answer(
        HostHistory(
            interval_seconds=agent.config.history_interval,
            host=series_of(history.host()[-query.points :]),
            services={
                name: series_of(history.series(name)[-query.points :])
                for name in agent.store.service_names()
            },
        )
    )


OPERATIONS = [
    Operation(
        "GET",
        "/history",
        host_history,
        "getHistory",
        "The short history of every service and the host's totals",
        {200: HostHistory},
        "system",
        query=HistoryQuery,
        description="One point per history_interval (a minute by default), the last four"
        " hours at most, kept in the agent's memory (gone when it restarts).",
    ),
    Operation(
        "GET",
        "/services/{id}/history",
        service_history,
        "getServiceHistory",
        "The short history of one service: memory, CPU, requests, 5xx and latency",
        {200: ServiceHistory},
        "services",
        query=HistoryQuery,
    ),
]
