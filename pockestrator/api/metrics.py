"""``/metrics``: the agent and every service in Prometheus' text format.

A scrape gathers what is true now (``gather``: the store's services and statuses, each unit
asked over the host view, Caddy's own metrics from its admin API, the queue) into a
``Scrape``, and ``ScrapeCollector`` turns that into metric families; no loop runs in the
background to fill it. The gathering is async (D-Bus, Caddy's admin API) and a collector
is not, so each scrape builds its collector over the facts it gathered, and the text is
that collector's families followed by the agent's own instruments (``telemetry``).

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

import time
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from pockestrator.api.context import AgentContext, ServiceObservation
from pockestrator.specs.store import ServiceStatus
from pockestrator.telemetry import BackupAttempt

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
CADDY_DURATION = "caddy_http_request_duration_seconds"


@dataclass(frozen=True)
class ServiceFacts:
    """One service at scrape time: what is desired, what the agent and the host say."""

    name: str
    desired_running: bool
    status: ServiceStatus | None
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
    services: Sequence[ServiceFacts]
    traffic: Mapping[str, HostTraffic]
    queue_depth: int
    now: float  # Unix time, for ages


def caddy_families(text: str, service_of_host: Mapping[str, str]) -> dict[str, HostTraffic]:
    """Caddy's request-duration histogram, summed per service over code, method and handler."""
    wanted = "\n".join(line for line in text.splitlines() if line.startswith(CADDY_DURATION))
    traffic: dict[str, HostTraffic] = {}
    for family in text_string_to_metric_families(wanted + "\n"):
        for sample in family.samples:
            service = service_of_host.get(sample.labels.get("host", ""))
            if service is None:
                continue
            entry = traffic.get(service)
            if entry is None:
                entry = traffic[service] = HostTraffic()
            if sample.name.endswith("_bucket"):
                entry.buckets[float(sample.labels["le"])] += sample.value
            elif sample.name.endswith("_count"):
                entry.by_code[sample.labels.get("code", "")] += sample.value
                entry.total += sample.value
            elif sample.name.endswith("_sum"):
                entry.seconds += sample.value
    return traffic


def _gauge(name: str, documentation: str, unit: str = "") -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, labels=["service"], unit=unit)


class ScrapeCollector(Collector):
    """The metric families of one ``Scrape``: per service, and the agent's queue."""

    def __init__(self, scrape: Scrape) -> None:
        self.scrape = scrape

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
        backup_age = _gauge(
            "pockestrator_service_last_backup_age_seconds", "Age of the newest complete snapshot"
        )
        verified = _gauge(
            "pockestrator_service_last_backup_verified",
            "1 when the newest snapshot passed its restore test, 0 when it failed",
        )
        attempt = _gauge(
            "pockestrator_service_last_backup_success",
            "1 when the agent's last snapshot attempt since it started succeeded",
        )
        now = self.scrape.now
        for facts in self.scrape.services:
            name = facts.name
            labels = [name]
            status = facts.status
            unit = facts.observed.unit
            desired.add_metric(labels, 1.0 if facts.desired_running else 0.0)
            state.add_metric([name, status.state if status else "deploying"], 1.0)
            if status is not None and status.health_ok is not None:
                healthy.add_metric(labels, 1.0 if status.health_ok else 0.0)
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
                backup_age.add_metric(labels, max(0.0, now - taken))
            if observed.last_backup_verified is not None:
                verified.add_metric(labels, 1.0 if observed.last_backup_verified else 0.0)
            if facts.backup is not None:
                attempt.add_metric(labels, 1.0 if facts.backup.ok else 0.0)
        yield from (desired, up, healthy, state, restarts, memory, memory_max, cpu, data)
        yield from (probe, backup_at, backup_age, verified, attempt)

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
        for name, traffic in sorted(self.scrape.traffic.items()):
            for code, count in sorted(traffic.by_code.items()):
                requests.add_metric([name, code], count)
            buckets = [(_le(bound), count) for bound, count in sorted(traffic.buckets.items())]
            if buckets:
                latency.add_metric([name], buckets, traffic.seconds)
        yield requests
        yield latency


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)


def render(scrape: Scrape, agent_registry: CollectorRegistry) -> bytes:
    """The text of one scrape: its families, then the agent's own instruments."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ScrapeCollector(scrape))
    return generate_latest(registry) + generate_latest(agent_registry)


async def gather(agent: AgentContext) -> Scrape:
    """Everything a scrape reports, read now from the store, the host view and Caddy."""
    records, _total = agent.store.list_services()
    statuses = agent.store.all_statuses()
    names = [record.name for record in records]
    observed = await agent.host.observe_services(names)
    caddy_text = await agent.host.caddy_metrics()
    metrics = agent.metrics
    metrics.forget(set(names))
    services = [
        ServiceFacts(
            name=record.name,
            desired_running=record.desired_state == "running",
            status=statuses.get(record.name),
            observed=observation,
            health_probe_seconds=metrics.health_probe_seconds.get(record.name),
            backup=metrics.backups.get(record.name),
        )
        for record, observation in zip(records, observed, strict=True)
    ]
    host_of = {record.spec.domain: record.name for record in records}
    traffic = caddy_families(caddy_text, host_of) if caddy_text else {}
    return Scrape(services, traffic, agent.queue_depth(), time.time())
