"""One-off commands of an instance's own binary, run as transient units in its sandbox.

PocketBase loads its owner's JavaScript for any command it runs, so a command such as the
first superuser's bootstrap, a migration or a dry boot runs the instance's code: it must
not run in the agent's process tree, cgroup or mount namespace. ``run_transient`` starts it
as a transient ``Type=oneshot`` unit (``StartTransientUnit`` over D-Bus) with the
properties the caller gives, which are the instance's own identity and hardening
(``render.sandbox_properties``), and waits for it to exit.

Its standard output and error are the write end of a pipe handed to systemd over D-Bus;
the agent reads the other end while the command runs, keeping at most ``OUTPUT_MAX`` bytes
(an instance that prints without end cannot fill the agent's memory or disk). The run is
bounded in time by ``TimeoutStartSec=``: systemd kills it past the deadline. A failed unit
stays loaded until its exit status is read, then it is reset, so that nothing of the run
stays behind.

Neighbours: ``bus`` (the D-Bus calls and job results), ``render`` (the sandbox).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Sequence
from dataclasses import dataclass

from dbus_fast import Variant

from pockestrator.controllers.systemd.bus import SystemdBus
from pockestrator.controllers.systemd.unit_state import JobFailed, NoSuchUnit, SystemdError

OUTPUT_MAX = 64 * 1024
EOF_WAIT = 5.0
READ_CHUNK = 16 * 1024


@dataclass(frozen=True)
class TransientRun:
    """How a one-off command ended: systemd's result, the exit status and its output."""

    unit: str
    result: str  # systemd's Result: success, exit-code, signal, timeout, ...
    exit_status: int | None
    output: str
    truncated: bool = False

    @property
    def ok(self) -> bool:
        return self.result == "success"


async def run_transient(
    bus: SystemdBus,
    unit: str,
    argv: Sequence[str],
    properties: Sequence[tuple[str, Variant]],
    *,
    timeout: float,
) -> TransientRun:
    """Run ``argv`` as the transient unit ``unit`` with ``properties``; wait for it to end."""
    if not argv or not os.path.isabs(argv[0]):
        raise ValueError("a transient command needs an absolute program path")
    await bus.reset_failed_unit(unit)  # a failed run of the same name is still loaded
    read_end, write_end = os.pipe()
    reader = asyncio.create_task(_read_bounded(read_end), name=f"output of {unit}")
    try:
        own = [
            ("Description", Variant("s", f"Pockestrator: {os.path.basename(argv[0])} {argv[1]}")),
            ("Type", Variant("s", "oneshot")),
            ("ExecStart", Variant("a(sasb)", [(argv[0], list(argv), False)])),
            ("StandardInput", Variant("s", "null")),
            ("StandardOutputFileDescriptor", Variant("h", 0)),
            ("StandardErrorFileDescriptor", Variant("h", 0)),
            ("TimeoutStartUSec", Variant("t", int(timeout * 1_000_000))),
        ]
        try:
            job = await bus.start_transient_unit(
                unit, [*own, *properties], timeout + 30.0, unix_fds=[write_end]
            )
        finally:
            os.close(write_end)
        result, exit_status = ("success", 0) if job == "done" else await _why(bus, unit, job)
    except BaseException:
        reader.cancel()
        with contextlib.suppress(BaseException):
            await reader
        raise
    # systemd holds the pipe's write end until it unloads the unit (at once when it
    # succeeded, after the reset when it failed): the end of the output follows.
    try:
        output, truncated = await asyncio.wait_for(reader, EOF_WAIT)
    except TimeoutError:
        output, truncated = "(the command's output did not end)", True
    return TransientRun(unit, result, exit_status, output, truncated)


async def _why(bus: SystemdBus, unit: str, job: str) -> tuple[str, int | None]:
    """systemd's Result and the exit status of a run whose start job did not end ``done``."""
    try:
        status = await bus.unit_status(unit)
    except (NoSuchUnit, SystemdError):
        return job, None  # collected already: the job's own result is all there is
    await bus.reset_failed_unit(unit)
    return status.result or job, status.exec_main_status


async def _read_bounded(fd: int) -> tuple[str, bool]:
    """Everything written to the pipe until its writers close it, kept up to OUTPUT_MAX."""
    loop = asyncio.get_running_loop()
    os.set_blocking(fd, False)
    kept = bytearray()
    truncated = False
    readable = asyncio.Event()
    loop.add_reader(fd, readable.set)
    try:
        while True:
            await readable.wait()
            readable.clear()
            try:
                chunk = os.read(fd, READ_CHUNK)
            except BlockingIOError:
                continue
            if not chunk:
                break
            room = OUTPUT_MAX - len(kept)
            kept += chunk[:room]
            truncated = truncated or len(chunk) > room
    finally:
        loop.remove_reader(fd)
        os.close(fd)
    return kept.decode("utf-8", "replace"), truncated


async def start_transient_service(
    bus: SystemdBus,
    unit: str,
    argv: Sequence[str],
    properties: Sequence[tuple[str, Variant]],
    *,
    timeout: float,
) -> None:
    """Start ``argv`` as a long-running transient service; return once it has started.

    For a dry boot: the caller probes it, then ``stop_transient_service``. Its output goes to
    the journal like any unit's. ``JobFailed`` when systemd could not start it.
    """
    if not argv or not os.path.isabs(argv[0]):
        raise ValueError("a transient command needs an absolute program path")
    await bus.reset_failed_unit(unit)
    own = [
        ("Description", Variant("s", f"Pockestrator: {os.path.basename(argv[0])} {argv[1]}")),
        ("Type", Variant("s", "exec")),
        ("ExecStart", Variant("a(sasb)", [(argv[0], list(argv), False)])),
        ("StandardInput", Variant("s", "null")),
        ("TimeoutStartUSec", Variant("t", int(timeout * 1_000_000))),
    ]
    job = await bus.start_transient_unit(unit, [*own, *properties], timeout + 30.0)
    if job != "done":
        result, status = await _why(bus, unit, job)
        raise JobFailed(unit, "start", result, f"exit status {status}")


async def stop_transient_service(bus: SystemdBus, unit: str) -> None:
    """Stop it (systemd then unloads it); nothing of it stays loaded."""
    with contextlib.suppress(NoSuchUnit):
        await bus.stop_unit(unit)
    await bus.reset_failed_unit(unit)
