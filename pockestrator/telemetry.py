"""The agent's own measurements: how long reconciles, waves and API requests take, and how often
they fail, as Prometheus instruments in a registry of the agent's (not the library's global
one, so two agents in one process, as in the tests, never share a counter).

The agent's parts record into it as they work (nothing polls to fill it); the API's
``/metrics`` adds what it observes of each service at scrape time (``api.metrics``). A few
per-service facts only the agent's loops see (the last health probe's latency, the last
backup attempt) are kept here as plain values, bounded by the services that exist, for
that scrape to read.

A base module: it imports nothing of Pockestrator's, so the agent, the reconciler's parts
and the API can all reach it without crossing a layer.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Reconciles take milliseconds when nothing changes and seconds when a release is fetched.
RECONCILE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
WAVE_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)
GLOBAL_STEP_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
API_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


# A failed plan step leaves this note on its exception (shown in its traceback too), so the
# worker that catches it counts the failure under the step, once.
STEP_NOTE = "during the plan step "


def mark_step(exc: BaseException, step: str) -> None:
    if step_of(exc) is None:
        exc.add_note(STEP_NOTE + step)


def step_of(exc: BaseException) -> str | None:
    for note in getattr(exc, "__notes__", ()):
        if isinstance(note, str) and note.startswith(STEP_NOTE):
            return note.removeprefix(STEP_NOTE)
    return None


def snake_case(name: str) -> str:
    """``WriteUnit`` as ``write_unit``: a step's class name as a label value."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


@dataclass(frozen=True)
class BackupAttempt:
    """The last snapshot the agent tried to take of a service since it started."""

    at: float  # Unix time
    ok: bool


class AgentMetrics:
    """Every instrument of the agent, in one registry; the names are what alerts use."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        registry = self.registry
        self.reconcile_seconds = Histogram(
            "pockestrator_reconcile_duration_seconds",
            "Time one reconcile of a service took, observe to settle",
            buckets=RECONCILE_BUCKETS,
            registry=registry,
        )
        self.reconcile_errors = Counter(
            "pockestrator_reconcile_errors",
            "Reconciles that failed, by the plan step that raised",
            ["step"],
            registry=registry,
        )
        self.wave_size = Histogram(
            "pockestrator_wave_size",
            "Reconciles that shared one global operation (daemon-reload, Caddy apply)",
            ["wave"],
            buckets=WAVE_BUCKETS,
            registry=registry,
        )
        self.daemon_reload_seconds = Histogram(
            "pockestrator_daemon_reload_duration_seconds",
            "Time systemd took for one daemon-reload",
            buckets=GLOBAL_STEP_BUCKETS,
            registry=registry,
        )
        self.caddy_apply_seconds = Histogram(
            "pockestrator_caddy_apply_duration_seconds",
            "Time one Caddy wave took: write, validate, reload",
            buckets=GLOBAL_STEP_BUCKETS,
            registry=registry,
        )
        self.drift_repairs = Counter(
            "pockestrator_drift_repairs",
            "Differences between the host and the desired state that a reconcile repaired",
            ["kind"],
            registry=registry,
        )
        self.api_requests = Counter(
            "pockestrator_api_requests",
            "Requests the REST API answered, by route and status code",
            ["method", "route", "code"],
            registry=registry,
        )
        self.api_seconds = Histogram(
            "pockestrator_api_request_duration_seconds",
            "Time the REST API took to answer, by route",
            ["method", "route"],
            buckets=API_BUCKETS,
            registry=registry,
        )
        self.alerts_firing = Gauge(
            "pockestrator_alerts_firing",
            "1 for each alert rule firing, by service (empty for a host alert such as disk_low)",
            ["rule", "service"],
            registry=registry,
        )
        self.alert_pass_seconds = Histogram(
            "pockestrator_alert_evaluation_duration_seconds",
            "Time one pass of the alert rules took over every service (the rules alone)",
            buckets=GLOBAL_STEP_BUCKETS,
            registry=registry,
        )
        self._firing: set[tuple[str, str]] = set()
        self.health_probe_seconds: dict[str, float] = {}
        self.backups: dict[str, BackupAttempt] = {}

    def probed(self, name: str, seconds: float) -> None:
        self.health_probe_seconds[name] = seconds

    def backup_attempted(self, name: str, at: float, *, ok: bool) -> None:
        self.backups[name] = BackupAttempt(at, ok)

    def alerts_evaluated(self, firing: Iterable[tuple[str, str]], seconds: float) -> None:
        """The firing set after a pass: 1 for each, and the resolved ones' series gone."""
        now = set(firing)
        for rule, service in self._firing - now:
            self.alerts_firing.remove(rule, service)
        for rule, service in now - self._firing:
            self.alerts_firing.labels(rule, service).set(1)
        self._firing = now
        self.alert_pass_seconds.observe(seconds)

    def forget(self, keep: set[str]) -> None:
        """Drop the per-service values of services that no longer exist."""
        for values in (self.health_probe_seconds, self.backups):
            for name in [name for name in values if name not in keep]:
                del values[name]
