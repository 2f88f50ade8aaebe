"""The alert pass: the rules (``agent.alert_rules``) over what the agent observes, one pass
for every rule and service, recording ``alert_firing`` and ``alert_resolved`` events in the
store (which the outbox delivers) and the firing ones as ``pockestrator_alerts_firing``.

When a pass runs: after each round of the short history (``History.observed``: the
agent's existing cadence, ``history_interval``, a minute by default), on that round's
observation, the one ``/metrics`` makes; and between rounds when something happened: a
unit changed (systemd's signal, the one the reconciler is woken by) or a health verdict
did (``wake``), or a condition already seen reaches its threshold (``Evaluation.next_due``:
a service down since 12:00 under a 60 s rule is looked at again at 12:01, not at the next
round). Those passes make their own look (``observe_services``: one D-Bus call and the
cgroup files); a burst of signals makes one pass (``SETTLE_SECONDS``). Every pass also
reads two columns of the store and makes one ``statvfs``; passes never overlap.

The firing set is read back from the store's events when the agent starts (``restore``:
the last of ``alert_firing`` / ``alert_resolved`` of each rule and service), so a restart
does not announce an alert again that was never resolved, and the first pass resolves one
whose condition ended while the agent was away. What a rule was counting (since when a
service is down, the recent restarts) starts again.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

import structlog

from pockestrator.agent.alert_rules import (
    HOST,
    Alert,
    AlertState,
    Evaluation,
    ServiceInput,
    evaluate,
)
from pockestrator.api.context import HostView, ServiceObservation
from pockestrator.clock import Clock
from pockestrator.config import AgentConfig
from pockestrator.controllers.snapshots.schedule import last_fire, next_due
from pockestrator.database import DatabaseFull
from pockestrator.specs.store import NODE_LOST, ServiceSummary, Store
from pockestrator.telemetry import AgentMetrics
from pockestrator.waits import woken

log = structlog.get_logger("pockestrator.alerts")

SETTLE_SECONDS = 1.0  # after a wake: the other signals of the same change arrive


def disk_free_fraction(path: Path) -> float | None:
    """Free space (for unprivileged users, as PocketBase runs) of the filesystem of
    ``path`` or its nearest existing parent; None when it cannot be read."""
    current = path
    while not current.exists() and current != current.parent:
        current = current.parent
    try:
        stats = os.statvfs(current)
    except OSError:
        return None
    return stats.f_bavail / stats.f_blocks if stats.f_blocks else None


class ScheduleIntervals:
    """Seconds between a cron schedule's fire times around now, kept per expression until
    the next fire time (most services share the agent's default schedule)."""

    def __init__(self) -> None:
        self._kept: dict[str, tuple[datetime, float]] = {}

    def of(self, expression: str, now: datetime) -> float | None:
        kept = self._kept.get(expression)
        if kept is not None and now < kept[0]:
            return kept[1]
        try:
            after = next_due(expression, now)
            interval = (after - last_fire(expression, now)).total_seconds()
        except (ValueError, KeyError):  # not a schedule croniter reads: no rule
            return None
        self._kept[expression] = (after, interval)
        return interval


class AlertWatch:
    """The alert state and the loop that keeps it (``run``)."""

    def __init__(
        self,
        config: Callable[[], AgentConfig],
        store: Store,
        host: HostView,
        metrics: AgentMetrics,
        clock: Clock,
    ) -> None:
        self._config = config
        self.store = store
        self.host = host
        self.asleep: Callable[[str], bool] = lambda _name: False  # set by the agent (sleep)
        self.metrics = metrics
        self.clock = clock
        self.state = AlertState()
        self._wake = asyncio.Event()
        self._intervals = ScheduleIntervals()
        self._next_due: float | None = None
        self._passing = asyncio.Lock()

    def restore(self) -> None:
        """The alerts that fire, as the events in the store left them."""
        firing: dict[tuple[str, str], Alert] = {}
        for event in self.store.alert_events():
            rule = event.details.get("rule")
            if not isinstance(rule, str) or rule == NODE_LOST:
                continue  # node_lost is the fleet's (specs.store.node_loss), not a pass's
            service = "" if event.service == HOST else event.service
            if event.kind == "alert_firing":
                details = {k: v for k, v in event.details.items() if k not in ("rule", "service")}
                firing[(rule, service)] = Alert(rule, service, event.message, details)
            else:
                firing.pop((rule, service), None)
        self.state = AlertState(firing=firing)
        self.metrics.alerts_evaluated(firing, 0.0)

    def wake(self) -> None:
        """Something changed (a unit's signal): a pass soon."""
        self._wake.set()

    async def run(self) -> None:
        """The firing alerts read back and a first pass; then a pass at each wake or a
        rule's due time (the history's rounds make the others), for ever."""
        try:
            self.restore()
        except Exception as exc:  # none known to fire: a still-true one is announced again
            log.warning("firing alerts not read back", error=str(exc)[:200])
        while True:
            try:
                await self.evaluate_now()
            except Exception as exc:  # one pass lost; the next one looks again
                log.warning("alert pass failed", error=str(exc)[:200])
            # Past a round missed (the history's loop failing), a pass of its own anyway.
            wait = 2 * self._config().history_interval
            if self._next_due is not None:
                wait = min(wait, max(0.0, self._next_due - self.clock.now().timestamp()))
            if await woken(self._wake, wait):
                await asyncio.sleep(SETTLE_SECONDS)
            self._wake.clear()

    async def after_round(
        self, summaries: Sequence[ServiceSummary], observed: Sequence[ServiceObservation]
    ) -> None:
        """A pass on the history round's own observation (``History.observed``)."""
        try:
            await self.evaluate_now(summaries, observed)
        except Exception as exc:  # the next pass looks again
            log.warning("alert pass failed", error=str(exc)[:200])

    async def evaluate_now(
        self,
        summaries: Sequence[ServiceSummary] | None = None,
        observed: Sequence[ServiceObservation] | None = None,
    ) -> Evaluation:
        """One pass over every rule: observe (unless given), evaluate, record what changed."""
        async with self._passing:
            if summaries is None or observed is None:
                summaries = self.store.service_summaries()
                observed = await self.host.observe_services([s.name for s in summaries])
            return await self._evaluate(summaries, observed)

    async def _evaluate(
        self, summaries: Sequence[ServiceSummary], observed: Sequence[ServiceObservation]
    ) -> Evaluation:
        config = self._config()
        states = self.store.states()
        facts = self.store.alert_facts()
        now = self.clock.now()
        inputs = []
        for summary, observation in zip(summaries, observed, strict=True):
            name = summary.name
            own_policy, own_schedule, certificate_ends = facts.get(name, (False, None, None))
            schedule = own_schedule if own_policy else config.backups.schedule
            unit = observation.unit
            backup = observation.last_backup_at
            inputs.append(
                ServiceInput(
                    name=name,
                    # A sleeping service is stopped on purpose, not down.
                    desired_running=summary.desired_state == "running" and not self.asleep(name),
                    running=unit.is_running if unit is not None else None,
                    healthy=states.get(name, ("deploying", None))[1],
                    restarts=unit.restarts if unit is not None else None,
                    last_backup_at=backup.timestamp() if backup is not None else None,
                    backup_interval=self._intervals.of(schedule, now) if schedule else None,
                    certificate_not_after=(
                        certificate_ends.timestamp() if certificate_ends is not None else None
                    ),
                )
            )
        free = await asyncio.to_thread(disk_free_fraction, config.base_dir)
        started = time.perf_counter()
        evaluation = evaluate(config.alerts, self.state, inputs, free, now.timestamp())
        self.state = evaluation.state
        self._next_due = evaluation.next_due
        for alert in evaluation.fired:
            self._record(alert, "alert_firing")
        for alert in evaluation.resolved:
            self._record(alert, "alert_resolved")
        self.metrics.alerts_evaluated(evaluation.state.firing, time.perf_counter() - started)
        return evaluation

    def _record(self, alert: Alert, kind: str) -> None:
        details = {"rule": alert.rule, "service": alert.service, **alert.details}
        message = alert.message if kind == "alert_firing" else f"resolved: {alert.message}"
        log.warning(kind.replace("_", " "), rule=alert.rule, service=alert.service or None)
        try:
            self.store.add_event(alert.service or HOST, kind, message, details)
        except DatabaseFull:  # the log line above says the same; disk_low is likely firing
            log.error("alert event not recorded: the store's disk is full", rule=alert.rule)
