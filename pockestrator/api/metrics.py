"""``/metrics``: the agent and every service in Prometheus' text format.

A scrape gathers what is true now (``gather``: the store's services and statuses, each unit
asked over the host view, Caddy's own metrics from its admin API, the queue) into a
``Scrape``, and ``ScrapeCollector`` turns that into metric families; no loop runs in the
background to fill it. The gathering is async (D-Bus, Caddy's admin API) and a collector
is not, so each scrape builds its collector over the facts it gathered, and the text is
that collector's families followed by the agent's own instruments (``telemetry``). The
gathering is I/O on the event loop; ``render`` (Caddy's text read, the collector, the
printing) is CPU only, and the API runs it in a thread.

Requests, codes and latency per service come from Caddy's per-host metrics (the Caddyfile's
``metrics { per_host }``): Caddy labels them by host, and ``caddy_families`` maps each host
to the service whose domain it is; a host that is no service's (Caddy's ``_other``, an
operator's own site) is left out. Only the request-duration histogram is parsed: its
``_count`` by code is the requests, its buckets the latency; the lines of Caddy's other
families are dropped before the parser sees them, which keeps a scrape of hundreds of hosts
cheap (``tests/benchmarks/test_metrics_scrape.py``).

Names follow Prometheus' conventions, and the alert rules read the same values: a
``service`` label is the project name.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.parser import parse_labels
from prometheus_client.registry import Collector

from pockestrator.api.context import AgentContext, ServiceObservation
from pockestrator.telemetry import BackupAttempt

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
CADDY_DURATION = "caddy_http_request_duration_seconds"
# Of Caddy's twelve latency buckets, the ones ``/metrics`` passes on per service: each is
# one of Caddy's own bounds (a cumulative count, so exact), and five instead of twelve
# keep a scrape of 500 services within its CPU budget (the library's text output costs
# about 2.5 us a sample).
LATENCY_BOUNDS = frozenset((0.05, 0.25, 1.0, 5.0, float("inf")))


@dataclass(frozen=True)
class ServiceFacts:
    """One service at scrape time: what is desired, what the agent and the host say."""

    name: str
    desired_running: bool
    state: str  # the reconciler's: deploying, active, inactive, error
    healthy: bool | None  # the last health probe's verdict; None: not probed yet
    observed: ServiceObservation
    health_probe_seconds: float | None = None
    backup: BackupAttempt | None = None


@dataclass
class HostTraffic:
    """One service's requests through Caddy: count by code, and the latency histogram."""

    by_code: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    buckets: dict[float, float] = field(default_factory=lambda: defaultdict(float))
    total: float = 0.0
    seconds: float = 0.0


@dataclass(frozen=True)
class Scrape:
    """What one scrape read: the services, the queue, and Caddy's text with the service of
    each host (read into requests by ``render``, off the event loop)."""

    services: Sequence[ServiceFacts]
    queue_depth: int
    caddy_text: str | None = None
    service_of_host: Mapping[str, str] = field(default_factory=dict)


class CaddyReader:
    """Caddy's request-duration histogram, summed per service over code, method and handler.

    Only that family's block of Caddy's text is read (its other histograms are three times
    as long). A series' name and labels are the same from one scrape to the next while its
    value moves, so each series is parsed once by prometheus_client's own parser
    (``parse_labels``) and what it means here is remembered: the library's parser costs
    about 25 us a line, which for the 14,000 lines of 500 hosts would be most of a scrape.
    The memory is bounded: it starts again past ``MAX_REMEMBERED`` series (Caddy labels
    only the hosts it serves, so a client cannot make up new ones).
    """

    MAX_REMEMBERED = 100_000

    def __init__(self, bounds: frozenset[float] | None = LATENCY_BOUNDS) -> None:
        """``bounds``: the latency buckets kept (None: all of Caddy's)."""
        self.bounds = bounds
        # name and labels -> (host, what the sample is, its code or bucket bound)
        self._series: dict[str, tuple[str, str, str | float] | None] = {}

    def read(self, text: str, service_of_host: Mapping[str, str]) -> dict[str, HostTraffic]:
        traffic: dict[str, HostTraffic] = {}
        for line in _family_lines(text, CADDY_DURATION):
            close = line.rfind("}")
            series = line[: close + 1]
            meaning = self._series.get(series, _UNSEEN)
            if meaning is _UNSEEN:
                meaning = self._remember(series)
            if meaning is None:
                continue
            host, kind, key = meaning
            service = service_of_host.get(host)
            if service is None:
                continue
            try:
                sample = float(line[close + 1 :])
            except ValueError:
                continue
            entry = traffic.get(service)
            if entry is None:
                entry = traffic[service] = HostTraffic()
            if kind == "bucket":
                entry.buckets[key] += sample
            elif kind == "count":
                entry.by_code[key] += sample
                entry.total += sample
            else:
                entry.seconds += sample
        return traffic

    def _remember(self, series: str) -> tuple[str, str, str | float] | None:
        meaning = _meaning(series, self.bounds)
        if len(self._series) >= self.MAX_REMEMBERED:
            self._series.clear()
        self._series[series] = meaning
        return meaning


_UNSEEN: Any = object()


def _meaning(series: str, bounds: frozenset[float] | None) -> tuple[str, str, str | float] | None:
    """(host, "bucket" | "count" | "sum", bound or code) of one series; None: not used."""
    brace = series.find("{")
    if brace < 0 or not series.endswith("}"):
        return None
    try:
        labels = parse_labels(series[brace + 1 : -1])
    except ValueError:
        return None
    host = labels.get("host", "")
    kind = series[len(CADDY_DURATION) : brace]
    if kind == "_bucket":
        try:
            bound = float(labels["le"])
        except (KeyError, ValueError):
            return None
        return (host, "bucket", bound) if bounds is None or bound in bounds else None
    if kind == "_count":
        return host, "count", labels.get("code", "")
    if kind == "_sum":
        return host, "sum", ""
    return None


def _family_lines(text: str, name: str) -> list[str]:
    """The sample lines of one family: from its ``# TYPE`` line to the next comment."""
    start = text.find(f"# TYPE {name} ")
    if start < 0:
        return []
    start = text.find("\n", start) + 1
    if start == 0:
        return []
    end = text.find("\n#", start)
    block = text[start:] if end < 0 else text[start : end + 1]
    return block.splitlines()


def caddy_families(text: str, service_of_host: Mapping[str, str]) -> dict[str, HostTraffic]:
    """``CaddyReader.read`` with nothing remembered (one-off reads, the tests)."""
    return CaddyReader().read(text, service_of_host)


def _gauge(name: str, documentation: str, unit: str = "") -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, labels=["service"], unit=unit)


class ScrapeCollector(Collector):
    """The metric families of one ``Scrape``: per service, and the agent's queue."""

    def __init__(self, scrape: Scrape, traffic: Mapping[str, HostTraffic]) -> None:
        self.scrape = scrape
        self.traffic = traffic

    def collect(self) -> Iterable[Metric]:
        scrape = self.scrape
        queue = GaugeMetricFamily(
            "pockestrator_queue_depth",
            "Services waiting to be reconciled",
            value=scrape.queue_depth,
        )
        yield queue
        yield GaugeMetricFamily(
            "pockestrator_services", "Services in the desired state", value=len(scrape.services)
        )
        yield from self._per_service()
        yield from self._traffic()

    def _per_service(self) -> Iterator[Metric]:
        desired = _gauge("pockestrator_service_desired_up", "1 when the service should run")
        up = _gauge("pockestrator_service_up", "1 when systemd says the unit runs")
        healthy = _gauge(
            "pockestrator_service_healthy", "1 when the last health probe answered 200"
        )
        state = GaugeMetricFamily(
            "pockestrator_service_state",
            "The reconciler's state of the service (1 for the current one)",
            labels=["service", "state"],
        )
        restarts = CounterMetricFamily(
            "pockestrator_service_restarts",
            "Restarts systemd made of the unit (NRestarts)",
            labels=["service"],
        )
        memory = _gauge("pockestrator_service_memory_bytes", "Memory of the unit's cgroup now")
        memory_max = _gauge(
            "pockestrator_service_memory_max_bytes", "The unit's MemoryMax (absent: unlimited)"
        )
        cpu = CounterMetricFamily(
            "pockestrator_service_cpu_seconds", "CPU time the unit used", labels=["service"]
        )
        data = _gauge("pockestrator_service_data_bytes", "Disk taken by pb_data")
        probe = _gauge(
            "pockestrator_service_health_probe_duration_seconds",
            "How long the last health probe took",
        )
        backup_at = _gauge(
            "pockestrator_service_last_backup_timestamp_seconds",
            "When the newest complete snapshot was taken (Unix time)",
        )
        attempt = _gauge(
            "pockestrator_service_last_backup_success",
            "1 when the agent's last snapshot attempt since it started succeeded",
        )
        for facts in self.scrape.services:
            name = facts.name
            labels = [name]
            unit = facts.observed.unit
            desired.add_metric(labels, 1.0 if facts.desired_running else 0.0)
            state.add_metric([name, facts.state], 1.0)
            if facts.healthy is not None:
                healthy.add_metric(labels, 1.0 if facts.healthy else 0.0)
            if unit is not None:
                up.add_metric(labels, 1.0 if unit.is_running else 0.0)
                if unit.restarts is not None:
                    restarts.add_metric(labels, float(unit.restarts))
                if unit.memory_bytes is not None:
                    memory.add_metric(labels, float(unit.memory_bytes))
                if unit.memory_max_bytes is not None:
                    memory_max.add_metric(labels, float(unit.memory_max_bytes))
                if unit.cpu_seconds is not None:
                    cpu.add_metric(labels, unit.cpu_seconds)
            observed = facts.observed
            if observed.data_bytes is not None:
                data.add_metric(labels, float(observed.data_bytes))
            if facts.health_probe_seconds is not None:
                probe.add_metric(labels, facts.health_probe_seconds)
            if observed.last_backup_at is not None:
                taken = observed.last_backup_at.timestamp()
                backup_at.add_metric(labels, taken)
            if facts.backup is not None:
                attempt.add_metric(labels, 1.0 if facts.backup.ok else 0.0)
        yield from (desired, up, healthy, state, restarts, memory, memory_max, cpu, data)
        yield from (probe, backup_at, attempt)

    def _traffic(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "pockestrator_service_http_requests",
            "Requests Caddy answered for the service, by status code",
            labels=["service", "code"],
        )
        latency = HistogramMetricFamily(
            "pockestrator_service_http_request_duration_seconds",
            "Time Caddy took to answer the service's requests",
            labels=["service"],
        )
        for name, traffic in sorted(self.traffic.items()):
            for code, count in sorted(traffic.by_code.items()):
                requests.add_metric([name, code], count)
            buckets = [(_le(bound), count) for bound, count in sorted(traffic.buckets.items())]
            if buckets:
                latency.add_metric([name], buckets, traffic.seconds)
        yield requests
        yield latency


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)


def render(
    scrape: Scrape, agent_registry: CollectorRegistry, caddy: CaddyReader | None = None
) -> bytes:
    """The text of one scrape: its families, then the agent's own instruments.

    Only CPU, no I/O: the API runs it in a thread, so that a scrape of hundreds of
    services (the first one parses every Caddy series) does not hold up the event loop.
    """
    reader = caddy if caddy is not None else CaddyReader()
    text = scrape.caddy_text
    traffic = reader.read(text, scrape.service_of_host) if text else {}
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ScrapeCollector(scrape, traffic))
    return generate_latest(registry) + generate_latest(agent_registry)


async def gather(agent: AgentContext) -> Scrape:
    """Everything a scrape reports, read now from the store, the host view and Caddy."""
    services_now = agent.store.service_summaries()
    states = agent.store.states()
    names = [service.name for service in services_now]
    observed = await agent.host.observe_services(names)
    caddy_text = await agent.host.caddy_metrics()
    metrics = agent.metrics
    metrics.forget(set(names))
    services = [
        ServiceFacts(
            name=service.name,
            desired_running=service.desired_state == "running",
            state=states.get(service.name, ("deploying", None))[0],
            healthy=states.get(service.name, ("deploying", None))[1],
            observed=observation,
            health_probe_seconds=metrics.health_probe_seconds.get(service.name),
            backup=metrics.backups.get(service.name),
        )
        for service, observation in zip(services_now, observed, strict=True)
    ]
    host_of = {service.domain: service.name for service in services_now}
    return Scrape(services, agent.queue_depth(), caddy_text, host_of)
