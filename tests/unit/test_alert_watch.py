"""The alert pass's memory across an agent restart: read back from the store's events
(on both backends: a fleet's agent reads it back from PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

from pockestrator.agent.alert_rules import DISK_LOW, HOST, SERVICE_DOWN
from pockestrator.agent.alerts import AlertWatch, ScheduleIntervals, disk_free_fraction
from pockestrator.clock import SYSTEM_CLOCK
from pockestrator.config import AgentConfig
from pockestrator.specs.store import Store
from pockestrator.telemetry import AgentMetrics
from tests.testbed.store_backends import StoreBackend


def _watch(store: Store, metrics: AgentMetrics) -> AlertWatch:
    return AlertWatch(AgentConfig, store, None, metrics, SYSTEM_CLOCK)  # type: ignore[arg-type]


def test_the_alerts_still_firing_are_read_back_and_the_resolved_ones_are_not(
    store_backend: StoreBackend,
) -> None:
    store = Store(store_backend.open())
    down = {"rule": SERVICE_DOWN, "service": "shop", "down_since": 1.0}
    store.add_event("shop", "alert_firing", "shop is down", down)
    store.add_event("shop", "alert_resolved", "resolved: shop is down", down)
    store.add_event("blog", "alert_firing", "blog is down", {**down, "service": "blog"})
    store.add_event(HOST, "alert_firing", "disk", {"rule": DISK_LOW, "service": ""})
    store.add_event("blog", "health_lost", "not an alert", {"rule": "x"})
    metrics = AgentMetrics()
    watch = _watch(store, metrics)
    watch.restore()
    assert set(watch.state.firing) == {(SERVICE_DOWN, "blog"), (DISK_LOW, HOST)}
    assert watch.state.firing[(SERVICE_DOWN, "blog")].details == {"down_since": 1.0}
    sample = metrics.registry.get_sample_value
    assert sample("pockestrator_alerts_firing", {"rule": SERVICE_DOWN, "service": "blog"}) == 1
    assert sample("pockestrator_alerts_firing", {"rule": SERVICE_DOWN, "service": "shop"}) is None
    store.close()


def test_a_daily_schedule_is_a_day_apart_and_a_bad_one_is_no_schedule() -> None:
    from datetime import UTC, datetime

    intervals = ScheduleIntervals()
    now = datetime(2026, 12, 2, 7, 0, tzinfo=UTC)
    assert intervals.of("0 3 * * *", now) == 86400
    assert intervals.of("*/15 * * * *", now) == 900
    assert intervals.of("not cron", now) is None


def test_free_space_is_read_from_the_nearest_existing_folder(tmp_path: Path) -> None:
    free = disk_free_fraction(tmp_path / "not" / "yet")
    assert free is not None and 0 <= free <= 1
