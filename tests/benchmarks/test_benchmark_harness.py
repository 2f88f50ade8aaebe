"""The benchmark harness itself runs end to end (tiny sizes; no timing is asserted here).

Timing targets are checked by reading `make bench` output, not by tests: a timed test
would fail on a busy machine for reasons that say nothing about the code.
"""

from __future__ import annotations

from pathlib import Path

from tests.benchmarks.bench import run


async def test_the_benchmarks_measure_agent_and_floor(testbed_base: Path) -> None:
    report = await run(runs=1, burst=3, idle_seconds=1.0)
    figures = report.figures
    for key in (
        "single: floor median (s)",
        "single: agent median (s)",
        "burst 3: floor (s)",
        "burst 3: agent (s)",
        "repair unit file: median (s) [<=1]",
        "repair site snippet: median (s) [<=1]",
    ):
        assert figures[key] > 0, key
    ratio = figures["single: agent median (s)"] / figures["single: floor median (s)"]
    assert abs(figures["single: ratio agent/floor [<=1.5]"] - ratio) < 0.01
    assert figures["idle 1s: services"] == 3  # the burst's; the single one was deleted
    assert 0 < figures["idle 1s: agent RSS MB [<=80]"] < 1024


async def test_the_deploy_benchmark_measures_agent_and_floor(testbed_base: Path) -> None:
    from tests.benchmarks.deploys import run as run_deploys

    figures = (await run_deploys(deploys=2)).figures
    for who in ("floor", "agent"):
        assert figures[f"deploy: {who} median (s)"] > 0, who
        assert figures[f"deploy: {who} requests answered"] > 0, who
    ratio = figures["deploy: agent median (s)"] / figures["deploy: floor median (s)"]
    assert abs(figures["deploy: ratio agent/floor"] - ratio) < 0.01
