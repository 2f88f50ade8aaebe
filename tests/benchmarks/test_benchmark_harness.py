"""The benchmark harness itself runs end to end (tiny sizes; no timing is asserted here).

Timing targets are checked by reading `make bench` output, not by tests: a timed test
would fail on a busy machine for reasons that say nothing about the code.
"""

from __future__ import annotations

from pathlib import Path

from tests.benchmarks.bench import run
from tests.benchmarks.scrape import measure as measure_scrape


async def test_the_benchmarks_measure_agent_and_floor(testbed_base: Path) -> None:
    report = await run(
        runs=1, burst=3, idle_seconds=1.0, restarts=1, upgrades=1, scrape_services=3, changes=2
    )
    figures = report.figures
    for key in (
        "single: unit floor median (s)",
        "single: floor median (s)",
        "single: agent median (s)",
        "burst 3: unit floor (s)",
        "burst 3: floor (s)",
        "burst 3: agent (s)",
        "burst 3: caddy waves",
        "repair unit file: median (s) [<=1]",
        "repair site snippet: median (s) [<=1]",
    ):
        assert figures[key] > 0, key
    assert figures["burst 3: daemon-reloads"] == 0  # new units start without one
    ratio = figures["single: agent median (s)"] / figures["single: unit floor median (s)"]
    assert abs(figures["single: ratio agent/unit floor [<=1.5]"] - ratio) < 0.01
    ratio = figures["burst 3: agent (s)"] / figures["burst 3: floor (s)"]
    assert abs(figures["burst 3: ratio agent/floor"] - ratio) < 0.01
    assert figures["burst 3: agent CPU % of one core"] > 0
    assert figures["idle 1s: services"] == 3  # the burst's; the single one was deleted
    assert 0 < figures["idle 1s: agent RSS MB [<=80]"] < 1024
    # The steady client: every request counted, the 5xx among them (no target here).
    assert figures["1 restarts: requests"] > 0 and figures["1 upgrades: requests"] > 0
    assert 0 <= figures["1 restarts: 5xx or no answer [0]"] <= figures["1 restarts: requests"]
    assert figures["1 upgrades: max latency (ms)"] >= figures["1 upgrades: p99 latency (ms)"] > 0
    # Watches: each change heard by the last watcher, after the write was sent.
    for watchers in (1, 32):
        heard = figures[f"watch {watchers}: last watcher median (s) [<=0.1]"]
        assert figures[f"watch {watchers}: last watcher max (s)"] >= heard > 0
        assert figures[f"watch {watchers}: floor, PATCH answered median (s)"] > 0


async def test_the_backup_benchmark_measures_both_backups_and_a_restore(
    testbed_base: Path,
) -> None:
    from tests.benchmarks.backups import run as run_backups

    report = await run_backups(megabytes=4, rate=100.0, window=1.0)
    figures = report.figures
    for key in (
        "ours: backup seconds",
        "pocketbase: backup seconds",
        "ours: writes in window",
        "pocketbase: writer max ms",
        "restore seconds (safety snapshot + swap + start + health)",
    ):
        assert figures[key] > 0, key
    assert figures["data.db MB"] >= 3
    assert figures["writer errors"] == 0
    ratio = figures["ours: writer max ms"] / figures["pocketbase: writer max ms"]
    assert abs(figures["max stall ratio ours/pocketbase [<=0.1]"] - ratio) < 0.01


async def test_the_deploy_benchmark_measures_agent_and_floor(testbed_base: Path) -> None:
    from tests.benchmarks.deploys import run as run_deploys

    figures = (await run_deploys(deploys=2)).figures
    for who in ("floor", "agent"):
        assert figures[f"deploy: {who} median (s)"] > 0, who
        assert figures[f"deploy: {who} requests answered"] > 0, who
    ratio = figures["deploy: agent median (s)"] / figures["deploy: floor median (s)"]
    assert abs(figures["deploy: ratio agent/floor"] - ratio) < 0.01


async def test_the_scrape_benchmark_reads_real_units_and_a_real_caddys_text(
    testbed_base: Path,
) -> None:
    figures = await measure_scrape(4, runs=2)
    assert figures["services"] == 4
    # Two requests per host, one 200 and one 404: two request samples per service.
    assert figures["request_samples"] == 8
    # Every unit's memory read from its cgroup; nothing asked again in the steady state.
    assert figures["memory_samples"] == 4
    assert figures["slow_facts_asked_in_steady_state"] == 0
    assert figures["samples"] > 4 * 15
    for key in ("agent_cpu_ms", "floor_cpu_ms", "floor_look_cpu_ms", "per_unit_getall_cpu_ms"):
        assert figures[key] > 0, key


async def test_the_sleep_benchmark_measures_wakes_floors_and_memory(testbed_base: Path) -> None:
    from tests.benchmarks.sleep import run as run_sleep

    report = await run_sleep(wakes=1, services=2)
    figures = report.figures
    for key in (
        "wake: first byte median (s) [<=0.3]",
        "floor: awake request median (s)",
        "floor: unit boot median (s)",
        "RAM 2 services all awake (MB)",
    ):
        assert figures[key] > 0, key
    assert figures["wake: failed requests of 6 [0]"] == 0, report.notes
    assert figures["RAM 2 services, 1 asleep (MB)"] < figures["RAM 2 services all awake (MB)"]
