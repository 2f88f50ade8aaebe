"""``/metrics`` on a real agent: real systemd, Caddy (with its per-host metrics on) and
PocketBase. Every scrape is parsed with Prometheus' own parser, and its values are held
against what the test did: requests it sent through Caddy, a process it killed."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from pockestrator.agent.daemon import Agent
from pockestrator.agent.sandbox import Sandbox, free_port
from pockestrator.config import AgentConfig
from tests.testbed.api_client import Api, create, wait_running
from tests.testbed.waiting import http_get, wait_until

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
SERVICE = "gauged"
DOMAIN = f"{SERVICE}.localhost"


@pytest.fixture(scope="module")
async def agent_config(agent_config: AgentConfig) -> AgentConfig:
    """The module's agent also serves /metrics without a token on a listener of its own,
    and keeps a history point every second (a minute in production)."""
    return agent_config.model_copy(
        update={"metrics_listen": f"127.0.0.1:{free_port()}", "history_interval": 1.0}
    )


@pytest.fixture(scope="module")
async def gauged(api: Api, pocketbase_versions: tuple[str, str]) -> dict[str, Any]:
    created = await create(api, pocketbase_versions[1], SERVICE, resources={"memory_max": "256M"})
    await wait_running(api, SERVICE)
    return dict(created["service"])


async def scrape(api: Api) -> Samples:
    """One scrape with the API's token, every sample parsed by prometheus_client."""
    async with api.session.get(
        api.root + "/metrics", headers={"Authorization": f"Bearer {api.token}"}
    ) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return parse(await response.text())


def parse(text: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def cgroup_cpu_seconds(control_group: str) -> float:
    """usage_usec of the cgroup's cpu.stat, in the v2 tree (the whole of /sys/fs/cgroup, or
    its ``unified`` mount on a hybrid host such as this test bed's)."""
    root = Path("/sys/fs/cgroup")
    tree = root if (root / "cgroup.controllers").exists() else root / "unified"
    for line in (tree / control_group.lstrip("/") / "cpu.stat").read_text().splitlines():
        key, _, number = line.partition(" ")
        if key == "usage_usec":
            return int(number) / 1e6
    raise AssertionError(f"no usage_usec in {control_group}'s cpu.stat")


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


async def test_metrics_parse_and_report_the_running_service_as_systemd_sees_it(
    api: Api, agent: Agent, gauged: dict[str, Any]
) -> None:
    samples = await scrape(api)
    unit = await agent.bus.unit_status(f"{SERVICE}-pocketbase.service")
    assert value(samples, "pockestrator_service_up", service=SERVICE) == 1
    assert value(samples, "pockestrator_service_desired_up", service=SERVICE) == 1
    assert value(samples, "pockestrator_service_state", service=SERVICE, state="active") == 1
    assert value(samples, "pockestrator_service_memory_max_bytes", service=SERVICE) == 256 << 20
    memory = value(samples, "pockestrator_service_memory_bytes", service=SERVICE)
    assert memory is not None and 1 << 20 < memory < 256 << 20
    peak = value(samples, "pockestrator_service_memory_peak_bytes", service=SERVICE)
    assert peak is not None and peak >= memory
    cpu = value(samples, "pockestrator_service_cpu_seconds_total", service=SERVICE)
    assert cpu is not None and cpu > 0
    # The unit's cgroup's own count, read by the test after the scrape: never less.
    assert unit.control_group is not None
    assert cpu <= cgroup_cpu_seconds(unit.control_group)
    assert value(samples, "pockestrator_service_restarts_total", service=SERVICE) == (
        unit.n_restarts
    )
    data = value(samples, "pockestrator_service_data_bytes", service=SERVICE)
    assert data is not None and data > 0  # PocketBase made its databases in pb_data
    assert value(samples, "pockestrator_services") == len(agent.store.service_names())


async def test_metrics_need_a_token_on_the_api(api: Api, gauged: dict[str, Any]) -> None:
    async with api.session.get(api.root + "/metrics") as response:
        assert response.status == 401
        body = await response.json()
    assert body["code"] == "UNAUTHORIZED", body


async def test_requests_sent_through_caddy_are_counted_for_their_service_by_code(
    api: Api, sandbox: Sandbox, gauged: dict[str, Any]
) -> None:
    before = await scrape(api)

    def count(samples: Samples, code: str) -> float:
        found = value(
            samples, "pockestrator_service_http_requests_total", service=SERVICE, code=code
        )
        return found or 0.0

    for _ in range(7):
        status, _body = await http_get(f"{sandbox.caddy_url}/api/health", DOMAIN)
        assert status == 200
    for _ in range(3):
        status, _body = await http_get(f"{sandbox.caddy_url}/api/no-such-route", DOMAIN)
        assert status == 404

    latest: dict[str, float] = {}

    async def counted() -> bool:
        samples = await scrape(api)
        latest["200"] = count(samples, "200") - count(before, "200")
        latest["404"] = count(samples, "404") - count(before, "404")
        return latest == {"200": 7, "404": 3}

    assert await wait_until(counted, 10, 0.2), latest
    samples = await scrape(api)
    histogram_count = value(
        samples, "pockestrator_service_http_request_duration_seconds_count", service=SERVICE
    )
    assert histogram_count == count(samples, "200") + count(samples, "404")


async def test_the_history_holds_memory_cpu_and_the_requests_sent_through_caddy(
    api: Api, sandbox: Sandbox, gauged: dict[str, Any]
) -> None:
    sent = {"count": 0}
    seen: dict[str, Any] = {}

    def memory_in_each(series: dict[str, list[Any]]) -> bool:
        return all(memory and 1 << 20 < memory < 256 << 20 for memory in series["memory_bytes"])

    async def traffic_seen() -> bool:
        """The three newest points: traffic counted and a memory sample in each (under load
        a point was seen without one: a sample that found no unit status has none)."""
        for _ in range(5):
            await http_get(f"{sandbox.caddy_url}/api/health", DOMAIN)
            sent["count"] += 1
        reply = await api.call("GET", f"/services/{SERVICE}/history", params={"points": "3"})
        assert reply.status == 200, reply.body
        seen.update(reply.body)
        series = reply.body["series"]
        rates = [rate for rate in series["requests_per_second"] if rate]
        seen_p95 = any(p95 is not None for p95 in series["p95_seconds"])
        return len(series["at"]) == 3 and bool(rates) and seen_p95 and memory_in_each(series)

    assert await wait_until(traffic_seen, 20, 0.3), (sent, seen)
    assert seen["service"] == SERVICE and seen["interval_seconds"] == 1.0
    assert seen["memory_max_bytes"] == 256 << 20
    series = seen["series"]
    assert series["at"] == sorted(series["at"])
    assert all(len(values) == 3 for values in series.values())
    everything = await api.call("GET", "/history", params={"points": "2"})
    assert everything.status == 200
    assert set(everything.body["services"]) == {SERVICE}
    assert len(everything.body["host"]["at"]) == 2
    refused = await api.call("GET", "/history", params={"points": "241"})
    assert refused.status == 400


async def test_a_killed_instance_restarted_by_systemd_increments_restarts(
    api: Api, agent: Agent, gauged: dict[str, Any]
) -> None:
    unit = f"{SERVICE}-pocketbase.service"
    before = await scrape(api)
    restarts = value(before, "pockestrator_service_restarts_total", service=SERVICE)
    assert restarts is not None
    pid = (await agent.bus.unit_status(unit)).main_pid
    assert pid is not None

    os.kill(pid, signal.SIGKILL)

    async def restarted() -> bool:
        status = await agent.bus.unit_status(unit)
        return status.active_state == "active" and status.main_pid not in (None, pid)

    assert await wait_until(restarted, 20, 0.2)
    after = await scrape(api)
    assert value(after, "pockestrator_service_restarts_total", service=SERVICE) == restarts + 1
    await wait_running(api, SERVICE)

    async def new_process_measured() -> bool:
        memory = value(await scrape(api), "pockestrator_service_memory_bytes", service=SERVICE)
        return memory is not None and memory > 1 << 20

    assert await wait_until(new_process_measured, 10, 0.2)


async def test_the_agent_counts_its_own_reconciles_and_api_requests(
    api: Api, gauged: dict[str, Any]
) -> None:
    await scrape(api)
    samples = await scrape(api)
    route = "/api/pockestrator/metrics"
    served = value(
        samples, "pockestrator_api_requests_total", method="GET", route=route, code="200"
    )
    assert served is not None and served >= 1
    reconciles = value(samples, "pockestrator_reconcile_duration_seconds_count")
    assert reconciles is not None and reconciles >= 1
    caddy_waves = value(samples, "pockestrator_caddy_apply_duration_seconds_count")
    assert caddy_waves is not None and caddy_waves >= 1
    # A path nobody declared is counted under one label, not one per path asked for.
    await api.call("GET", "/no/such/thing/12345")
    samples = await scrape(api)
    assert not any("12345" in dict(labels).get("route", "") for _name, labels in samples)
    assert value(
        samples, "pockestrator_api_requests_total", method="GET", route="unmatched", code="404"
    )


async def test_the_metrics_listener_answers_without_a_token(
    agent: Agent, gauged: dict[str, Any]
) -> None:
    listen = agent.config.metrics_listen
    assert listen is not None
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://{listen}/metrics") as response,
    ):
        assert response.status == 200
        samples = parse(await response.text())
    assert value(samples, "pockestrator_service_up", service=SERVICE) == 1
