"""The test bed is real: systemd over D-Bus, journald, Caddy, PocketBase, release mirror."""

from __future__ import annotations

import hashlib
import io
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import aiohttp

from pockestrator.agent.private_systemd import PrivateSystemd
from pockestrator.agent.sandbox import Sandbox, free_port
from pockestrator.controllers.systemd.bus import SystemdBus
from tests.testbed.journal import journal_text
from tests.testbed.mirror import ReleaseMirror
from tests.testbed.waiting import pocketbase_health, wait_for_pocketbase, wait_until


def write_unit(sandbox: Sandbox, name: str, body: str) -> None:
    (sandbox.systemd.paths.unit_dir / name).write_text(body)


async def test_unit_started_over_dbus_has_a_real_main_pid_and_memory(sandbox: Sandbox) -> None:
    write_unit(sandbox, "sleeper.service", "[Service]\nExecStart=/bin/sleep 300\n")
    assert sandbox.bus is not None
    await sandbox.bus.daemon_reload()
    await sandbox.bus.start_unit("sleeper.service")

    status = await sandbox.bus.unit_status("sleeper.service")
    assert status.active_state == "active"
    assert status.main_pid is not None
    main_pid = status.main_pid

    async def execed() -> bool:
        # A Type=simple start job ends at fork; until exec the child is systemd's "(sleep)".
        cmdline = Path(f"/proc/{main_pid}/cmdline").read_bytes().split(b"\0")
        return cmdline[:2] == [b"/bin/sleep", b"300"]

    assert await wait_until(execed, timeout=5, interval=0.005)
    assert status.memory_current is not None and status.memory_current > 0
    # No CPU accounting on this kind of host: reported as unknown, never as 2^64-1.
    assert status.cpu_usage_nsec is None or status.cpu_usage_nsec < 2**63

    await sandbox.bus.stop_unit("sleeper.service")
    assert (
        not Path(f"/proc/{status.main_pid}").exists()
        or (await sandbox.bus.unit_status("sleeper.service")).active_state != "active"
    )


async def test_unit_stdout_reaches_the_journal(sandbox: Sandbox) -> None:
    marker = "journal-marker-" + hashlib.sha256(str(sandbox.layout.root).encode()).hexdigest()[:8]
    write_unit(
        sandbox,
        "talker.service",
        f"[Service]\nSyslogIdentifier=talker\nExecStart=/bin/echo {marker}\n",
    )
    assert sandbox.bus is not None
    await sandbox.bus.daemon_reload()
    await sandbox.bus.start_unit("talker.service")

    async def marker_in_journal() -> bool:
        return marker in journal_text(sandbox, "talker")

    assert await wait_until(marker_in_journal, timeout=5)


async def test_pocketbase_unit_answers_health_through_caddy(sandbox: Sandbox) -> None:
    port = free_port()
    data = sandbox.layout.services_dir / "probe" / "pb_data"
    data.mkdir(parents=True)
    pocketbase = Path(sys.executable).parent / "pocketbase"
    write_unit(
        sandbox,
        "probe-pocketbase.service",
        f"[Service]\nExecStart={pocketbase} serve --http=127.0.0.1:{port} --dir={data}\n",
    )
    (sandbox.layout.caddy_sites_dir / "probe.caddy").write_text(
        f"http://probe.example.test {{\n\treverse_proxy 127.0.0.1:{port}\n}}\n"
    )
    assert sandbox.bus is not None
    await sandbox.bus.daemon_reload()
    await sandbox.bus.start_unit("probe-pocketbase.service")
    await sandbox.bus.reload_unit("caddy.service")

    assert await wait_for_pocketbase(sandbox.caddy_url, host="probe.example.test")
    # Caddy routes by Host: an unknown name reaches no PocketBase.
    assert not await pocketbase_health(sandbox.caddy_url, host="other.example.test")


async def test_mirror_zip_matches_its_checksums(
    release_mirror: ReleaseMirror, pocketbase_versions: tuple[str, str]
) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(release_mirror.index_url) as response:
            index = await response.json()
        tags = [release["tag_name"] for release in index]
        older, newer = pocketbase_versions
        assert tags[0] == f"v{newer}" and f"v{older}" in tags

        for version in pocketbase_versions:
            name = release_mirror.zip_name(version)
            base = f"{release_mirror.base_url}/v{version}"
            async with session.get(f"{base}/{name}") as response:
                archive = await response.read()
            async with session.get(f"{base}/checksums.txt") as response:
                checksums = await response.text()
            expected = dict(line.split()[::-1] for line in checksums.splitlines())
            assert hashlib.sha256(archive).hexdigest() == expected[name]
            with zipfile.ZipFile(io.BytesIO(archive)) as zf:
                binary = zf.read("pocketbase")
            with tempfile.NamedTemporaryFile(dir="/var/lib", delete=False) as handle:
                handle.write(binary)
            exe = Path(handle.name)
            try:
                exe.chmod(0o755)
                shown = subprocess.run(
                    [str(exe), "--version"], capture_output=True, text=True, check=True
                )
            finally:
                exe.unlink()
            assert version in shown.stdout


async def test_teardown_leaves_no_process_behind(testbed_base: Path) -> None:
    root = Path(tempfile.mkdtemp(prefix="tb-teardown-", dir=testbed_base))
    manager = PrivateSystemd(root)
    await manager.start()
    try:
        # A unit that ignores SIGTERM: the manager has to SIGKILL it on the way out.
        (manager.paths.unit_dir / "stubborn.service").write_text(
            "[Service]\nExecStart=/bin/sh -c 'trap \"\" TERM; sleep 300'\nTimeoutStopSec=1\n"
        )
        client = await SystemdBus.connect("user", manager.paths.bus_address)
        await client.daemon_reload()
        await client.start_unit("stubborn.service")
        unit_pid = (await client.unit_status("stubborn.service")).main_pid
        await client.close()
        started = manager.leftover_pids()
        assert unit_pid in started and manager.manager_pid in started
    finally:
        await manager.stop()

    assert manager.leftover_pids() == []
    assert not Path(f"/proc/{unit_pid}").exists()
    shutil.rmtree(root)
