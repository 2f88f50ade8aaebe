"""What the history operations answer (``api.history_routes``): the agent's short history,
one point an interval, in columns (one list per measure, all as long as ``at``), which is
the shape a chart draws from and the smallest in JSON."""

from __future__ import annotations

from typing import Annotated

from pydantic import BeforeValidator, Field

from pockestrator.api.models import ClosedModel
from pockestrator.api.models.requests import _query_int

HISTORY_POINTS_MAX = 240
# The bounds sit in the type, before the parser, as QueryPort's do: a bound given beside a
# QueryInt would lose to the type's own (QUERY_INT_MAX) and 241 would pass.
QueryPoints = Annotated[int, Field(ge=1, le=HISTORY_POINTS_MAX), BeforeValidator(_query_int)]


class HistoryQuery(ClosedModel):
    points: QueryPoints = Field(
        default=HISTORY_POINTS_MAX,
        description="How many of the latest points (a sparkline needs fewer than a chart).",
    )


class HistorySeries(ClosedModel):
    at: list[int] = Field(description="When each interval ended, Unix seconds, oldest first.")
    memory_bytes: list[int | None]
    cpu_cores: list[float | None] = Field(
        description="CPU seconds per second over the interval: 1.0 is one core busy."
    )
    requests_per_second: list[float | None] = Field(description="Through Caddy.")
    errors_per_second: list[float | None] = Field(description="Answers 500-599, through Caddy.")
    p95_seconds: list[float | None] = Field(
        description="The 95th percentile of the interval's request latency, through Caddy."
    )


class ServiceHistory(ClosedModel):
    service: str
    interval_seconds: float
    memory_max_bytes: int | None = Field(description="The unit's MemoryMax; null: unlimited.")
    series: HistorySeries


class HostHistory(ClosedModel):
    interval_seconds: float
    host: HistorySeries = Field(description="Every service's totals (p95 of every request).")
    services: dict[str, HistorySeries]
