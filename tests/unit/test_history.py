"""The agent's short history: rates from two rounds, the percentile from Caddy's buckets,
restarts and resets that give no rate, the host's totals, and buffers that stay bounded."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pockestrator.agent.history import History, bucket_delta, quantile
from pockestrator.api.context import ServiceObservation, UnitState
from pockestrator.api.metrics import HostTraffic

START = datetime(2026, 1, 1, tzinfo=UTC)
INF = float("inf")


def unit(pid: int, cpu: float, memory: int = 100) -> UnitState:
    return UnitState(
        exists=True,
        active_state="active",
        sub_state="running",
        main_pid=pid,
        memory_bytes=memory,
        restarts=0,
        active_since=None,
        need_daemon_reload=False,
        memory_max_bytes=1000,
        cpu_seconds=cpu,
    )


def traffic(total: float, errors: float, buckets: dict[float, float]) -> HostTraffic:
    entry = HostTraffic()
    entry.by_code["200"] = total - errors
    entry.by_code["503"] = errors
    entry.total = total
    entry.buckets.update(buckets)
    return entry


@pytest.mark.parametrize(
    ("q", "buckets", "expected"),
    [
        (0.95, {0.1: 0.0, 0.5: 100.0, INF: 100.0}, 0.1 + 0.4 * 0.95),
        (0.5, {0.1: 50.0, 0.5: 100.0, INF: 100.0}, 0.1),
        (0.95, {0.1: 10.0, 0.5: 10.0, INF: 20.0}, 0.5),  # past the last bound: that bound
        (0.95, {0.1: 0.0, INF: 0.0}, None),  # no requests in the interval
        (0.95, {}, None),
    ],
)
def test_quantile_interpolates_inside_its_bucket(
    q: float, buckets: dict[float, float], expected: float | None
) -> None:
    found = quantile(q, buckets)
    assert found == pytest.approx(expected) if expected is not None else found is None


def test_a_counter_that_went_back_gives_no_buckets() -> None:
    assert bucket_delta({0.1: 5.0, INF: 9.0}, {0.1: 2.0, INF: 3.0}) == {0.1: 3.0, INF: 6.0}
    assert bucket_delta({0.1: 1.0, INF: 1.0}, {0.1: 2.0, INF: 3.0}) == {}


def test_two_rounds_give_rates_a_percentile_and_host_totals() -> None:
    history = History(points=10)
    first = {
        "a": traffic(100, 0, {0.1: 100, 0.5: 100, INF: 100}),
        "b": traffic(0, 0, {0.1: 0, INF: 0}),
    }
    observations = [
        ServiceObservation("a", unit(10, cpu=5.0, memory=300)),
        ServiceObservation("b", unit(20, cpu=1.0, memory=200)),
    ]
    history.record(START, 1000.0, observations, first)
    assert history.series("a")[0].requests_per_second is None  # one round: no rate yet
    second = {
        "a": traffic(700, 60, {0.1: 100, 0.5: 700, INF: 700}),
        "b": traffic(0, 0, {0.1: 0, INF: 0}),
    }
    observations = [
        ServiceObservation("a", unit(10, cpu=35.0, memory=400)),
        ServiceObservation("b", unit(20, cpu=7.0, memory=200)),
    ]
    history.record(START + timedelta(minutes=1), 1060.0, observations, second)
    point = history.series("a")[-1]
    assert point.memory_bytes == 400
    assert point.cpu_cores == pytest.approx(0.5)
    assert point.requests_per_second == pytest.approx(10.0)
    assert point.errors_per_second == pytest.approx(1.0)
    assert point.p95_seconds == pytest.approx(0.1 + 0.4 * 0.95)
    assert history.series("b")[-1].p95_seconds is None  # no requests
    host = history.host()[-1]
    assert host.memory_bytes == 600
    assert host.cpu_cores == pytest.approx(0.6)
    assert host.requests_per_second == pytest.approx(10.0)
    assert history.memory_max("a") == 1000


def test_a_new_process_or_a_reset_caddy_gives_no_rate_for_that_round() -> None:
    history = History(points=10)
    history.record(
        START, 0.0, [ServiceObservation("a", unit(10, cpu=50.0))], {"a": traffic(500, 0, {})}
    )
    history.record(
        START + timedelta(minutes=1),
        60.0,
        [ServiceObservation("a", unit(11, cpu=0.5))],  # restarted: its CPU began again
        {"a": traffic(3, 0, {})},  # Caddy reloaded: its counters began again
    )
    point = history.series("a")[-1]
    assert point.cpu_cores is None and point.requests_per_second is None


def test_the_buffers_are_bounded_and_a_removed_service_is_forgotten() -> None:
    history = History(points=5)
    for minute in range(12):
        history.record(
            START + timedelta(minutes=minute),
            60.0 * minute,
            [ServiceObservation("a", unit(1, cpu=minute)), ServiceObservation("b", None)],
            {},
        )
    assert len(history.series("a")) == 5 and len(history.host()) == 5
    assert history.series("a")[-1].at == START + timedelta(minutes=11)
    assert history.series("b")[-1].memory_bytes is None
    history.record(START, 999.0, [ServiceObservation("a", unit(1, cpu=1))], {})
    assert history.series("b") == [] and history.memory_max("b") is None


async def test_a_round_hands_its_own_observation_to_the_alert_pass(tmp_path: Path) -> None:
    from pockestrator.specs.model import parse_spec
    from pockestrator.specs.store import ServiceSummary, Store

    store = Store(tmp_path / "store.db")
    store.create_service(
        parse_spec({"project_name": "a", "port": 20001, "pocketbase_version": "0.29.0"}, "x.test")
    )
    looks: list[list[str]] = []

    class Host:
        async def observe_services(self, names: Sequence[str]) -> list[ServiceObservation]:
            looks.append(list(names))
            return [ServiceObservation(name, None) for name in names]

        async def caddy_metrics(self) -> str | None:
            return None

    handed: list[tuple[list[str], list[str]]] = []

    async def observed(
        summaries: Sequence[ServiceSummary], observations: Sequence[ServiceObservation]
    ) -> None:
        handed.append(([s.name for s in summaries], [o.name for o in observations]))

    history = History()
    history.observed = observed
    await history.round(store, Host())  # type: ignore[arg-type]
    assert looks == [["a"]]  # one look, shared
    assert handed == [(["a"], ["a"])]
    store.close()
