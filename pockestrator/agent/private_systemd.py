"""A private systemd user manager and journald in their own mount namespace.

This is how the sandbox (``pockestrator up``) and the test bed get a real systemd on a
machine whose PID 1 is not systemd, following the verified recipe in docs/testbed.md of
the shared folder: ``unshare -m`` gives a private ``/run/systemd`` (``systemd --user``
refuses to start without ``/run/systemd/system``) and a private ``/run/log/journal`` bound
to a folder of ours, so journald's files are readable from outside with
``journalctl -D``. The manager's own ``dbus.socket`` provides the session bus.

Nothing here uses a shell with interpolated text: the mount script takes its paths as
positional arguments. Everything lives under one root folder; ``stop`` asks the manager to
exit over D-Bus (which stops every unit first), then ends journald, and ``leftover_pids``
lets callers prove that nothing was left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import shutil
import signal
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from dbus_fast import BusType, Message
from dbus_fast.aio import MessageBus

from pockestrator.agent.below import Below
from pockestrator.agent.lifespan import StartStop
from pockestrator.controllers.systemd.cgroups import process_cgroup

SYSTEMD_BINARY = Path("/usr/lib/systemd/systemd")
JOURNALD_BINARY = Path("/lib/systemd/systemd-journald")

# Runs inside the new mount namespace. $1 = root folder, $2 = notify socket for READY=1,
# $3 = journald, $4 = systemd, $5 = the name of the cgroup subtree to run in.
_NAMESPACE_SCRIPT = r"""
set -e
root="$1"
mkdir -p /run/systemd
mount -t tmpfs tmpfs /run/systemd
mkdir -p /run/systemd/system /run/log/journal
mount --bind "$root/journal" /run/log/journal
# Give the manager a cgroup subtree of its own in every mounted hierarchy, so that its
# units cannot collide with another private manager's and its leftovers can be found.
for h in "" systemd unified memory pids cpu cpuacct blkio devices; do  # "": cgroup v2
  dir="/sys/fs/cgroup/$h"
  [ -e "$dir/cgroup.procs" ] || continue
  mkdir -p "$dir/$5" && echo $$ > "$dir/$5/cgroup.procs" || true
done
env -u NOTIFY_SOCKET "$3" >"$root/journald.log" 2>&1 &
echo $! > "$root/journald.pid"
NOTIFY_SOCKET="$2" "$4" --user &
echo $! > "$root/manager.pid"
# This shell stays the parent of both, so that it reaps them and leaves no zombie.
wait
"""


# What the manager keeps of the environment it is started from. A user manager hands its
# environment to every unit it runs, and instances are hostile: whatever else the person
# running `pockestrator up` has exported (cloud keys, tokens) must not reach them.
MANAGER_ENVIRONMENT_KEPT = ("PATH", "LANG", "LC_ALL", "TZ")


def manager_environment(environ: Mapping[str, str], paths: PrivateSystemdPaths) -> dict[str, str]:
    """The private manager's environment: a few locale variables, and its own paths."""
    kept = {key: environ[key] for key in MANAGER_ENVIRONMENT_KEPT if key in environ}
    kept.setdefault("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    return {**kept, **paths.environment()}


class PrivateSystemdError(RuntimeError):
    """The private manager could not be started here; the message says why."""


def unavailable_reason() -> str | None:
    """Why this machine cannot host a private manager, or None when it can."""
    if os.geteuid() != 0:
        return "needs root: unshare -m and bind mounts require CAP_SYS_ADMIN"
    if sys_platform() != "linux":
        return "needs Linux"
    for tool in ("unshare", "mount"):
        if shutil.which(tool) is None:
            return f"needs `{tool}` (util-linux) on PATH"
    for binary in (SYSTEMD_BINARY, JOURNALD_BINARY):
        if not binary.exists():
            return f"needs systemd installed ({binary} is missing)"
    return None


def sys_platform() -> str:
    return os.uname().sysname.lower()


@dataclass(frozen=True)
class PrivateSystemdPaths:
    """Where one private manager keeps its runtime, configuration and journal."""

    root: Path
    runtime_dir = Below("root", "xdg")
    config_home = Below("root", "config")
    # Unit files written here are seen by the manager after a daemon-reload.
    unit_dir = Below("config_home", "systemd", "user")
    # What units' ``StateDirectory=`` is relative to: a user manager of systemd 252 takes
    # ``$XDG_CONFIG_HOME``, later ones ``$XDG_STATE_HOME``, so both point here.
    state_home = Below("config_home")
    journal_dir = Below("root", "journal")

    @property
    def bus_address(self) -> str:
        return f"unix:path={self.runtime_dir / 'bus'}"

    def environment(self) -> dict[str, str]:
        """Variables that point systemctl, journalctl and D-Bus clients at this manager."""
        return {
            "XDG_RUNTIME_DIR": str(self.runtime_dir),
            "XDG_CONFIG_HOME": str(self.config_home),
            "XDG_STATE_HOME": str(self.state_home),
            "DBUS_SESSION_BUS_ADDRESS": self.bus_address,
        }


class PrivateSystemd(StartStop):
    """Start and stop one private user manager plus journald under ``root``.

    The namespace shell stays the parent of both daemons, so nothing becomes a zombie of
    PID 1. The manager runs in a cgroup subtree named after its root folder
    (``/pockestrator-<hash>``), so its units never share a cgroup with another manager's
    and every process it started can be found, and proven gone, by cgroup.
    """

    def __init__(self, root: Path) -> None:
        self.paths = PrivateSystemdPaths(root)
        self._shell: asyncio.subprocess.Process | None = None
        self.manager_pid: int | None = None
        self.journald_pid: int | None = None
        digest = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:12]
        self.cgroup_name = f"pockestrator-{digest}"

    async def start(self, timeout: float = 60.0) -> None:
        reason = unavailable_reason()
        if reason:
            raise PrivateSystemdError(reason)
        paths = self.paths
        for folder in (paths.root, paths.config_home, paths.unit_dir, paths.journal_dir):
            folder.mkdir(parents=True, exist_ok=True)
        # Instances run as an unprivileged user and must traverse to their directories.
        paths.root.chmod(0o755)
        paths.runtime_dir.mkdir(mode=0o700, exist_ok=True)
        notify_path = paths.root / "notify.sock"
        notify_path.unlink(missing_ok=True)
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            notify.bind(str(notify_path))
            notify.setblocking(False)
            env = manager_environment(os.environ, paths)
            with (paths.root / "manager.log").open("ab") as log:
                self._shell = await asyncio.create_subprocess_exec(
                    "unshare",
                    "-m",
                    "--propagation",
                    "private",
                    "sh",
                    "-c",
                    _NAMESPACE_SCRIPT,
                    "pockestrator-namespace",
                    str(paths.root),
                    str(notify_path),
                    str(JOURNALD_BINARY),
                    str(SYSTEMD_BINARY),
                    self.cgroup_name,
                    env=env,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=log,
                    stderr=asyncio.subprocess.STDOUT,
                    start_new_session=True,
                )
            try:
                await asyncio.wait_for(self._wait_ready(notify), timeout)
            except (TimeoutError, PrivateSystemdError) as exc:
                await self.stop()
                raise PrivateSystemdError(
                    f"systemd --user did not report READY=1 within {timeout}s ({exc}); "
                    f"see {paths.root / 'manager.log'}"
                ) from exc
        finally:
            notify.close()
            notify_path.unlink(missing_ok=True)

    async def _wait_ready(self, notify: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                data = await asyncio.wait_for(loop.sock_recv(notify, 4096), 0.5)
            except TimeoutError:
                if self._shell is not None and self._shell.returncode is not None:
                    raise PrivateSystemdError("the namespace shell exited") from None
                continue
            if b"READY=1" in data.split(b"\n"):
                break
        self.manager_pid = int((self.paths.root / "manager.pid").read_text())
        self.journald_pid = int((self.paths.root / "journald.pid").read_text())

    async def connect(self) -> MessageBus:
        """A connection to this manager's session bus."""
        bus = MessageBus(bus_address=self.paths.bus_address, bus_type=BusType.SESSION)
        return await bus.connect()

    async def stop(self, timeout: float = 20.0) -> None:
        """Stop every unit and the manager (as `systemctl --user exit`), then journald."""
        shell = self._shell
        if shell is None:
            return
        if self.manager_pid is not None and _alive(self.manager_pid):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._request_exit(), 5.0)
            await _wait_gone(self.manager_pid, timeout)
        # Whatever survived (a unit that ignored SIGTERM and the manager's own SIGKILL) is
        # killed and waited for: a process in the middle of a disk write dies a moment
        # after its SIGKILL, not at once.
        # Each survivor's pidfd is opened before the kill, so a pid reused meanwhile is
        # never waited for (nor signalled) in its place.
        survivors = []
        for pid in self.leftover_pids():
            if pid != self.journald_pid:
                with contextlib.suppress(ProcessLookupError):
                    survivors.append(os.pidfd_open(pid))
        self.kill_leftovers(spare={self.journald_pid})
        for pidfd in survivors:
            try:
                await _exited(pidfd, 5.0)
            finally:
                os.close(pidfd)
        if self.journald_pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.journald_pid, signal.SIGTERM)
            await _wait_gone(self.journald_pid, 5.0)
        try:
            await asyncio.wait_for(shell.wait(), 5.0)
        except TimeoutError:
            os.killpg(shell.pid, signal.SIGKILL)
            await shell.wait()
        self._shell = None
        _remove_cgroup_subtree(self.cgroup_name)

    async def _request_exit(self) -> None:
        # What `systemctl --user exit` does. Manager.Exit() would leave the units running.
        bus = await self.connect()
        try:
            await bus.call(
                Message(
                    destination="org.freedesktop.systemd1",
                    path="/org/freedesktop/systemd1",
                    interface="org.freedesktop.systemd1.Manager",
                    member="StartUnit",
                    signature="ss",
                    body=["exit.target", "replace-irreversibly"],
                )
            )
        finally:
            bus.disconnect()

    def kill_leftovers(self, spare: set[int | None] | None = None) -> None:
        """SIGKILL everything this manager started; also ends one a crashed run left behind."""
        for pid in self.leftover_pids():
            if pid not in (spare or set()):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

    def leftover_pids(self) -> list[int]:
        """Live processes that this manager started (its subtree) and its two daemons."""
        # Pid files are not trusted (a crashed run's pids may be reused); the subtree is.
        own = {self.manager_pid, self.journald_pid}
        prefix = f"/{self.cgroup_name}"
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or not _alive(pid := int(entry.name)):
                continue
            group = process_cgroup(pid)
            in_subtree = group is not None and (group == prefix or group.startswith(prefix + "/"))
            if pid in own or in_subtree:
                found.append(pid)
        return found


def _remove_cgroup_subtree(name: str) -> None:
    """Remove the (now empty) cgroup folders of one manager, deepest first."""
    for hierarchy in Path("/sys/fs/cgroup").iterdir():
        top = hierarchy / name if hierarchy.is_dir() else None
        if top is None or not top.is_dir():
            continue
        for folder in sorted(top.rglob("*"), key=lambda p: len(p.parts), reverse=True):
            if folder.is_dir():
                with contextlib.suppress(OSError):
                    folder.rmdir()
        with contextlib.suppress(OSError):
            top.rmdir()
    top = Path("/sys/fs/cgroup") / name
    if top.is_dir():
        with contextlib.suppress(OSError):
            top.rmdir()


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


async def _exited(pidfd: int, timeout: float) -> bool:
    """Whether the process of ``pidfd`` exits within ``timeout`` (the pidfd turns
    readable when it does)."""
    loop = asyncio.get_running_loop()
    exited: asyncio.Future[None] = loop.create_future()

    def on_exit() -> None:
        if not exited.done():
            exited.set_result(None)

    loop.add_reader(pidfd, on_exit)
    try:
        await asyncio.wait_for(exited, timeout)
    except TimeoutError:
        return False
    finally:
        loop.remove_reader(pidfd)
    return True


async def _wait_gone(pid: int, timeout: float) -> None:
    """Wait for ``pid`` to exit, SIGKILL it after ``timeout``."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        if _alive(pid) and not await _exited(pidfd, timeout):
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
    except ProcessLookupError:
        pass
    finally:
        os.close(pidfd)


__all__ = [
    "PrivateSystemd",
    "PrivateSystemdError",
    "PrivateSystemdPaths",
    "unavailable_reason",
]
