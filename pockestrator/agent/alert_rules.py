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
    first_seen = {s.name: state.first_seen.get(s.name, now) for s in services}
    round_ = _Round(rules, state, now, first_seen)
    for service in services:
        for rule in _SERVICE_RULES:
            alert = rule(round_, service)
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
        AlertState(firing, round_.down_since, round_.restarts, first_seen),
        sorted(fired, key=lambda alert: alert.key),
        sorted(resolved, key=lambda alert: alert.key),
        min((moment for moment in round_.due if moment > now), default=None),
    )


@dataclass(frozen=True)
class _Round:
    """One evaluation's inputs, and what its service rules gather, handed to each rule."""

    rules: AlertRules
    state: AlertState
    now: float
    first_seen: Mapping[str, float]
    down_since: dict[str, float] = field(default_factory=dict)
    restarts: dict[str, tuple[tuple[float, int], ...]] = field(default_factory=dict)
    due: list[float] = field(default_factory=list)  # when a threshold may be crossed


def _down(round_: _Round, service: ServiceInput) -> Alert | None:
    name = service.name
    limit = round_.rules.service_down_seconds
    if limit is None or not service.desired_running:
        return None
    if service.running is None:  # unknown: as it was
        if name in round_.state.down_since:
            round_.down_since[name] = round_.state.down_since[name]
        return round_.state.firing.get((SERVICE_DOWN, name))
    if service.running and service.healthy is not False:
        return None
    since = round_.down_since[name] = round_.state.down_since.get(name, round_.now)
    if round_.now - since < limit:
        round_.due.append(since + limit)
        return None
    why = "its health probe fails" if service.running else "its unit is not running"
    return Alert(
        SERVICE_DOWN,
        name,
        f"{name} is down: {why}, for {round_.now - since:.0f} s",
        {"down_since": since, "threshold_seconds": limit, "unit_running": service.running},
    )


def _restart_loop(round_: _Round, service: ServiceInput) -> Alert | None:
    name = service.name
    count = service.restarts
    seen = list(round_.state.restarts.get(name, ()))
    if count is None:
        if seen:
            round_.restarts[name] = tuple(seen)
        return round_.state.firing.get((RESTART_LOOP, name))
    if seen and count < seen[-1][1]:
        seen = []  # the counter started again (a reset unit)
    if not seen or seen[-1][1] != count:
        seen.append((round_.now, count))
    window = round_.rules.restart_loop_minutes * 60
    # The baseline is the newest sample at or before the window's start (the count then);
    # the ones before it are of no more use.
    start = round_.now - window
    while len(seen) > 1 and seen[1][0] <= start:
        seen.pop(0)
    round_.restarts[name] = tuple(seen)
    limit = round_.rules.restart_loop_count
    if limit is None:
        return None
    baseline = seen[0][1]
    recent = count - baseline
    # The figure falls when the baseline moves on: at the next sample's age past the window.
    if len(seen) > 1:
        round_.due.append(seen[1][0] + window)
    if recent < limit:
        return None
    return Alert(
        RESTART_LOOP,
        name,
        f"{name} restarted {recent} times in {round_.rules.restart_loop_minutes:g} minutes",
        {"restarts": recent, "threshold": limit, "minutes": round_.rules.restart_loop_minutes},
    )


def _backup_stale(round_: _Round, service: ServiceInput) -> Alert | None:
    factor = round_.rules.backup_age_factor
    interval = service.backup_interval
    if factor is None or interval is None:
        return None
    since = service.last_backup_at
    if since is None:  # never backed up: counted from when the agent first saw it
        since = round_.first_seen[service.name]
    limit = factor * interval
    if round_.now - since <= limit:
        round_.due.append(since + limit + 1)
        return None
    name = service.name
    newest = "no snapshot yet" if service.last_backup_at is None else "its newest snapshot"
    return Alert(
        BACKUP_STALE,
        name,
        f"{name}: {newest} is {(round_.now - since) / 3600:.1f} h old, past {limit / 3600:.1f} h",
        {
            "last_backup_at": service.last_backup_at,
            "schedule_interval_seconds": interval,
            "threshold_seconds": limit,
        },
    )


def _certificate(round_: _Round, service: ServiceInput) -> Alert | None:
    days = round_.rules.certificate_days
    ends = service.certificate_not_after
    if days is None or ends is None:
        return None
    if ends - round_.now >= days * DAY:
        round_.due.append(ends - days * DAY)
        return None
    name = service.name
    left = (ends - round_.now) / DAY
    said = f"ended {-left:.1f} days ago" if left < 0 else f"ends in {left:.1f} days"
    return Alert(
        CERTIFICATE_EXPIRING,
        name,
        f"{name}: the certificate Caddy serves {said}",
        {"not_after": ends, "threshold_days": days},
    )


_SERVICE_RULES = (_down, _restart_loop, _backup_stale, _certificate)


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
