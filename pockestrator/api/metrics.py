"""``/metrics``: the agent and every service in Prometheus' text format.

A scrape gathers what is true now (``gather``: the store's services and statuses, every
unit in one look over the host view, Caddy's own metrics from its admin API, the queue)
into a ``Scrape``, and ``scrape_families`` turns that into metric families; no loop runs
in the background to fill it. The families are printed by ``api.exposition`` (each
series' text kept from scrape to scrape, which the library's printer rebuilds every
time), followed by the agent's own instruments printed by prometheus_client
(``telemetry``). The gathering is I/O on the event loop; ``render`` (Caddy's text read,
the families, the printing) is CPU only, and the API runs it in a thread.

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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import parse_labels

from pockestrator.api.context import AgentContext, ServiceObservation
from pockestrator.api.exposition import Family, SeriesText, write
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
    sleeping: bool = False  # sleep_after: stopped until a request wakes it
    certificate_not_after: float | None = None  # Unix seconds, as last recorded


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


class ScrapeMemory:
    """What the API keeps from one scrape to the next: Caddy's parsed series and the text
    of each of ours (both the same from scrape to scrape, only the values move)."""

    def __init__(self) -> None:
        self.caddy = CaddyReader()
        self.series = SeriesText()


def scrape_families(
    scrape: Scrape, traffic: Mapping[str, HostTraffic], series: SeriesText
) -> list[Family]:
    """The families of one scrape: the agent's queue, then per service, then traffic."""
    queue = Family(
        series, "pockestrator_queue_depth", "Services waiting to be reconciled", "gauge", ()
    )
    queue.add((), float(scrape.queue_depth))
    count = Family(series, "pockestrator_services", "Services in the desired state", "gauge", ())
    count.add((), float(len(scrape.services)))
    return [queue, count, *_per_service(scrape, series), *_traffic(traffic, series)]


def _per_service(scrape: Scrape, series: SeriesText) -> list[Family]:
    def gauge(name: str, documentation: str) -> Family:
        return Family(series, name, documentation, "gauge")

    desired = gauge("pockestrator_service_desired_up", "1 when the service should run")
    up = gauge("pockestrator_service_up", "1 when systemd says the unit runs")
    healthy = gauge("pockestrator_service_healthy", "1 when the last health probe answered 200")
    state = Family(
        series,
        "pockestrator_service_state",
        "The reconciler's state of the service (1 for the current one)",
        "gauge",
        ("service", "state"),
    )
    sleeping = gauge("pockestrator_service_sleeping", "1 while the service sleeps (sleep_after)")
    certificate = gauge(
        "pockestrator_service_certificate_expiry_timestamp_seconds",
        "When the certificate Caddy serves for the domain ends (as last recorded)",
    )
    restarts = Family(
        series,
        "pockestrator_service_restarts",
        "Restarts systemd made of the unit (NRestarts)",
        "counter",
    )
    memory = gauge("pockestrator_service_memory_bytes", "Memory of the unit's cgroup now")
    peak = gauge(
        "pockestrator_service_memory_peak_bytes",
        "The highest memory use of the unit's cgroup since it started",
    )
    memory_max = gauge(
        "pockestrator_service_memory_max_bytes", "The unit's MemoryMax (absent: unlimited)"
    )
    cpu = Family(series, "pockestrator_service_cpu_seconds", "CPU time the unit used", "counter")
    data = gauge("pockestrator_service_data_bytes", "Disk taken by pb_data")
    probe = gauge(
        "pockestrator_service_health_probe_duration_seconds",
        "How long the last health probe took",
    )
    backup_at = gauge(
        "pockestrator_service_last_backup_timestamp_seconds",
        "When the newest complete snapshot was taken (Unix time)",
    )
    attempt = gauge(
        "pockestrator_service_last_backup_success",
        "1 when the agent's last snapshot attempt since it started succeeded",
    )
    for facts in scrape.services:
        name = facts.name
        labels = (name,)
        unit = facts.observed.unit
        desired.add(labels, 1.0 if facts.desired_running else 0.0)
        state.add((name, facts.state), 1.0)
        sleeping.add(labels, 1.0 if facts.sleeping else 0.0)
        if facts.certificate_not_after is not None:
            certificate.add(labels, facts.certificate_not_after)
        if facts.healthy is not None:
            healthy.add(labels, 1.0 if facts.healthy else 0.0)
        if unit is not None:
            up.add(labels, 1.0 if unit.is_running else 0.0)
            if unit.restarts is not None:
                restarts.add(labels, unit.restarts)
            if unit.memory_bytes is not None:
                memory.add(labels, unit.memory_bytes)
            if unit.memory_peak_bytes is not None:
                peak.add(labels, unit.memory_peak_bytes)
            if unit.memory_max_bytes is not None:
                memory_max.add(labels, unit.memory_max_bytes)
            if unit.cpu_seconds is not None:
                cpu.add(labels, unit.cpu_seconds)
        observed = facts.observed
        if observed.data_bytes is not None:
            data.add(labels, observed.data_bytes)
        if facts.health_probe_seconds is not None:
            probe.add(labels, facts.health_probe_seconds)
        if observed.last_backup_at is not None:
            backup_at.add(labels, observed.last_backup_at.timestamp())
        if facts.backup is not None:
            attempt.add(labels, 1.0 if facts.backup.ok else 0.0)
    return [
        desired,
        up,
        healthy,
        state,
        sleeping,
        certificate,
        restarts,
        memory,
        peak,
        memory_max,
        cpu,
        data,
        probe,
        backup_at,
        attempt,
    ]


def _traffic(traffic: Mapping[str, HostTraffic], series: SeriesText) -> list[Family]:
    requests = Family(
        series,
        "pockestrator_service_http_requests",
        "Requests Caddy answered for the service, by status code",
        "counter",
        ("service", "code"),
    )
    latency = Family(
        series,
        "pockestrator_service_http_request_duration_seconds",
        "Time Caddy took to answer the service's requests",
        "histogram",
    )
    for name, entry in sorted(traffic.items()):
        for code, count in sorted(entry.by_code.items()):
            requests.add((name, code), count)
        buckets = [(_le(bound), count) for bound, count in sorted(entry.buckets.items())]
        if buckets:
            latency.add_histogram((name,), buckets, entry.seconds)
    return [requests, latency]


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)


def render(
    scrape: Scrape, agent_registry: CollectorRegistry, memory: ScrapeMemory | None = None
) -> bytes:
    """The text of one scrape: its families, then the agent's own instruments.

    Only CPU, no I/O: the API runs it in a thread, so that a scrape of hundreds of
    services (the first one parses every Caddy series) does not hold up the event loop.
    """
    kept = memory if memory is not None else ScrapeMemory()
    text = scrape.caddy_text
    traffic = kept.caddy.read(text, scrape.service_of_host) if text else {}
    return write(scrape_families(scrape, traffic, kept.series)) + generate_latest(agent_registry)


async def gather(agent: AgentContext) -> Scrape:
    """Everything a scrape reports, read now from the store, the host view and Caddy."""
    services_now = agent.store.service_summaries()
    states = agent.store.states()
    names = [service.name for service in services_now]
    observed = await agent.host.observe_services(names)
    caddy_text = await agent.host.caddy_metrics()
    metrics = agent.metrics
    certificates = {name: facts[2] for name, facts in agent.store.alert_facts().items()}
    metrics.forget(set(names))
    services = []
    for service, observation in zip(services_now, observed, strict=True):
        asleep = agent.sleeping(service.name)
        stored_state, healthy = states.get(service.name, ("deploying", None))
        ends = certificates.get(service.name)
        services.append(
            ServiceFacts(
                name=service.name,
                desired_running=service.desired_state == "running",
                state="sleeping" if asleep else stored_state,
                healthy=healthy,
                observed=observation,
                health_probe_seconds=metrics.health_probe_seconds.get(service.name),
                backup=metrics.backups.get(service.name),
                sleeping=asleep,
                certificate_not_after=ends.timestamp() if ends is not None else None,
            )
        )
    host_of = {service.domain: service.name for service in services_now}
    return Scrape(services, agent.queue_depth(), caddy_text, host_of)
