"""The periodic resync reconciles what changed, and still repairs what no event reported.

One agent (in this process) with a round every second and no health probes in the
window, so that only a round can repair what a test breaks: an environment file is in no
watched folder, and a unit stopped while the agent does not hear systemd's signals sends
it nothing. A quiet service costs the rounds no reconcile beyond its full turns.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pockestrator.agent.daemon import Agent
from pockestrator.agent.observe_round import full_turn
from pockestrator.agent.sandbox import Sandbox, free_port
from pockestrator.config import AgentConfig
from pockestrator.controllers.systemd.units import UnitObservation
from pockestrator.specs.model import unit_name
from tests.testbed.mirror import ReleaseMirror
from tests.testbed.waiting import wait_until

ROUND = 1.0  # resync_interval
SLOW = 600.0  # no health probe within a test


@pytest.fixture(scope="module")
async def agent_config(sandbox: Sandbox, release_mirror: ReleaseMirror) -> AgentConfig:
    return release_mirror.agent_config(sandbox, resync_interval=ROUND, health_interval=SLOW)


def write_spec(agent: Agent, name: str, version: str, *extra: str) -> None:
    lines = [f"project_name: {name}", f"port: {free_port()}", f'pocketbase_version: "{version}"']
    (agent.config.spec_dir / f"{name}.yaml").write_text("\n".join([*lines, *extra]) + "\n")


async def quiet(agent: Agent, name: str, state: str = "active") -> None:
    """Wait until ``name`` is in ``state`` and a reconcile of it found nothing to do."""

    async def recorded() -> bool:
        status = agent.store.get_status(name)
        return (
            status is not None and status.state == state and name in agent.reconciler.looks.recorded
        )

    assert await wait_until(recorded, 60, interval=0.05), (
        f"{name} never had a quiet reconcile: {agent.store.get_status(name)}"
    )


async def rounds_pass(agent: Agent, count: int) -> None:
    looks = agent.reconciler.looks
    until = looks.rounds + count

    async def passed() -> bool:
        return looks.rounds >= until

    assert await wait_until(passed, 60, interval=0.05), f"{count} resync rounds did not pass"


def repair_events(agent: Agent, name: str) -> list[str]:
    return [
        e.message for e in agent.store.list_events(name, limit=100) if e.kind == "drift_repaired"
    ]


async def test_a_quiet_service_is_reconciled_only_at_its_full_turns(
    agent: Agent, pocketbase_versions: tuple[str, str]
) -> None:
    write_spec(agent, "calm", pocketbase_versions[1])
    await quiet(agent, "calm")
    await rounds_pass(agent, 1)
    first = agent.reconciler.looks.rounds
    runs = agent._started_runs["calm"]
    await rounds_pass(agent, 5)
    # A round's chosen names are reconciled after it: the last one may still be coming.
    turns = sum(full_turn("calm", number) for number in range(first + 1, first + 7))
    assert agent._started_runs["calm"] - runs <= turns, (
        f"{agent._started_runs['calm'] - runs} reconciles in 5 rounds, {turns} full turns"
    )


async def test_an_environment_file_edited_by_hand_is_repaired_by_the_next_round(
    agent: Agent, pocketbase_versions: tuple[str, str]
) -> None:
    write_spec(agent, "envy", pocketbase_versions[1], "env:", "  GREETING: hello")
    await quiet(agent, "envy")
    path: Path = agent.config.environment_path / "envy.env"
    wanted = path.read_text()
    assert 'GREETING="hello"' in wanted
    # The folder of environment files is watched by nothing: only a round can see this.
    aside = path.with_name(".envy.env.edit")
    aside.write_text(wanted.replace("hello", "tampered"))
    os.replace(aside, path)

    async def repaired() -> bool:
        return path.read_text() == wanted and bool(repair_events(agent, "envy"))

    assert await wait_until(repaired, 30, interval=0.05), (
        f"the edited environment file was not repaired: {path.read_text()!r}"
    )


async def test_a_unit_stopped_while_its_signals_are_missed_is_started_by_the_next_round(
    agent: Agent, sandbox: Sandbox, pocketbase_versions: tuple[str, str]
) -> None:
    write_spec(agent, "deaf", pocketbase_versions[1])
    await quiet(agent, "deaf")
    bus = sandbox.bus
    assert bus is not None
    unit = unit_name("deaf")
    before = (await bus.unit_status(unit)).main_pid
    agent.unwatch_units()  # systemd's signals are lost, as over a bus reconnect
    try:
        await bus.stop_unit(unit)

        async def started_again() -> bool:
            status = await bus.unit_status(unit)
            return status.sub_state == "running" and status.main_pid not in (None, before)

        assert await wait_until(started_again, 30, interval=0.1), (
            f"the stopped unit was not started again: {await bus.unit_status(unit)}"
        )
    finally:
        agent.unwatch_units = agent.bus.watch_units(agent._on_unit_signal)


async def test_a_new_value_in_a_secret_file_reaches_pocketbase_at_the_next_round(
    agent: Agent, pocketbase_versions: tuple[str, str], tmp_path: Path
) -> None:
    secret = tmp_path / "smtp-password"
    secret.write_text("first-password\n")
    secret.chmod(0o600)
    write_spec(
        agent,
        "secretive",
        pocketbase_versions[1],
        "settings:",
        "  smtp:",
        "    host: 127.0.0.1",
        f"    port: {free_port()}",
        "    username: secretive",
        f"    password: {{file: {secret}}}",
    )
    await quiet(agent, "secretive")
    looks = agent.reconciler.looks
    every, looks.every = looks.every, 10**6  # no full turn: only the file's look counts
    try:
        before = agent.store.get_status("secretive")
        assert before is not None and before.settings_hash
        aside = tmp_path / ".smtp-password.edit"
        aside.write_text("second-password\n")
        aside.chmod(0o600)
        os.replace(aside, secret)

        async def sent_again() -> bool:
            status = agent.store.get_status("secretive")
            return status is not None and status.settings_hash not in (None, before.settings_hash)

        assert await wait_until(sent_again, 30, interval=0.1), (
            f"the new secret was not sent: {agent.store.get_status('secretive')}"
        )
    finally:
        looks.every = every


async def flipped_by_hand_is_flipped_back_by_the_next_round(
    agent: Agent, sandbox: Sandbox, name: str, *, enabled: bool
) -> None:
    """Turn ``name``'s unit the other way with ``systemctl enable/disable --no-reload``'s
    call, with no full turn in the rounds, and wait for a round to set it ``enabled``
    (or not) again: only the ``.wants`` link's look can have seen it."""
    bus = sandbox.bus
    assert bus is not None
    unit = unit_name(name)
    link = (
        agent.config.systemd_dir
        / f"{agent.reconciler.controllers.units.settings.wanted_by}.wants"
        / unit
    )
    assert link.is_symlink() == enabled, f"{link}: there {link.is_symlink()}, not {enabled}"
    state = "enabled" if enabled else "disabled"
    looks = agent.reconciler.looks
    every, looks.every = looks.every, 10**6  # no full turn: only the link's look counts
    try:
        if enabled:
            await bus.disable_unit_files([unit])
        else:
            await bus.enable_unit_files([unit])
        assert link.is_symlink() != enabled

        async def flipped_back() -> bool:
            return link.is_symlink() == enabled and await bus.unit_file_state(unit) == state

        assert await wait_until(flipped_back, 30, interval=0.1), (
            f"the unit was not {state} again: link there {link.is_symlink()}, "
            f"systemd says {await bus.unit_file_state(unit)!r}"
        )
    finally:
        looks.every = every


async def test_a_unit_disabled_by_hand_is_enabled_again_by_the_next_round(
    agent: Agent, sandbox: Sandbox, pocketbase_versions: tuple[str, str]
) -> None:
    write_spec(agent, "loose", pocketbase_versions[1])
    await quiet(agent, "loose")
    await flipped_by_hand_is_flipped_back_by_the_next_round(agent, sandbox, "loose", enabled=True)


async def test_a_stopped_unit_enabled_by_hand_is_disabled_again_by_the_next_round(
    agent: Agent, sandbox: Sandbox, pocketbase_versions: tuple[str, str]
) -> None:
    write_spec(agent, "idle", pocketbase_versions[1], "desired_state: stopped")
    await quiet(agent, "idle", "inactive")
    await flipped_by_hand_is_flipped_back_by_the_next_round(agent, sandbox, "idle", enabled=False)


async def test_a_setting_changed_in_the_admin_ui_is_restored_without_a_look_at_the_host(
    agent: Agent, pocketbase_versions: tuple[str, str]
) -> None:
    write_spec(agent, "tidy", pocketbase_versions[1])
    await quiet(agent, "tidy")
    reconciler = agent.reconciler
    record = agent.store.get_service("tidy")
    assert record is not None
    control = reconciler.controllers.pbsettings
    tampered = "http://tampered.invalid"
    await control.apply(record.spec, {"meta": {"appURL": tampered}})  # as the admin UI does
    units = reconciler.controllers.units
    observed: list[str] = []
    observe = units.observe

    async def counted(name: str) -> UnitObservation:
        observed.append(name)
        return await observe(name)

    looks = reconciler.looks
    every, looks.every = looks.every, 10**6  # no full turn: the settings check alone
    config = reconciler.config
    units.observe = counted  # type: ignore[method-assign]
    reconciler.config = config.model_copy(update={"settings_check_interval": 1.0})
    try:

        async def restored() -> bool:
            values = (await control.observe(record.spec)).values
            return values["meta"]["appURL"] != tampered and bool(repair_events(agent, "tidy"))

        assert await wait_until(restored, 30, interval=0.2), (
            f"the admin UI's change was not undone: {agent.store.get_status('tidy')}"
        )
    finally:
        reconciler.config = config
        units.observe = observe  # type: ignore[method-assign]
        looks.every = every
    assert "tidy" not in observed, "the settings check observed the unit in full"
