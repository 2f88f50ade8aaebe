"""Alert rules, evaluated as a pure function of what the agent observed and what it
remembers (``evaluate``): which alerts start firing, which resolve, and when the next
evaluation is worth making even if nothing happens in between (a service down since 12:00
with a 60 s rule is due at 12:01).

The rules (``config.AlertRules``, the agent configuration's ``alerts`` section; a rule
set to null is off):

- ``service_down``: a service meant to run whose unit is not running, or whose last health
  probe failed, for ``service_down_seconds`` without a break;
- ``restart_loop``: ``restart_loop_count`` restarts by systemd (``NRestarts``) within
  ``restart_loop_minutes``;
- ``backup_stale``: a scheduled service whose newest snapshot is older than
  ``backup_age_factor`` times its schedule's interval (a service never backed up counts
  from when the agent first saw it);
- ``certificate_expiring``: the certificate Caddy serves for the domain ends in fewer than
  ``certificate_days`` days;
- ``disk_low``: less than ``disk_free_percent`` of the data filesystem is free (a host
  alert: its service is ``HOST``, the empty name, which no project can have).

Unknown is not bad: a unit systemd did not answer for, a service without a schedule, a
domain without a recorded certificate, leave their rules as they were.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pockestrator.config import AlertRules

HOST = ""  # the service of a host alert
SERVICE_DOWN = "service_down"
RESTART_LOOP = "restart_loop"
BACKUP_STALE = "backup_stale"
CERTIFICATE_EXPIRING = "certificate_expiring"
DISK_LOW = "disk_low"
RULES = (SERVICE_DOWN, RESTART_LOOP, BACKUP_STALE, CERTIFICATE_EXPIRING, DISK_LOW)
DAY = 86400.0


@dataclass(frozen=True)
class ServiceInput:
    """One service as the rules see it; times are Unix seconds, None is unknown."""

    name: str
    desired_running: bool
    running: bool | None  # None: systemd did not say
    healthy: bool | None = None  # the last probe's verdict; None: not probed yet
    restarts: int | None = None
    last_backup_at: float | None = None
    backup_interval: float | None = None  # seconds between scheduled snapshots; None: none
    certificate_not_after: float | None = None


@dataclass(frozen=True)
class Alert:
    """One rule for one service (``HOST`` for the host), with what made it fire."""

    rule: str
    service: str
    message: str
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str]:
        return self.rule, self.service


@dataclass(frozen=True)
class AlertState:
    """What the rules remember between evaluations."""

    firing: Mapping[tuple[str, str], Alert] = field(default_factory=dict)
    down_since: Mapping[str, float] = field(default_factory=dict)
    # (when, NRestarts) each time the count was seen to change, oldest first.
    restarts: Mapping[str, tuple[tuple[float, int], ...]] = field(default_factory=dict)
    first_seen: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Evaluation:
    state: AlertState
    fired: Sequence[Alert]
    resolved: Sequence[Alert]
    next_due: float | None  # when a condition already seen may cross its threshold


def evaluate(
    rules: AlertRules,
    state: AlertState,
    services: Sequence[ServiceInput],
    disk_free_fraction: float | None,
    now: float,
) -> Evaluation:
    """Every rule over every service and the host, once."""
    active: dict[tuple[str, str], Alert] = {}
    down_since: dict[str, float] = {}
    restarts: dict[str, tuple[tuple[float, int], ...]] = {}
    first_seen = {s.name: state.first_seen.get(s.name, now) for s in services}
    due: list[float] = []
    for service in services:
        name = service.name
        for alert in (
            _down(rules, state, service, now, down_since, due),
            _restart_loop(rules, state, service, now, restarts, due),
            _backup_stale(rules, state, service, first_seen[name], now, due),
            _certificate(rules, state, service, now, due),
        ):
            if alert is not None:
                active[alert.key] = alert
    disk = _disk(rules, state, disk_free_fraction)
    if disk is not None:
        active[disk.key] = disk
    fired = [alert for key, alert in active.items() if key not in state.firing]
    resolved = [alert for key, alert in state.firing.items() if key not in active]
    # A firing alert keeps the details it fired with (its message says what it was).
    firing = {key: state.firing.get(key, alert) for key, alert in active.items()}
    return Evaluation(
        AlertState(firing, down_since, restarts, first_seen),
        sorted(fired, key=lambda alert: alert.key),
        sorted(resolved, key=lambda alert: alert.key),
        min((moment for moment in due if moment > now), default=None),
    )


def _down(
    rules: AlertRules,
    state: AlertState,
    service: ServiceInput,
    now: float,
    down_since: dict[str, float],
    due: list[float],
) -> Alert | None:
    name = service.name
    limit = rules.service_down_seconds
    if limit is None or not service.desired_running:
        return None
    if service.running is None:  # unknown: as it was
        if name in state.down_since:
            down_since[name] = state.down_since[name]
        return state.firing.get((SERVICE_DOWN, name))
    if service.running and service.healthy is not False:
        return None
    since = down_since[name] = state.down_since.get(name, now)
    if now - since < limit:
        due.append(since + limit)
        return None
    why = "its health probe fails" if service.running else "its unit is not running"
    return Alert(
        SERVICE_DOWN,
        name,
        f"{name} is down: {why}, for {now - since:.0f} s",
        {"down_since": since, "threshold_seconds": limit, "unit_running": service.running},
    )


def _restart_loop(
    rules: AlertRules,
    state: AlertState,
    service: ServiceInput,
    now: float,
    kept: dict[str, tuple[tuple[float, int], ...]],
    due: list[float],
) -> Alert | None:
    name = service.name
    count = service.restarts
    seen = list(state.restarts.get(name, ()))
    if count is None:
        if seen:
            kept[name] = tuple(seen)
        return state.firing.get((RESTART_LOOP, name))
    if seen and count < seen[-1][1]:
        seen = []  # the counter started again (a reset unit)
    if not seen or seen[-1][1] != count:
        seen.append((now, count))
    window = rules.restart_loop_minutes * 60
    # The baseline is the newest sample at or before the window's start (the count then);
    # the ones before it are of no more use.
    start = now - window
    while len(seen) > 1 and seen[1][0] <= start:
        seen.pop(0)
    kept[name] = tuple(seen)
    limit = rules.restart_loop_count
    if limit is None:
        return None
    baseline = seen[0][1]
    recent = count - baseline
    # The figure falls when the baseline moves on: at the next sample's age past the window.
    if len(seen) > 1:
        due.append(seen[1][0] + window)
    if recent < limit:
        return None
    return Alert(
        RESTART_LOOP,
        name,
        f"{name} restarted {recent} times in {rules.restart_loop_minutes:g} minutes",
        {"restarts": recent, "threshold": limit, "minutes": rules.restart_loop_minutes},
    )


def _backup_stale(
    rules: AlertRules,
    state: AlertState,
    service: ServiceInput,
    first_seen: float,
    now: float,
    due: list[float],
) -> Alert | None:
    factor = rules.backup_age_factor
    interval = service.backup_interval
    if factor is None or interval is None:
        return None
    since = service.last_backup_at if service.last_backup_at is not None else first_seen
    limit = factor * interval
    if now - since <= limit:
        due.append(since + limit + 1)
        return None
    name = service.name
    newest = "no snapshot yet" if service.last_backup_at is None else "its newest snapshot"
    return Alert(
        BACKUP_STALE,
        name,
        f"{name}: {newest} is {(now - since) / 3600:.1f} h old, past {limit / 3600:.1f} h",
        {
            "last_backup_at": service.last_backup_at,
            "schedule_interval_seconds": interval,
            "threshold_seconds": limit,
        },
    )


def _certificate(
    rules: AlertRules, state: AlertState, service: ServiceInput, now: float, due: list[float]
) -> Alert | None:
    days = rules.certificate_days
    ends = service.certificate_not_after
    if days is None or ends is None:
        return None
    if ends - now >= days * DAY:
        due.append(ends - days * DAY)
        return None
    name = service.name
    left = (ends - now) / DAY
    said = f"ended {-left:.1f} days ago" if left < 0 else f"ends in {left:.1f} days"
    return Alert(
        CERTIFICATE_EXPIRING,
        name,
        f"{name}: the certificate Caddy serves {said}",
        {"not_after": ends, "threshold_days": days},
    )


def _disk(rules: AlertRules, state: AlertState, free: float | None) -> Alert | None:
    percent = rules.disk_free_percent
    if percent is None:
        return None
    if free is None:
        return state.firing.get((DISK_LOW, HOST))
    if free * 100 >= percent:
        return None
    return Alert(
        DISK_LOW,
        HOST,
        f"the data filesystem has {free * 100:.1f} % free, under {percent:g} %",
        {"free_percent": round(free * 100, 2), "threshold_percent": percent},
    )
