"""The order pytest-xdist hands modules to its workers: the longest first.

``make test`` runs one module per worker at a time (``--dist loadfile``: a module's test
bed stays in one process). xdist then hands out modules in collection order (with
``--no-loadscope-reorder``; its default orders them by their number of tests, which says
little here: 96 fuzz cases take two minutes, 186 store tests a few seconds). Handing the
longest first and letting the short ones fill the gaps (longest processing time first)
keeps one worker from starting a two-minute module when the others are nearly done.

The weights are seconds of wall time per module, measured on a 2-core machine by a whole
run with three workers (the per-module span from the first test's start to the last
test's end). Only their order matters; a module that is not listed weighs nothing and runs
after the listed ones, in collection order. A stale table costs balance, never a test.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol, TypeVar

# Measured at 6f2cc1e, 3 workers, load average 8 (the rest of the machine busy as well).
MODULE_SECONDS: Mapping[str, int] = {
    "tests/integration/test_packaging.py": 109,
    "tests/integration/test_api_fuzz.py": 108,
    "tests/benchmarks/test_benchmark_harness.py": 96,
    "tests/integration/test_agent.py": 92,
    "tests/integration/test_fleet_moves.py": 90,
    "tests/e2e/test_dashboard.py": 87,
    "tests/integration/test_replication_attacks.py": 80,
    "tests/integration/test_sleep.py": 79,
    "tests/integration/test_cli_habits.py": 71,
    "tests/e2e/test_backups_tab.py": 58,
    "tests/integration/test_api_access.py": 53,
    "tests/integration/test_deploys.py": 49,
    "tests/integration/test_cli.py": 49,
    "tests/benchmarks/test_load_harness.py": 48,
    "tests/unit/test_api_document_bodies.py": 48,
    "tests/integration/test_snapshot_kill.py": 43,
    "tests/integration/test_api_services.py": 36,
    "tests/integration/test_offsite_agent_killed.py": 28,
    "tests/benchmarks/test_fleet_benchmark.py": 26,
    "tests/integration/test_fleet.py": 24,
    "tests/e2e/test_live_pages.py": 23,
    "tests/integration/test_api_watch.py": 21,
    "tests/integration/test_downgrades_and_crash_loops.py": 21,
    "tests/integration/test_faults_kill.py": 20,
    "tests/integration/test_backups_api.py": 19,
    "tests/integration/test_webhooks.py": 18,
    "tests/integration/test_faults_store.py": 17,
    "tests/integration/test_resync_rounds.py": 17,
    "tests/integration/test_agent_process.py": 17,
    "tests/unit/test_store.py": 16,
    "tests/integration/test_bursts.py": 16,
    "tests/integration/test_replication.py": 15,
    "tests/integration/test_pocketbase_settings.py": 15,
    "tests/integration/test_clones.py": 15,
    "tests/integration/test_metrics.py": 15,
    "tests/integration/test_api_habits.py": 13,
    "tests/integration/test_snapshot_faults.py": 13,
    "tests/integration/test_hostile_instances.py": 13,
    "tests/integration/test_cli_backups.py": 12,
    "tests/integration/test_alerts.py": 12,
    "tests/unit/test_store_postgresql.py": 12,
    "tests/integration/test_install.py": 12,
    "tests/integration/test_agent_postgresql.py": 11,
    "tests/e2e/test_charts.py": 11,
    "tests/integration/test_offsite_backups.py": 11,
    "tests/integration/test_faults_host.py": 9,
    "tests/integration/test_snapshots.py": 9,
    "tests/integration/test_up.py": 9,
    "tests/integration/test_https_and_proxy.py": 9,
    "tests/e2e/test_webhooks_page.py": 8,
    "tests/unit/test_store_nodes.py": 7,
    "tests/e2e/test_node_lost_badge.py": 7,
    "tests/integration/test_servicedirs.py": 6,
    "tests/unit/test_api_document_values.py": 6,
    "tests/unit/test_spec_grammar.py": 6,
    "tests/integration/test_backup_schedule.py": 6,
    "tests/integration/test_s3_target.py": 6,
    "tests/integration/test_releases.py": 6,
}


class Item(Protocol):
    """What the ordering reads of a collected test: pytest's ``nodeid``."""

    @property
    def nodeid(self) -> str: ...


T = TypeVar("T", bound=Item)


def module_of(nodeid: str) -> str:
    """``tests/x/test_y.py`` of ``tests/x/test_y.py::test_z[case]``."""
    return nodeid.split("::", 1)[0]


def longest_modules_first(items: Sequence[T], seconds: Mapping[str, int]) -> list[T]:
    """``items`` with whole modules moved by weight, heaviest first; a module's tests keep
    their order, and modules of equal weight keep the order they were collected in."""
    first_seen: dict[str, int] = {}
    for item in items:
        first_seen.setdefault(module_of(item.nodeid), len(first_seen))

    def rank(item: T) -> tuple[int, int]:
        module = module_of(item.nodeid)
        return (-seconds.get(module, 0), first_seen[module])

    return sorted(items, key=rank)
