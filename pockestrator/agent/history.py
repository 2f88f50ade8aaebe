"""A short history of every service, kept in memory so the dashboard can draw without a
Prometheus server: one point a ``history_interval`` (a minute) for ``HISTORY_POINTS``
intervals (four hours), per service and for the host.

Each round observes what a ``/metrics`` scrape would (the units over the host view,
Caddy's request-duration histogram) and ``advance`` turns two rounds into one point:
memory now, CPU as the share of a core used since the last round, requests and 5xx per
second, and the 95th percentile of the round's latency from the difference of Caddy's
cumulative buckets (as Prometheus' ``histogram_quantile`` does). Counters that went down
(a process restarted, Caddy reloaded its metrics) give no rate for that round rather than
a negative one. The buffers are ``deque``s of a fixed length, one per service that
exists: a removed service's history goes with it, and nothing grows with time.

Neighbours: ``api.metrics`` (the same reads, for Prometheus), ``api.history_routes``.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog

from pockestrator.api.context import HistoryPoint, HostView, ServiceObservation
from pockestrator.api.metrics import CaddyReader, HostTraffic
from pockestrator.specs.store import ServiceSummary, Store

log = structlog.get_logger("pockestrator.history")

HISTORY_POINTS = 240
HOST = ""  # the key of the host's totals


@dataclass(frozen=True)
class Reading:
    """One service's cumulative counters at one round (what a rate is the difference of)."""

    at: float  # monotonic seconds
    pid: int | None
    cpu_seconds: float | None
    requests: float | None
    errors: float | None
    buckets: Mapping[float, float]


def reading(at: float, observation: ServiceObservation, traffic: HostTraffic | None) -> Reading:
    unit = observation.unit
    return Reading(
        at=at,
        pid=unit.main_pid if unit is not None else None,
        cpu_seconds=unit.cpu_seconds if unit is not None else None,
        requests=traffic.total if traffic is not None else None,
        errors=sum(n for code, n in traffic.by_code.items() if code.startswith("5"))
        if traffic is not None
        else None,
        buckets=dict(traffic.buckets) if traffic is not None else {},
    )


def _rate(now: float | None, before: float | None, seconds: float) -> float | None:
    if now is None or before is None or now < before or seconds <= 0:
        return None
    return (now - before) / seconds


def quantile(q: float, buckets: Mapping[float, float]) -> float | None:
    """The ``q`` quantile of a cumulative histogram (bound -> count), interpolating
    linearly inside a bucket; None without observations. Past the last finite bound the
    answer is that bound (as Prometheus answers)."""
    ordered = sorted(buckets.items())
    if not ordered or ordered[-1][1] <= 0:
        return None
    total = ordered[-1][1]
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in ordered:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (
                count - lower_count
            )
        lower_bound, lower_count = bound, count
    return lower_bound


def bucket_delta(now: Mapping[float, float], before: Mapping[float, float]) -> dict[float, float]:
    """Observations per bucket between two readings; empty when a counter went back."""
    delta = {bound: count - before.get(bound, 0.0) for bound, count in now.items()}
    return {} if any(value < 0 for value in delta.values()) else delta


def advance(
    previous: Reading | None,
    current: Reading,
    observation: ServiceObservation,
    at: datetime,
) -> tuple[HistoryPoint, dict[float, float]]:
    """The point of one round, and its latency buckets (for the host's percentile)."""
    unit = observation.unit
    cpu = requests = errors = p95 = None
    buckets: dict[float, float] = {}
    if previous is not None:
        seconds = current.at - previous.at
        if current.pid is not None and current.pid == previous.pid:
            cpu = _rate(current.cpu_seconds, previous.cpu_seconds, seconds)
        requests = _rate(current.requests, previous.requests, seconds)
        errors = _rate(current.errors, previous.errors, seconds)
        buckets = bucket_delta(current.buckets, previous.buckets)
        p95 = quantile(0.95, buckets)
    point = HistoryPoint(
        at=at,
        memory_bytes=unit.memory_bytes if unit is not None else None,
        cpu_cores=cpu,
        requests_per_second=requests,
        errors_per_second=errors,
        p95_seconds=p95,
    )
    return point, buckets


def host_point(
    at: datetime, points: Sequence[HistoryPoint], buckets: dict[float, float]
) -> HistoryPoint:
    """The host's totals of one round: sums, and the percentile of every request."""

    def total(values: list[float | None]) -> float | None:
        known = [value for value in values if value is not None]
        return sum(known) if known else None

    memory = total([p.memory_bytes for p in points])
    return HistoryPoint(
        at=at,
        memory_bytes=int(memory) if memory is not None else None,
        cpu_cores=total([p.cpu_cores for p in points]),
        requests_per_second=total([p.requests_per_second for p in points]),
        errors_per_second=total([p.errors_per_second for p in points]),
        p95_seconds=quantile(0.95, buckets),
    )


class History:
    """The ring buffers, and the loop that fills them (``run``)."""

    def __init__(self, points: int = HISTORY_POINTS) -> None:
        self.points = points
        self._series: dict[str, deque[HistoryPoint]] = {}
        self._last: dict[str, Reading] = {}
        self._memory_max: dict[str, int | None] = {}
        # Every Caddy bound: the percentile needs the fine ones.
        self._caddy = CaddyReader(bounds=None)
        # Given each round's services and observations (the agent's alert pass).
        self.observed: (
            Callable[[Sequence[ServiceSummary], Sequence[ServiceObservation]], Awaitable[None]]
            | None
        ) = None

    def series(self, name: str) -> list[HistoryPoint]:
        return list(self._series.get(name, ()))

    def host(self) -> list[HistoryPoint]:
        return self.series(HOST)

    def names(self) -> list[str]:
        return sorted(name for name in self._series if name != HOST)

    def memory_max(self, name: str) -> int | None:
        return self._memory_max.get(name)

    def record(
        self,
        at: datetime,
        monotonic: float,
        observations: Sequence[ServiceObservation],
        traffic: Mapping[str, HostTraffic],
    ) -> None:
        """One round: a point per service and one for the host; gone services forgotten."""
        points = []
        every_bucket: dict[float, float] = {}
        present = {observation.name for observation in observations}
        for name in [name for name in self._series if name != HOST and name not in present]:
            del self._series[name]
            self._last.pop(name, None)
            self._memory_max.pop(name, None)
        for observation in observations:
            name = observation.name
            current = reading(monotonic, observation, traffic.get(name))
            point, buckets = advance(self._last.get(name), current, observation, at)
            self._last[name] = current
            unit = observation.unit
            self._memory_max[name] = unit.memory_max_bytes if unit is not None else None
            self._append(name, point)
            points.append(point)
            for bound, count in buckets.items():
                every_bucket[bound] = every_bucket.get(bound, 0.0) + count
        self._append(HOST, host_point(at, points, every_bucket))

    def _append(self, name: str, point: HistoryPoint) -> None:
        series = self._series.get(name)
        if series is None:
            series = self._series[name] = deque(maxlen=self.points)
        series.append(point)

    async def run(self, store: Store, host: HostView, interval: Callable[[], float]) -> None:
        """A round every ``interval()`` seconds, for the agent's life."""
        while True:
            started = time.monotonic()
            try:
                await self.round(store, host)
            except Exception as exc:  # one lost point; the next round tries again
                log.warning("history round failed", error=str(exc)[:200])
            await asyncio.sleep(max(0.0, interval() - (time.monotonic() - started)))

    async def round(self, store: Store, host: HostView) -> None:
        summaries = store.service_summaries()
        observations = await host.observe_services([summary.name for summary in summaries])
        text = await host.caddy_metrics()
        host_of = {summary.domain: summary.name for summary in summaries}
        # Off the event loop: the first read of a large Caddy text parses every series.
        traffic = await asyncio.to_thread(self._caddy.read, text, host_of) if text else {}
        self.record(datetime.now(UTC), time.monotonic(), observations, traffic)
        if self.observed is not None:  # the alert pass, from this round's observation
            await self.observed(summaries, observations)
