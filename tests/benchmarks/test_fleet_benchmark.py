"""The fleet benchmark's harness runs end to end at tiny sizes (no timing is asserted:
`make bench` output is read, docs/benchmarks.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.benchmarks.fleet import NODES, measure
from tests.testbed.postgres import unavailable_reason


async def test_the_fleet_benchmark_measures_a_remote_spec_and_idle_nodes(
    testbed_base: Path,
) -> None:
    if reason := unavailable_reason():
        pytest.skip(reason)
    figures: dict[str, float] = {}
    await measure(1, 1, 1.0, figures.__setitem__)
    for key in (
        "single host: spec -> 200 median (s)",
        "fleet: spec through A -> 200 on B median (s)",
        "fleet: spec through B -> 200 on B median (s)",
        "fleet: ratio remote / single host",
        "single host: 1 idle, agent RSS MB",
    ):
        assert figures[key] > 0, key
    for name in NODES:
        assert 0 < figures[f"fleet: 1 idle on {name}, agent RSS MB"] < 1024
        assert f"fleet: 1 idle on {name}, agent CPU % of one core" in figures
    # Each of the three agents holds at least its LISTEN connection and one of its pool.
    assert figures["fleet: PostgreSQL connections, most seen"] >= 2 * len(NODES)
    assert "fleet: PostgreSQL server CPU % of one core" in figures
