"""One-off commands run as transient units of the test bed's systemd, never as our children."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from dbus_fast import Variant

from pockestrator.agent.sandbox import Sandbox
from pockestrator.controllers.systemd import NoSuchUnit, SystemdBus
from pockestrator.controllers.systemd.transient import OUTPUT_MAX, run_transient


@pytest.fixture(scope="module")
async def bus(sandbox: Sandbox) -> AsyncIterator[SystemdBus]:
    client = await SystemdBus.connect("user", sandbox.systemd.paths.bus_address)
    yield client
    await client.close()


async def test_a_command_runs_in_its_own_unit_and_its_output_comes_back(
    bus: SystemdBus, tmp_path: Path
) -> None:
    run = await run_transient(
        bus,
        "tr-ok.service",
        ["/bin/sh", "-c", "cat /proc/self/cgroup; echo uid=$(id -u)"],
        [("User", Variant("s", "nobody"))],
        timeout=20,
    )
    assert run.ok and run.exit_status == 0 and not run.truncated
    assert "/tr-ok.service" in run.output  # its own cgroup, not the agent's
    assert "uid=65534\n" in run.output
    with pytest.raises(NoSuchUnit):  # collected: nothing stays loaded
        await bus.call("GetUnit", "s", ["tr-ok.service"])


async def test_a_failing_command_reports_its_exit_status_and_is_unloaded(bus: SystemdBus) -> None:
    run = await run_transient(
        bus, "tr-fail.service", ["/bin/sh", "-c", "echo broken >&2; exit 7"], [], timeout=20
    )
    assert (run.ok, run.result, run.exit_status) == (False, "exit-code", 7)
    assert run.output == "broken\n"
    with pytest.raises(NoSuchUnit):
        await bus.call("GetUnit", "s", ["tr-fail.service"])


async def test_endless_output_is_cut_at_the_bound(bus: SystemdBus) -> None:
    run = await run_transient(
        bus,
        "tr-loud.service",
        ["/bin/sh", "-c", "yes pocketbase | head -c 2000000"],
        [],
        timeout=20,
    )
    assert run.ok and run.truncated
    assert len(run.output) == OUTPUT_MAX


async def test_a_command_past_its_deadline_is_killed_by_systemd(bus: SystemdBus) -> None:
    run = await run_transient(bus, "tr-slow.service", ["/bin/sleep", "30"], [], timeout=0.5)
    assert (run.ok, run.result) == (False, "timeout")


async def test_a_relative_program_is_refused_before_anything_starts(bus: SystemdBus) -> None:
    with pytest.raises(ValueError, match="absolute"):
        await run_transient(bus, "tr-rel.service", ["sh", "-c", "true"], [], timeout=5)
