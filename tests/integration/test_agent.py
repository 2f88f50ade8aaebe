"""The agent converges a real host: spec files in, PocketBase through Caddy out, drift repaired.

One agent (in this process) runs on the module's sandbox; every test talks to it only
through the spec folder and the host (files, systemd over D-Bus, Caddy), and reads its
answers from the store's status and event log.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from pockestrator.agent.daemon import Agent
from pockestrator.agent.sandbox import Sandbox, free_port
from pockestrator.controllers.systemd import unit_body_hash
from pockestrator.files import sha256_text
from pockestrator.specs.model import unit_name
from pockestrator.specs.store import ServiceStatus
from tests.testbed.bursts import drop_at_once, start_up_done
from tests.testbed.mirror import ReleaseMirror
from tests.testbed.waiting import pocketbase_health, wait_for_pocketbase, wait_until


def write_spec(agent: Agent, name: str, port: int, version: str, **extra: str) -> Path:
    lines = [f"project_name: {name}", f"port: {port}", f'pocketbase_version: "{version}"']
    lines += [f"{key}: {value}" for key, value in extra.items()]
    path = agent.config.spec_dir / f"{name}.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


async def status_becomes(
    agent: Agent, name: str, check: Callable[[ServiceStatus], bool], timeout: float = 20
) -> ServiceStatus:
    async def holds() -> bool:
        status = agent.store.get_status(name)
        return status is not None and check(status)

    assert await wait_until(holds, timeout, interval=0.05), agent.store.get_status(name)
    status = agent.store.get_status(name)
    assert status is not None
    return status


def event_kinds(agent: Agent, name: str) -> list[str]:
    return [event.kind for event in agent.store.list_events(name, limit=200)]


def drift_details(agent: Agent, name: str) -> list[dict[str, object]]:
    """The details of every drift_repaired event of ``name``, oldest first."""
    events = agent.store.list_events(name, limit=200)
    return [event.details for event in reversed(events) if event.kind == "drift_repaired"]


def hand_edit(path: Path, text: str) -> None:
    """Replace a file as an editor does (write aside, rename): one change, seen once."""
    aside = path.with_name(f".{path.name}.edit")
    aside.write_text(text)
    os.replace(aside, path)


async def test_a_spec_file_becomes_a_pocketbase_behind_caddy(
    agent: Agent, sandbox: Sandbox, pocketbase_versions: tuple[str, str]
) -> None:
    write_spec(agent, "first", free_port(), pocketbase_versions[1])
    assert await wait_for_pocketbase(sandbox.caddy_url, "first.localhost", timeout=30)
    status = await status_becomes(agent, "first", lambda s: s.state == "active")
    assert status.config_match is True
    assert status.pid is not None and Path(f"/proc/{status.pid}").exists()
    assert status.deployed_version == pocketbase_versions[1]
    assert status.systemd_config_hash and status.caddy_config_hash
    record = agent.store.get_service("first")
    assert record is not None and status.observed_generation == record.generation


async def test_a_second_reconcile_with_nothing_changed_writes_nothing(
    agent: Agent, sandbox: Sandbox, pocketbase_versions: tuple[str, str]
) -> None:
    write_spec(agent, "steady", free_port(), pocketbase_versions[1])
    await status_becomes(agent, "steady", lambda s: s.state == "active")
    unit_file = agent.units.path("steady")
    before = (unit_file.stat().st_mtime_ns, agent.sites.snippet_path("steady").stat().st_mtime_ns)
    events_before = agent.store.count_events("steady")
    reloads_before = agent.coordinator.fired("daemon-reload")
    caddy_before = agent.sites.reload_count
    restarts_before = (await agent.bus.unit_status(unit_name("steady"))).n_restarts

    assert await agent.wait_reconciled("steady", timeout=20)

    after = (unit_file.stat().st_mtime_ns, agent.sites.snippet_path("steady").stat().st_mtime_ns)
    assert after == before
    assert agent.store.count_events("steady") == events_before
    assert agent.coordinator.fired("daemon-reload") == reloads_before
    assert agent.sites.reload_count == caddy_before
    assert (await agent.bus.unit_status(unit_name("steady"))).n_restarts == restarts_before


async def test_editing_the_spec_moves_the_service_to_its_new_port_and_domain(
    agent: Agent, sandbox: Sandbox, pocketbase_versions: tuple[str, str]
) -> None:
    write_spec(agent, "moving", free_port(), pocketbase_versions[1])
    await status_becomes(agent, "moving", lambda s: s.state == "active")
    new_port = free_port()
    write_spec(agent, "moving", new_port, pocketbase_versions[1], domain="moved.example.test")
    await status_becomes(agent, "moving", lambda s: s.observed_generation == 2)
    assert await wait_for_pocketbase(sandbox.caddy_url, "moved.example.test", timeout=30)
    assert await wait_until(
        lambda: _not(pocketbase_health(sandbox.caddy_url, "moving.localhost")), 10
    )
    assert await pocketbase_health(f"http://127.0.0.1:{new_port}")


async def _not(check: object) -> bool:
    return not await check  # type: ignore[misc]


async def test_deleting_the_file_removes_unit_and_site_and_archives_the_data(
    agent: Agent, sandbox: Sandbox, pocketbase_versions: tuple[str, str]
) -> None:
    path = write_spec(agent, "doomed", free_port(), pocketbase_versions[1])
    await status_becomes(agent, "doomed", lambda s: s.state == "active")
    marker = agent.config.base_dir / "doomed" / "pb_data" / "keep-me.txt"
    marker.write_text("precious")
    path.unlink()

    async def gone() -> bool:
        return agent.store.get_status("doomed") is None and not agent.units.path("doomed").exists()

    assert await wait_until(gone, 20, interval=0.05)
    assert not agent.sites.snippet_path("doomed").exists()
    assert not (agent.config.base_dir / "doomed").exists()
    archived = list(agent.config.archive_path.glob("doomed-*/pb_data/keep-me.txt"))
    assert [p.read_text() for p in archived] == ["precious"]
    assert (await agent.bus.unit_status(unit_name("doomed"))).load_state == "not-found"
    assert event_kinds(agent, "doomed").count("deleted") == 1


async def test_a_hand_edited_unit_is_repaired_and_recorded(
    agent: Agent, pocketbase_versions: tuple[str, str]
) -> None:
    write_spec(agent, "edited", free_port(), pocketbase_versions[1])
    status = await status_becomes(agent, "edited", lambda s: s.state == "active")
    unit_file = agent.units.path("edited")
    good = unit_file.read_text()
    edited = good.replace("Restart=always", "Restart=no")
    hand_edit(unit_file, edited)

    assert await wait_until(lambda: _equals(unit_file.read_text, good), 10, interval=0.05)
    assert drift_details(agent, "edited") == [
        {
            "what": "unit file",
            "found": "hand-edited",
            "action": "rewrote the unit file, daemon-reload",
            "before_hash": unit_body_hash(edited),
            "after_hash": status.systemd_config_hash,
        }
    ]
    await status_becomes(agent, "edited", lambda s: s.state == "active" and bool(s.config_match))


async def _equals(read: Callable[[], str], expected: str) -> bool:
    return read() == expected


async def test_a_hand_edited_caddy_site_is_repaired_and_recorded(
    agent: Agent, sandbox: Sandbox, pocketbase_versions: tuple[str, str]
) -> None:
    write_spec(agent, "sited", free_port(), pocketbase_versions[1])
    await status_becomes(agent, "sited", lambda s: s.state == "active")
    snippet = agent.sites.snippet_path("sited")
    good = snippet.read_text()
    edited = good.replace("sited.localhost", "hijacked.localhost")
    hand_edit(snippet, edited)

    assert await wait_until(lambda: _equals(snippet.read_text, good), 10, interval=0.05)
    assert await wait_for_pocketbase(sandbox.caddy_url, "sited.localhost", timeout=10)
    assert drift_details(agent, "sited") == [
        {
            "what": "caddy site",
            "found": "hand-edited",
            "action": "rewrote the site snippet, caddy reload",
            "before_hash": sha256_text(edited),
            "after_hash": sha256_text(good),
        }
    ]


async def test_a_unit_stopped_by_hand_is_started_again(
    agent: Agent, sandbox: Sandbox, pocketbase_versions: tuple[str, str]
) -> None:
    port = free_port()
    write_spec(agent, "stubborn", port, pocketbase_versions[1])
    await status_becomes(agent, "stubborn", lambda s: s.state == "active")
    await sandbox.bus.stop_unit(unit_name("stubborn"))  # an operator, over D-Bus

    assert await wait_for_pocketbase(f"http://127.0.0.1:{port}", timeout=15)
    # Once: while the stop job runs (deactivating) the agent waits rather than start.
    assert drift_details(agent, "stubborn") == [
        {
            "what": "run state",
            "found": "unit was inactive/dead",
            "action": "started the unit",
            "before_hash": "inactive",
            "after_hash": "active",
        }
    ]


async def test_a_crash_is_restarted_by_systemd_and_shows_in_status(
    agent: Agent, pocketbase_versions: tuple[str, str]
) -> None:
    port = free_port()
    write_spec(agent, "crashy", port, pocketbase_versions[1])
    status = await status_becomes(agent, "crashy", lambda s: s.state == "active")
    assert status.pid is not None
    os.kill(status.pid, signal.SIGKILL)

    after = await status_becomes(
        agent,
        "crashy",
        lambda s: s.pid not in (None, status.pid) and (s.restarts or 0) >= 1,
        timeout=20,
    )
    assert after.restarts == 1  # one kill, one restart by systemd (Restart=always)
    # Legitimately either: the status is written when the reconcile after the restart has
    # seen the new process, which may not have answered its first health probe yet.
    assert after.state in ("active", "deploying")
    assert await wait_for_pocketbase(f"http://127.0.0.1:{port}", timeout=15)


async def test_a_stopped_desired_state_stops_the_unit(
    agent: Agent, pocketbase_versions: tuple[str, str]
) -> None:
    port = free_port()
    write_spec(agent, "sleepy", port, pocketbase_versions[1])
    await status_becomes(agent, "sleepy", lambda s: s.state == "active")
    # Enabled with its start (agent.apply): systemd read its file state after the enable.
    running = await agent.bus.unit_status(unit_name("sleepy"))
    assert running.unit_file_state == "enabled"
    write_spec(agent, "sleepy", port, pocketbase_versions[1], desired_state="stopped")
    await status_becomes(agent, "sleepy", lambda s: s.state == "inactive")
    assert not await pocketbase_health(f"http://127.0.0.1:{port}")
    # Disabled too: a reboot must not start what should stay stopped.
    unit = await agent.bus.unit_status(unit_name("sleepy"))
    assert unit.unit_file_state == "disabled"


async def test_a_version_change_upgrades_and_keeps_the_data(
    agent: Agent, sandbox: Sandbox, pocketbase_versions: tuple[str, str]
) -> None:
    older, newer = pocketbase_versions
    port = free_port()
    write_spec(agent, "upgrader", port, older)
    await status_becomes(agent, "upgrader", lambda s: s.state == "active")
    marker = agent.config.base_dir / "upgrader" / "pb_data" / "keep-me.txt"
    marker.write_text("data")

    write_spec(agent, "upgrader", port, newer)
    status = await status_becomes(
        agent, "upgrader", lambda s: s.deployed_version == newer and s.state == "active", 40
    )
    assert status.failed_version is None
    assert marker.read_text() == "data"
    kinds = event_kinds(agent, "upgrader")  # newest first
    # The upgrade's own stop is no drift: started, what it did, done.
    assert kinds[: kinds.index("upgrade_started") + 1] == [
        "upgraded",
        "reconciled",
        "upgrade_started",
    ]
    assert (kinds.count("upgrade_started"), kinds.count("upgraded")) == (1, 1), kinds
    version_line = [
        line
        for line in agent.units.path("upgrader").read_text().splitlines()
        if line.startswith("X-Pockestrator-Version=")
    ]
    assert version_line == [f"X-Pockestrator-Version={newer}"]


async def test_a_failed_upgrade_is_rolled_back(
    agent: Agent, release_mirror: ReleaseMirror, pocketbase_versions: tuple[str, str]
) -> None:
    older, _newer = pocketbase_versions
    # A real executable that exits at once: it can never pass a health check.
    release_mirror.add_release("0.99.0", Path("/bin/false").read_bytes())
    try:
        port = free_port()
        write_spec(agent, "rollback", port, older)
        await status_becomes(agent, "rollback", lambda s: s.state == "active")
        marker = agent.config.base_dir / "rollback" / "pb_data" / "keep-me.txt"
        marker.write_text("data")

        write_spec(agent, "rollback", port, "0.99.0")
        status = await status_becomes(agent, "rollback", lambda s: s.failed_version == "0.99.0", 60)
        assert status.deployed_version == older
        assert status.last_error and "rolled back" in status.last_error
        assert await wait_for_pocketbase(f"http://127.0.0.1:{port}", timeout=20)
        assert marker.read_text() == "data"
        # It stays on the old version: the failed one is not retried until the spec changes.
        assert await agent.wait_reconciled("rollback", timeout=30)
        again = agent.store.get_status("rollback")
        assert again is not None and again.deployed_version == older
        kinds = event_kinds(agent, "rollback")
        assert (kinds.count("upgrade_started"), kinds.count("upgrade_rolled_back")) == (1, 1), kinds
    finally:
        del release_mirror.releases["0.99.0"]  # the mirror is shared by the session


async def test_an_upgrade_step_that_raises_is_rolled_back_once_not_retried_while_down(
    agent: Agent, release_mirror: ReleaseMirror, pocketbase_versions: tuple[str, str]
) -> None:
    older, _newer = pocketbase_versions
    # An executable that exits 1: with a new superuser in the same edit, the upgrade fails
    # at `superuser upsert`, before any health check.
    release_mirror.add_release("0.97.0", Path("/bin/false").read_bytes())
    try:
        port = free_port()
        write_spec(agent, "stepper", port, older)
        await status_becomes(agent, "stepper", lambda s: s.state == "active")
        write_spec(agent, "stepper", port, "0.97.0", superuser_email="owner@example.test")
        status = await status_becomes(agent, "stepper", lambda s: s.failed_version == "0.97.0", 60)
        assert status.deployed_version == older
        assert status.last_error and "creating superuser owner@example.test" in status.last_error
        assert "rolled back" in status.last_error
        assert await wait_for_pocketbase(f"http://127.0.0.1:{port}", timeout=20)
        assert await agent.wait_reconciled("stepper", timeout=30)
        backups = agent.config.base_dir / ".backups" / "stepper"
        assert len(list(backups.glob(f"pb_data-{older}-2*"))) == 1  # one upgrade, one backup
    finally:
        del release_mirror.releases["0.97.0"]  # the mirror is shared by the session


@pytest.mark.parametrize("count", [8])
async def test_a_burst_of_specs_shares_one_unit_wave_no_daemon_reload_and_one_caddy_reload(
    agent: Agent, sandbox: Sandbox, pocketbase_versions: tuple[str, str], count: int
) -> None:
    await start_up_done(agent)  # when this test runs first
    reloads = agent.coordinator.fired("daemon-reload")
    reload_calls = agent.reconciler.steps.reloads
    caddy_reloads = agent.sites.reload_count
    names = [f"burst{index}" for index in range(count)]
    drop_at_once(agent, names, pocketbase_versions[1])
    for name in names:
        await status_becomes(agent, name, lambda s: s.state == "active", 60)
    assert agent.coordinator.fired("daemon-reload") - reloads == 1
    assert agent.reconciler.steps.reloads == reload_calls  # new units need none
    assert agent.sites.reload_count - caddy_reloads == 1
    results = await asyncio.gather(
        *(pocketbase_health(sandbox.caddy_url, f"{name}.localhost") for name in names)
    )
    assert all(results)


async def test_the_first_superuser_is_created_once_with_a_password_shown_once(
    agent: Agent, sandbox: Sandbox, pocketbase_versions: tuple[str, str]
) -> None:
    import aiohttp

    write_spec(
        agent, "admined", free_port(), pocketbase_versions[1], superuser_email="owner@example.test"
    )
    await status_becomes(agent, "admined", lambda s: s.state == "active")
    assert "superuser_created" in event_kinds(agent, "admined")
    # Generated for a spec file: left in a root-only file the event names, nowhere else.
    password_file = agent.reconciler.generated_password_path("admined")
    password = password_file.read_text().strip()
    assert password and password_file.stat().st_mode & 0o077 == 0
    assert password_file.parent.stat().st_mode & 0o077 == 0
    assert agent.store.peek_superuser_password("admined") is None
    events = agent.store.list_events("admined")
    assert any(str(password_file) in event.message for event in events)
    for event in events:
        assert password not in event.message and password not in str(event.details)

    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{sandbox.caddy_url}/api/collections/_superusers/auth-with-password",
            headers={"Host": "admined.localhost"},
            json={"identity": "owner@example.test", "password": password},
        ) as response,
    ):
        assert response.status == 200, await response.text()
        assert (await response.json())["token"]


async def test_an_instance_failing_its_health_probes_is_restarted(
    agent: Agent, pocketbase_versions: tuple[str, str]
) -> None:
    port = free_port()
    write_spec(agent, "frozen", port, pocketbase_versions[1])
    status = await status_becomes(agent, "frozen", lambda s: s.state == "active")
    assert status.pid is not None
    os.kill(status.pid, signal.SIGSTOP)  # alive for systemd, silent for HTTP

    # Two failed probes (about 6 s), then a stop that may run to the unit's TimeoutStopSec
    # (20 s: the frozen process finishes its shutdown slowly or is killed), then a boot.
    after = await status_becomes(
        agent, "frozen", lambda s: s.pid not in (None, status.pid) and s.state == "active", 75
    )
    assert after.health_failures == 0
    restarts = [e for e in agent.store.list_events("frozen") if e.kind == "restarted"]
    # At the threshold, not one probe later.
    assert [e.details for e in restarts] == [
        {"failures": agent.config.health_failures_before_restart}
    ]
    assert await pocketbase_health(f"http://127.0.0.1:{port}")


async def test_an_instance_that_never_comes_up_does_not_hold_back_other_services(
    agent: Agent, release_mirror: ReleaseMirror, pocketbase_versions: tuple[str, str]
) -> None:
    # A real executable that exits at once: its unit crash-loops, each of its reconciles
    # waits out the health deadline, and its own unit's signals queue it again meanwhile.
    release_mirror.add_release("0.98.0", Path("/bin/false").read_bytes())
    hopeless = write_spec(agent, "hopeless", free_port(), "0.98.0")
    try:

        async def waiting_for_health() -> bool:
            return agent.sites.snippet_path("hopeless").exists()

        # 60 s: at load 44 the release's download and the first wave took over 20 s.
        assert await wait_until(waiting_for_health, 60), "hopeless's Caddy site never written"
        write_spec(agent, "bystander", free_port(), pocketbase_versions[1])
        status = await status_becomes(agent, "bystander", lambda s: s.state == "active", 60)
        assert status.config_match is True
    finally:
        hopeless.unlink()
        del release_mirror.releases["0.98.0"]  # the mirror is shared by the session


async def test_a_configuration_reload_reaches_the_release_cache(
    agent: Agent, tmp_path: Path
) -> None:
    """What SIGHUP does: the (reload) keys of config.yaml take effect where they are used."""
    original = agent.config
    config_file = tmp_path / "config.yaml"

    def reload_with(**changes: object) -> None:
        data = original.model_copy(update=changes).model_dump(mode="json", exclude_none=True)
        config_file.write_text(yaml.safe_dump(data))
        agent.reload_config()

    agent.config_path = config_file
    try:
        reload_with(release_index_ttl=7.0, download_timeout=33.0)
        assert agent.releases.config.release_index_ttl == 7.0
        assert agent.releases.source.timeout == 33.0
    finally:
        reload_with()
        agent.config_path = None
    assert agent.releases.config.release_index_ttl == original.release_index_ttl
    assert agent.releases.source.timeout == original.download_timeout
