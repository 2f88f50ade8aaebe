"""The systemd controller against a real manager: apply, jobs, observation, signals, drift."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pockestrator.agent.sandbox import Sandbox, free_port
from pockestrator.config import SANDBOX_UNSUPPORTED_HARDENING, AgentConfig
from pockestrator.controllers.releases import seed_from_installed
from pockestrator.controllers.systemd import SystemdUnits, UnitSettings, UnsafeValue, render_unit
from pockestrator.controllers.systemd.bus import SystemdBus
from pockestrator.controllers.systemd.unit_state import JobFailed
from pockestrator.specs.model import ServiceSpec, parse_spec
from tests.testbed.mirror import installed_version
from tests.testbed.waiting import wait_for_pocketbase, wait_until

# systemd allocates dynamic users from this range (DYNAMIC_UID_MIN..MAX in its build).
DYNAMIC_USERS = range(61184, 65520)


@pytest.fixture(scope="module")
async def units(sandbox: Sandbox) -> AsyncIterator[SystemdUnits]:
    config = sandbox.agent_config()
    seed_from_installed(config.release_cache_dir)
    bus = await SystemdBus.connect("user", sandbox.systemd.paths.bus_address)
    yield SystemdUnits(config, bus)
    await bus.close()


def prepare(config: AgentConfig, name: str, version: str | None = None) -> ServiceSpec:
    """A spec of the cached version: systemd makes the folder, the cache has the binary."""
    return parse_spec(
        {
            "project_name": name,
            "port": free_port(),
            "pocketbase_version": version or installed_version(),
        },
        "localhost",
    )


async def apply(units: SystemdUnits, spec: ServiceSpec) -> None:
    assert units.write(spec.project_name, render_unit(spec, units.settings))
    await units.bus.daemon_reload()
    await units.bus.enable_unit_files([spec.unit_name])
    await units.bus.start_unit(spec.unit_name)


async def test_an_applied_unit_runs_pocketbase_reachable_through_caddy(
    units: SystemdUnits, sandbox: Sandbox
) -> None:
    spec = prepare(sandbox.agent_config(), "through")
    await apply(units, spec)
    (sandbox.layout.caddy_sites_dir / "through.caddy").write_text(
        f"http://through.localhost {{\n\treverse_proxy 127.0.0.1:{spec.port}\n}}\n"
    )
    await units.bus.reload_unit("caddy.service")
    assert await wait_for_pocketbase(sandbox.caddy_url, "through.localhost")
    observed = await units.observe("through")
    assert observed.managed and observed.status is not None
    assert observed.status.unit_file_state == "enabled"
    assert observed.status.main_pid is not None
    # Runs as a dynamic user of its own, and only that user may enter its folder.
    owner = Path(f"/proc/{observed.status.main_pid}").stat().st_uid
    assert DYNAMIC_USERS.start <= owner < DYNAMIC_USERS.stop, owner
    folder = sandbox.layout.state_home / "private" / "services" / "through"
    info = folder.stat()
    assert (info.st_uid, info.st_mode & 0o777) == (owner, 0o700)
    assert (sandbox.agent_config().base_dir / "through").resolve() == folder


async def test_stop_start_and_restart_change_the_real_state(
    units: SystemdUnits, sandbox: Sandbox
) -> None:
    spec = prepare(sandbox.agent_config(), "cycled")
    await apply(units, spec)
    bus, unit = units.bus, spec.unit_name
    first = (await bus.unit_status(unit)).main_pid
    await bus.restart_unit(unit)
    second = (await bus.unit_status(unit)).main_pid
    assert first and second and first != second
    await bus.stop_unit(unit)
    stopped = await bus.unit_status(unit)
    assert stopped.active_state == "inactive" and stopped.main_pid is None
    await bus.start_unit(unit)
    assert (await bus.unit_status(unit)).active_state == "active"


async def test_a_failing_start_reports_the_units_own_reason(
    units: SystemdUnits, sandbox: Sandbox
) -> None:
    spec = prepare(sandbox.agent_config(), "broken", version="0.0.1")  # not in the cache
    units.write("broken", render_unit(spec, units.settings).replace("Type=simple", "Type=exec"))
    await units.bus.daemon_reload()
    with pytest.raises(JobFailed) as caught:
        await units.bus.start_unit(spec.unit_name)
    assert caught.value.result == "failed"
    assert "ExecMainStatus=203" in str(caught.value) and "Result=exit-code" in str(caught.value)


async def test_a_hand_edited_unit_is_seen_by_its_hash_and_need_daemon_reload(
    units: SystemdUnits, sandbox: Sandbox
) -> None:
    spec = prepare(sandbox.agent_config(), "edited")
    await apply(units, spec)
    clean = await units.observe("edited")
    path = units.path("edited")
    path.write_text(path.read_text().replace("RestartSec=2s", "RestartSec=9s"))
    edited = await units.observe("edited")
    assert edited.file_hash != clean.file_hash
    assert edited.status is not None and edited.status.need_daemon_reload


async def test_state_changes_arrive_as_signals_not_polls(
    units: SystemdUnits, sandbox: Sandbox
) -> None:
    spec = prepare(sandbox.agent_config(), "signalled")
    await apply(units, spec)
    seen: asyncio.Queue[str] = asyncio.Queue()
    unwatch = units.bus.watch_units(seen.put_nowait)
    try:
        await units.bus.stop_unit(spec.unit_name)
        names = set()
        while spec.unit_name not in names:
            names.add(await asyncio.wait_for(seen.get(), 5))
    finally:
        unwatch()


async def test_overlapping_daemon_reloads_leave_the_client_timeout_as_it_was(
    units: SystemdUnits,
) -> None:
    bus = units.bus
    ordinary = bus.timeout
    await asyncio.gather(bus.daemon_reload(), bus.daemon_reload())
    assert bus.timeout == ordinary


async def test_two_callers_of_one_merged_start_job_both_hear_that_it_ended(
    units: SystemdUnits, sandbox: Sandbox
) -> None:
    """A wake's StartUnit and a reconcile's, sent while one start is under way, are one job
    to systemd (both get its path): each caller hears its end, and so does one that asks
    after it ended. Before, the second waiter replaced the first, which waited 90 s."""
    unit = "merged-start.service"
    (sandbox.systemd.paths.unit_dir / unit).write_text(
        "[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/bin/sleep 0.5\n"
    )
    bus = units.bus
    await bus.daemon_reload()
    try:
        await asyncio.wait_for(asyncio.gather(*(bus.start_unit(unit) for _ in range(3))), 20)
        assert (await bus.unit_status(unit)).active_state == "active"
        await asyncio.wait_for(bus.stop_unit(unit), 20)
        first = asyncio.create_task(bus.start_unit(unit))
        await asyncio.sleep(0.1)  # its job runs now: the next one merges into it
        await asyncio.wait_for(asyncio.gather(first, bus.start_unit(unit)), 20)
        assert (await bus.unit_status(unit)).active_state == "active"
    finally:
        await bus.stop_unit(unit)


async def test_foreign_unit_files_are_never_touched(units: SystemdUnits, sandbox: Sandbox) -> None:
    foreign = units.path("foreign")
    foreign.write_text("[Service]\nExecStart=/bin/true\n")
    with pytest.raises(UnsafeValue):
        units.write(
            "foreign", render_unit(prepare(sandbox.agent_config(), "foreign"), units.settings)
        )
    assert not units.remove_file("foreign")
    assert foreign.read_text() == "[Service]\nExecStart=/bin/true\n"
    assert "foreign" not in units.managed_names()


async def test_systemd_analyze_accepts_the_rendered_unit(
    units: SystemdUnits, sandbox: Sandbox
) -> None:
    spec = prepare(sandbox.agent_config(), "verified")
    path = units.path("verified")
    units.write("verified", render_unit(spec, units.settings))
    result = subprocess.run(
        ["systemd-analyze", "verify", "--user", str(path)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **sandbox.systemd.paths.environment()},
    )
    problems = [line for line in result.stderr.splitlines() if "verified-pocketbase" in line]
    assert problems == [] and result.returncode == 0, result.stderr


SECURITY = Path(__file__).parents[2] / "docs" / "security.md"


def exposure(text: str, tmp_path: Path) -> float:
    """systemd-analyze's overall exposure level of a unit file's text (offline)."""
    path = tmp_path / "scored-pocketbase.service"
    path.write_text(text)
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", str(path), "--no-pager"],
        capture_output=True,
        text=True,
        check=False,
    )
    score = re.search(
        r"Overall exposure level for scored-pocketbase\.service: ([0-9.]+)", result.stdout
    )
    assert score, result.stdout + result.stderr
    return float(score.group(1))


@pytest.mark.parametrize("where", ["host", "sandbox"])
def test_a_rendered_instance_unit_scores_what_the_security_page_says(
    where: str, tmp_path: Path
) -> None:
    config = AgentConfig(
        hardening_disabled=SANDBOX_UNSUPPORTED_HARDENING if where == "sandbox" else ()
    )
    spec = ServiceSpec.model_validate(
        {
            "project_name": "scored",
            "port": 8090,
            "pocketbase_version": "0.40.6",
            "domain": "scored.example.com",
            "env": {"GOMEMLIMIT": "200MiB"},
            "extra_dirs": ["pb_hooks"],
        }
    )
    measured = exposure(render_unit(spec, UnitSettings.from_config(config)), tmp_path)
    documented = re.search(
        r"overall exposure level \*\*([0-9.]+) [A-Z]+\*\* on a host, and ([0-9.]+) ",
        SECURITY.read_text(),
    )
    assert documented, "docs/security.md states both scores"
    assert measured == float(documented.group(1 if where == "host" else 2))
    assert measured <= 2.0  # the bar: "OK" at 2.0 or below where the host allows


async def test_the_manager_reports_memory_of_a_running_instance(
    units: SystemdUnits, sandbox: Sandbox
) -> None:
    spec = prepare(sandbox.agent_config(), "measured")
    await apply(units, spec)

    async def memory_known() -> bool:
        status = await units.bus.unit_status(spec.unit_name)
        return (status.memory_current or 0) > 1024 * 1024

    assert await wait_until(memory_known, 5)
