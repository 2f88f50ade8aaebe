"""The packaged unit, systemd/pockestrator.service, run by a real systemd as shipped.

The unit file is installed unchanged into the test bed's systemd manager, with one drop-in
(``pockestrator.service.d/testbed.conf``) holding only what a private user manager needs:
the agent's ExecStart (a copy of this checkout's runtime and a sandbox config), the
sandbox's counterparts of the folders a host gives the agent write access to, no
CacheDirectory= (a user manager would put it under the host's ~/.cache) and the three
directives that fail with 226/NAMESPACE there. Everything else, Type=notify, the watchdog,
NotifyAccess, Restart, ExecReload and the rest of the hardening, comes from the real file,
so the tests show that the agent does its whole job under that hardening: a spec becomes a
PocketBase behind Caddy, with a superuser made as the instance user.

The sandbox is laid out as the package lays out a host, one writable folder per mount:
``state/`` plays /var/lib/pockestrator (database, services, the release cache as the
packaged config.yaml places it), ``caddy/`` plays /etc/caddy, the manager's unit folder
plays /etc/systemd/system, and the spec folder is read-only like /etc/pockestrator.
``runtime/`` plays /opt/pockestrator: what the unit runs is copied there
(tests/testbed/runtime_copy.py), so that ``PrivateTmp=`` cannot hide it when the clone is
under /tmp.
"""

from __future__ import annotations

import configparser
import json
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
import yaml

from pockestrator.accounts import AccountStore, create_admin
from pockestrator.agent.sandbox import Sandbox, free_port
from pockestrator.config import SANDBOX_UNSUPPORTED_HARDENING, AgentConfig
from pockestrator.controllers.systemd.bus import SystemdBus
from pockestrator.specs.model import unit_name
from pockestrator.specs.store import Store
from tests.testbed.cli_env import clean_environment
from tests.testbed.journal import journal_text
from tests.testbed.runtime_copy import install_runtime
from tests.testbed.waiting import http_get, wait_for_pocketbase, wait_until

REPO = Path(__file__).resolve().parents[2]
UNIT_FILE = REPO / "systemd" / "pockestrator.service"
PACKAGED_CONFIG = REPO / "packaging" / "config.yaml"
UNIT = "pockestrator.service"
DROP_IN = "testbed.conf"
# What makes the agent the agent under systemd: the drop-in must leave all of it alone.
KEPT_FROM_THE_UNIT = ("Type", "NotifyAccess", "WatchdogSec", "Restart", "ExecReload")


def unit_entries(text: str) -> list[tuple[str, str, str]]:
    """(section, key, value) of every assignment, in order, repeated keys included."""
    entries: list[tuple[str, str, str]] = []
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, _, value = line.partition("=")
        entries.append((section, key.strip(), value.strip()))
    return entries


def render_testbed_drop_in(python: Path, config_file: Path, writable: Sequence[Path]) -> str:
    """The only differences between the test bed and a host installed from the package."""
    lines = [
        "# The test bed's differences from a real host (tests/integration/test_install.py).",
        "[Service]",
        "ExecStart=",
        f"ExecStart={python} -m pockestrator agent --config {config_file}",
        # The sandbox's counterparts of StateDirectory=, /etc/caddy and /etc/systemd/system.
        "ReadWritePaths=" + " ".join(str(path) for path in writable),
        # A user manager resolves CacheDirectory= to ~/.cache: keep the host's home clean.
        "CacheDirectory=",
    ]
    # These fail with 226/NAMESPACE inside a private user manager (shared testbed notes).
    lines += [f"{directive}=no" for directive in SANDBOX_UNSUPPORTED_HARDENING]
    return "\n".join(lines) + "\n"


@dataclass
class InstalledAgent:
    sandbox: Sandbox
    bus: SystemdBus
    config: AgentConfig
    drop_in: Path
    unit_file: Path

    def journal(self) -> str:
        return journal_text(self.sandbox, "pockestrator")

    async def main_pid(self) -> int:
        status = await self.bus.unit_status(UNIT)
        assert status.main_pid is not None, status
        return status.main_pid


def packaged_layout(config: AgentConfig, state_dir: Path) -> AgentConfig:
    """``config`` with the state folder holding what /var/lib/pockestrator holds on a host."""
    packaged = yaml.safe_load(PACKAGED_CONFIG.read_text(encoding="utf-8"))
    assert packaged is None, "the packaged config sets nothing; the test mirrors the defaults"
    # base_dir stays the sandbox's: the instances' folders are state directories of the
    # sandbox's manager, as /var/lib/pockestrator/services is of PID 1 on a host.
    return config.model_copy(
        update={
            "database": state_dir / "pockestrator.db",
            "release_cache_dir": state_dir / "releases",
        }
    )


@pytest.fixture(scope="module")
async def installed(sandbox: Sandbox, agent_config: AgentConfig) -> AsyncIterator[InstalledAgent]:
    """The packaged unit plus the test bed's drop-in, started (the job ends on READY=1)."""
    assert sandbox.bus is not None
    root = sandbox.layout.root
    state_dir = root / "state"
    runtime = install_runtime(root / "runtime", Path(agent_config.caddy_binary))
    config = packaged_layout(agent_config, state_dir).model_copy(
        update={
            "caddy_binary": str(runtime.caddy),
            # Where RuntimeDirectory=pockestrator puts it for this (user) manager, as
            # /run/pockestrator/api.sock on a host.
            "api_socket": sandbox.systemd.paths.runtime_dir / "pockestrator" / "api.sock",
        }
    )
    # What systemd-tmpfiles creates on a host: the agent cannot create it, /etc is read-only.
    config.spec_dir.mkdir(parents=True, exist_ok=True)
    config_file = root / "pockestrator.yaml"
    config_file.write_text(
        yaml.safe_dump(config.model_dump(mode="json", exclude_none=True)), encoding="utf-8"
    )
    unit_dir = sandbox.systemd.paths.unit_dir
    unit_file = unit_dir / UNIT
    unit_file.write_bytes(UNIT_FILE.read_bytes())
    drop_in = unit_dir / f"{UNIT}.d" / DROP_IN
    drop_in.parent.mkdir(exist_ok=True)
    # What the private tree of systemd's state directories is on a host.
    private = sandbox.layout.state_home / "private"
    private.mkdir(mode=0o700, exist_ok=True)
    writable = [state_dir, sandbox.layout.caddy_dir, unit_dir, config.base_dir, private]
    drop_in.write_text(
        render_testbed_drop_in(runtime.python, config_file, writable), encoding="utf-8"
    )
    await sandbox.bus.daemon_reload()
    handle = InstalledAgent(sandbox, sandbox.bus, config, drop_in, unit_file)
    try:
        await sandbox.bus.start_unit(UNIT)
    except Exception as exc:
        pytest.fail(f"the packaged unit did not start: {exc}\n{handle.journal()[-4000:]}")
    yield handle
    status = await sandbox.bus.unit_status(UNIT)
    if status.active_state == "active":
        await sandbox.bus.stop_unit(UNIT)


async def test_the_drop_in_overrides_only_what_the_test_bed_needs(
    installed: InstalledAgent,
) -> None:
    properties = await installed.bus.unit_properties(UNIT)
    assert properties["DropInPaths"] == [str(installed.drop_in)]  # and no other drop-in
    keys = {key for _section, key, _value in unit_entries(installed.drop_in.read_text())}
    assert keys == {
        "ExecStart",
        "ReadWritePaths",
        "CacheDirectory",
        *SANDBOX_UNSUPPORTED_HARDENING,
    }
    assert not keys & set(KEPT_FROM_THE_UNIT)
    shipped = {key: value for _section, key, value in unit_entries(UNIT_FILE.read_text())}
    # Each directive the drop-in turns off is one the shipped unit turns on.
    for directive in SANDBOX_UNSUPPORTED_HARDENING:
        assert shipped[directive] == "yes", directive


async def test_the_packaged_unit_starts_the_agent_as_a_notify_service_with_a_watchdog(
    installed: InstalledAgent,
) -> None:
    assert installed.unit_file.read_bytes() == UNIT_FILE.read_bytes()
    properties = await installed.bus.unit_properties(UNIT)
    assert (properties["ActiveState"], properties["SubState"]) == ("active", "running")
    assert properties["Type"] == "notify"
    assert properties["NotifyAccess"] == "main"
    assert properties["Restart"] == "on-failure"
    shipped = configparser.ConfigParser(strict=False, interpolation=None)
    shipped.read_string(UNIT_FILE.read_text())
    watchdog = shipped["Service"]["WatchdogSec"]
    assert watchdog.endswith("s")
    assert properties["WatchdogUSec"] == int(watchdog[:-1]) * 1_000_000
    assert properties["FragmentPath"] == str(installed.unit_file)


async def test_the_agent_runs_with_the_units_capability_bound_and_seccomp_filter(
    installed: InstalledAgent,
) -> None:
    names = {
        line.split()[0].upper(): int(line.split()[1])
        for line in subprocess.run(
            ["systemd-analyze", "capability"], capture_output=True, text=True, check=True
        ).stdout.splitlines()[1:]
        if line.strip()
    }
    shipped = {key: value for _section, key, value in unit_entries(UNIT_FILE.read_text())}
    expected = sum(1 << names[cap] for cap in shipped["CapabilityBoundingSet"].split())
    status = Path(f"/proc/{await installed.main_pid()}/status").read_text()
    fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
    assert int(fields["CapBnd"], 16) == expected
    assert fields["NoNewPrivs"].strip() == "1"
    assert fields["Seccomp"].strip() == "2"  # a filter is installed


async def test_the_agent_under_the_packaged_unit_serves_its_api(
    installed: InstalledAgent,
) -> None:
    url = f"http://127.0.0.1:{installed.config.listen_port}/api/pockestrator/healthz"
    status, body = await http_get(url)
    assert status == 200, body


async def test_root_runs_the_cli_on_the_units_socket_with_no_token_or_url(
    installed: InstalledAgent, tmp_path: Path
) -> None:
    """``sudo pockestrator get`` right after install: the socket is in RuntimeDirectory=,
    closed to others, and the CLI finds it with nothing configured (only its path is
    given here: the test bed's manager keeps /run/pockestrator at its runtime folder)."""
    socket_path = installed.config.api_socket
    assert socket_path is not None and socket_path.parent.name == "pockestrator"
    info = socket_path.stat()
    assert stat.S_ISSOCK(info.st_mode)
    assert info.st_mode & 0o007 == 0, oct(info.st_mode)
    env = clean_environment()
    env["POCKESTRATOR_SOCKET"] = str(socket_path)
    env["XDG_CONFIG_HOME"] = str(tmp_path)  # no token file either
    done = subprocess.run(
        [sys.executable, "-m", "pockestrator", "get", "-o", "json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert isinstance(json.loads(done.stdout), list)


SERVICE = "packaged"


async def test_the_hardened_agent_turns_a_spec_into_a_pocketbase_behind_caddy(
    installed: InstalledAgent, pocketbase_versions: tuple[str, str]
) -> None:
    """Download, chown, setpriv, unit files, daemon-reload, caddy validate and reload."""
    spec = installed.config.spec_dir / f"{SERVICE}.yaml"
    spec.write_text(
        f"project_name: {SERVICE}\nport: {free_port()}\n"
        f'pocketbase_version: "{pocketbase_versions[1]}"\n'
        "superuser_email: owner@example.test\n",
        encoding="utf-8",
    )
    reached = await wait_for_pocketbase(installed.sandbox.caddy_url, f"{SERVICE}.localhost", 60)
    store = Store(installed.config.database)
    try:
        status = store.get_status(SERVICE)
        kinds = [event.kind for event in store.list_events(SERVICE, limit=100)]
    finally:
        store.close()
    assert reached, (status, kinds, installed.journal()[-4000:])
    assert "superuser_created" in kinds, kinds
    unit = await installed.bus.unit_status(unit_name(SERVICE))
    assert unit.active_state == "active"
    data = installed.config.base_dir / SERVICE / "pb_data"
    owner = os.stat(data).st_uid
    assert owner != 0 and all(os.stat(path).st_uid == owner for path in data.iterdir()), (
        "files made by the superuser command must belong to the instance's user"
    )


async def test_instances_run_the_cached_binary_itself_which_they_cannot_change(
    installed: InstalledAgent, pocketbase_versions: tuple[str, str]
) -> None:
    cached = installed.config.release_cache_dir / pocketbase_versions[1] / "pocketbase"
    properties = await installed.bus.unit_properties(unit_name(SERVICE))
    [(path, _argv, *_rest)] = properties["ExecStart"]
    assert path == str(cached)
    info = os.stat(cached)
    assert (info.st_uid, info.st_mode & 0o777) == (0, 0o755)
    assert not (installed.config.base_dir / SERVICE / "pocketbase").exists()


async def test_the_database_backs_up_with_sqlite3_while_the_agent_runs(
    installed: InstalledAgent, tmp_path: Path
) -> None:
    """The backup command docs/operations.md gives, against the live WAL database."""
    if shutil.which("sqlite3") is None:
        pytest.skip("needs the sqlite3 command (Debian package sqlite3)")
    backup = tmp_path / "pockestrator.db"
    subprocess.run(
        ["sqlite3", str(installed.config.database), f".backup {backup}"], check=True, timeout=30
    )

    def query(sql: str) -> str:
        return subprocess.run(
            ["sqlite3", "-readonly", str(backup), sql],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout.strip()

    assert query("PRAGMA integrity_check") == "ok"
    assert SERVICE in query("SELECT name FROM status").split()
    assert "superuser_created" in query(f"SELECT kind FROM events WHERE service = '{SERVICE}'")


async def test_the_hardened_agent_reads_instance_logs_from_the_journal(
    installed: InstalledAgent,
) -> None:
    """journalctl runs as the agent's child, under its seccomp filter and ProcSubset=pid."""
    accounts = AccountStore(installed.config.database)
    try:
        token, _record = accounts.create_token("test_install")
    finally:
        accounts.close()
    url = (
        f"http://127.0.0.1:{installed.config.listen_port}"
        f"/api/pockestrator/services/{SERVICE}/logs?lines=50"
    )

    async def pocketbase_lines() -> list[str]:
        async with (
            aiohttp.ClientSession() as session,
            session.get(url, headers={"Authorization": f"Bearer {token}"}) as response,
        ):
            assert response.status == 200, await response.text()
            body = await response.json()
        return [str(line) for line in body["log_lines"]]

    async def logged() -> bool:
        return any("Server started" in line for line in await pocketbase_lines())

    assert await wait_until(logged, 10, interval=0.2), await pocketbase_lines()


async def test_an_admin_logs_in_with_argon2_under_memory_deny_write_execute(
    installed: InstalledAgent,
) -> None:
    """Password checks run argon2 (cffi) inside the agent, where W+X mappings are refused."""
    email, password = "operator@example.test", "a long enough password"
    accounts = AccountStore(installed.config.database)
    try:
        create_admin(accounts, email, password)
    finally:
        accounts.close()
    api = f"http://127.0.0.1:{installed.config.listen_port}/api/pockestrator"
    async with aiohttp.ClientSession() as session:
        async with session.post(
            f"{api}/auth/login", json={"email": email, "password": password}
        ) as response:
            assert response.status == 200, await response.text()
            token = (await response.json())["token"]
        async with session.get(
            f"{api}/services", headers={"Authorization": f"Bearer {token}"}
        ) as response:
            assert response.status == 200, await response.text()


async def test_reload_rereads_the_configuration_without_restarting_the_agent(
    installed: InstalledAgent,
) -> None:
    pid = await installed.main_pid()
    await installed.bus.reload_unit(UNIT)

    async def reloaded() -> bool:
        return "configuration reloaded" in installed.journal()

    assert await wait_until(reloaded, 10, interval=0.1), installed.journal()[-2000:]
    assert await installed.main_pid() == pid


async def test_stopping_the_unit_ends_the_agent_cleanly_and_leaves_instances_running(
    installed: InstalledAgent,
) -> None:
    await installed.bus.stop_unit(UNIT)
    status = await installed.bus.unit_status(UNIT)
    assert status.active_state == "inactive"
    assert status.result == "success", status
    assert status.exec_main_status == 0, status
    instance = await installed.bus.unit_status(unit_name(SERVICE))
    assert instance.active_state == "active"
