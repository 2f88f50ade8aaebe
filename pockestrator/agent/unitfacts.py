"""Every service's unit as ``/metrics`` and the history show it, for little CPU per look.

Asking systemd for each unit's every property (``GetAll``, about 0.4 ms of the agent's CPU
a unit) made a scrape of 500 services cost 250 ms. Here a look is:

- one ``ListUnitsByNames`` for the states of all the units;
- the slow facts of a unit (``NRestarts``, ``MainPID``, ``MemoryMax``, its ``ControlGroup``)
  from a full ``unit_status``, kept until systemd says the unit changed
  (``PropertiesChanged``, which it sends on every state change, a restart included) or the
  bus reconnects (signals may have been lost), or until its states disagree with the row;
- memory and CPU from the unit's cgroup files (``controllers.systemd.cgroups``), read now,
  in a thread (a file read each, no round trip).

So in a steady state a look is one D-Bus call and two or three small reads per unit.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence
from datetime import UTC, datetime

from pockestrator.agent.health import CLOCK_TICKS, process_cpu_ticks
from pockestrator.api.context import UnitState
from pockestrator.controllers.systemd.bus import SystemdBus
from pockestrator.controllers.systemd.cgroups import CgroupFacts, CgroupFiles, CgroupLayout
from pockestrator.controllers.systemd.unit_state import NoSuchUnit, UnitRow, UnitStatus
from pockestrator.specs.model import unit_name

# Slow facts asked at once, at most (a first look at 500 units, or after a reconnect).
REFRESH_CONCURRENCY = 32


class UnitFacts:
    """The units' slow facts, kept until a signal says they changed; ``look`` per scrape."""

    def __init__(self, bus: SystemdBus, layout: CgroupLayout | None = None) -> None:
        self.bus = bus
        self.layout = layout if layout is not None else CgroupLayout.detect()
        self._slow: dict[str, UnitStatus] = {}
        self._files: dict[str, CgroupFiles] = {}  # the last look's, by ControlGroup
        # Bumped by each signal, so that an answer asked before a change is not kept.
        self._generation: dict[str, int] = {}
        self.refreshed = 0  # slow facts asked of systemd since the start (for the tests)
        bus.watch_units(self._changed)
        bus.on_reconnect(self._slow.clear)

    def _changed(self, unit: str) -> None:
        self._slow.pop(unit, None)
        self._generation[unit] = self._generation.get(unit, 0) + 1

    async def look(self, names: Sequence[str]) -> list[UnitState | None]:
        """The unit of each service of ``names`` now (None: systemd has no such unit)."""
        units = [unit_name(name) for name in names]
        rows = await self.bus.list_units_by_names(units)
        wanted = set(units)
        for unit in [unit for unit in self._slow if unit not in wanted]:
            del self._slow[unit]  # a removed service
            self._generation.pop(unit, None)
        stale = [row for row in rows if row.exists and not self._fresh(row)]
        if stale:
            await self._refresh(stale)
        slow = [self._slow.get(row.name) if row.exists else None for row in rows]
        groups = [status.control_group if status is not None else None for status in slow]
        files = [self._files_of(group) for group in groups]
        self._files = {
            group: where
            for group, where in zip(groups, files, strict=True)
            if group is not None and where is not None
        }
        cgroups = await asyncio.to_thread(_read_all, files)
        return [
            None if status is None else unit_now(row, status, facts)
            for row, status, facts in zip(rows, slow, cgroups, strict=True)
        ]

    def _fresh(self, row: UnitRow) -> bool:
        status = self._slow.get(row.name)
        return (
            status is not None
            and status.active_state == row.active_state
            and status.sub_state == row.sub_state
        )

    async def _refresh(self, rows: Sequence[UnitRow]) -> None:
        limit = asyncio.Semaphore(REFRESH_CONCURRENCY)

        async def one(unit: str) -> None:
            generation = self._generation.get(unit, 0)
            async with limit:
                try:
                    status = await self.bus.unit_status(unit)
                except NoSuchUnit:
                    return
            self.refreshed += 1
            if self._generation.get(unit, 0) == generation:
                self._slow[unit] = status

        await asyncio.gather(*(one(row.name) for row in rows))

    def _files_of(self, group: str | None) -> CgroupFiles | None:
        if group is None:
            return None
        known = self._files.get(group)  # kept from the last look, by ControlGroup
        return known if known is not None else self.layout.files(group)


def _read_all(files: Sequence[CgroupFiles | None]) -> list[CgroupFacts | None]:
    return [None if where is None else where.read() for where in files]


def unit_now(row: UnitRow, status: UnitStatus, facts: CgroupFacts | None) -> UnitState:
    """The row's states, the slow facts, and the cgroup's memory and CPU (systemd's CPU
    figure where the cgroup has no ``cpu.stat``; a process's own CPU from /proc where
    neither has one)."""
    since = status.active_enter_timestamp_usec
    running = row.active_state in ("active", "reloading", "activating")
    memory = facts.memory_bytes if facts is not None else None
    cpu = facts.cpu_seconds if facts is not None else None
    if cpu is None and status.cpu_usage_nsec is not None:
        cpu = status.cpu_usage_nsec / 1e9
    unit = UnitState(
        exists=row.exists,
        active_state=row.active_state,
        sub_state=row.sub_state,
        main_pid=status.main_pid if running else None,
        memory_bytes=memory,
        restarts=status.n_restarts,
        active_since=datetime.fromtimestamp(since / 1_000_000, UTC) if since else None,
        need_daemon_reload=status.need_daemon_reload,
        memory_max_bytes=status.memory_max,
        cpu_seconds=cpu,
        memory_peak_bytes=facts.memory_peak_bytes if facts is not None else None,
    )
    if unit.cpu_seconds is None and unit.main_pid is not None and running:
        # No CPU figure anywhere (a v1 host without CPU accounting): the main process's
        # own time from /proc, which starts again from 0 with each process.
        ticks = process_cpu_ticks(unit.main_pid)
        if ticks is not None:
            unit = dataclasses.replace(unit, cpu_seconds=ticks / CLOCK_TICKS)
    return unit
