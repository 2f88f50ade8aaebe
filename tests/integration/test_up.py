"""`pockestrator up` as a newcomer runs it: start, drop a spec, see PocketBase, Ctrl-C."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

from pockestrator.agent.private_systemd import PrivateSystemd
from pockestrator.agent.sandbox import free_port
from tests.testbed.mirror import installed_version
from tests.testbed.waiting import pocketbase_health, wait_for_pocketbase


class Output:
    """Everything the process prints, read as it comes (a full pipe would stall it)."""

    def __init__(self, stream: asyncio.StreamReader) -> None:
        self.text = ""
        self._changed = asyncio.Event()
        self._task = asyncio.create_task(self._read(stream))

    async def _read(self, stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():
            self.text += line.decode()
            self._changed.set()

    async def wait_for(self, marker: str, timeout: float) -> str:
        async with asyncio.timeout(timeout):
            while marker not in self.text:
                if self._task.done():
                    raise AssertionError(f"ended before printing {marker!r}:\n{self.text}")
                self._changed.clear()
                await self._changed.wait()
        return self.text

    async def rest(self) -> str:
        await self._task
        return self.text


async def start_up(state: Path, *options: str) -> asyncio.subprocess.Process:
    """``pockestrator up OPTIONS`` as a user starts it, its test bed in ``state``/sandbox and
    its CLI settings in ``state``/config; stdout and stderr as one stream."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "pockestrator",
        "up",
        "--state-dir",
        str(state / "sandbox"),
        *options,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "XDG_CONFIG_HOME": str(state / "config")},
    )


async def test_up_serves_a_dropped_spec_and_ctrl_c_leaves_nothing_behind(
    testbed_base: Path,
) -> None:
    state = Path(tempfile.mkdtemp(prefix="up-", dir=testbed_base))
    state.chmod(0o755)  # mkdtemp's 0700 would keep the unprivileged instances out
    specs = state / "my-specs"
    specs.mkdir()
    caddy_port, api_port = free_port(), free_port()
    process = await start_up(
        state, "--specs", str(specs), "--port", str(api_port), "--caddy-port", str(caddy_port)
    )
    assert process.stdout is not None
    output = Output(process.stdout)
    try:
        banner = await output.wait_for("Press Ctrl-C", 60)
        assert f"http://127.0.0.1:{api_port}/" in banner
        assert "pks_" in banner
        token_file = state / "config" / "pockestrator" / "token"
        assert token_file.read_text().strip() in banner
        assert token_file.stat().st_mode & 0o077 == 0
        url_file = state / "config" / "pockestrator" / "url"
        assert url_file.read_text().strip() == f"http://127.0.0.1:{api_port}"

        started = time.perf_counter()
        version = installed_version()
        (specs / "blog.yaml").write_text(
            f'project_name: blog\nport: {free_port()}\npocketbase_version: "{version}"\n'
        )
        caddy = f"http://127.0.0.1:{caddy_port}"
        assert await wait_for_pocketbase(caddy, "blog.localhost", timeout=30), output.text[-2000:]
        print(f"spec written -> healthy through Caddy in {time.perf_counter() - started:.3f}s")
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGINT)
        await asyncio.wait_for(process.wait(), 60)
        rest = await output.rest()
    assert process.returncode == 0, rest
    assert "nothing left running" in rest
    assert not (state / "config" / "pockestrator" / "url").exists()
    manager = PrivateSystemd(state / "sandbox" / "systemd")
    assert manager.leftover_pids() == []
    assert not await pocketbase_health(f"http://127.0.0.1:{caddy_port}", "blog.localhost")


async def test_up_refuses_a_state_folder_the_instances_cannot_reach(testbed_base: Path) -> None:
    hidden = Path(tempfile.mkdtemp(prefix="up-hidden-", dir=testbed_base))  # mode 0700
    process = await start_up(hidden, "--specs", str(hidden / "specs"), "--port", str(free_port()))
    output = (await asyncio.wait_for(process.communicate(), 60))[0].decode()
    assert process.returncode == 1
    assert f"{hidden} is mode 0700" in output
