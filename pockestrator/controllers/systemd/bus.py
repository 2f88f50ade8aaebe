"""An async client for systemd's manager over D-Bus (dbus-fast), with a timeout on every call.

The agent never shells out to systemctl: everything goes through
``org.freedesktop.systemd1`` on the system bus (production) or a user manager's session
bus (the sandbox and the test bed). Jobs (start, stop, restart, reload) are awaited until
their ``JobRemoved`` signal, and a failed job is reported with the unit's own reason
(``Result``, ``ExecMainStatus``). ``watch_units`` turns ``PropertiesChanged`` signals into
callbacks with unit names, so the agent learns about state changes without polling. What
it answers (statuses, rows, errors) are the values of ``unit_state``.

The connection is kept: when it drops (the bus daemon restarted, the manager re-executed
and the bus with it), the client connects again with backoff, subscribes again, fails the
jobs it was waiting for (their signals may be lost) and tells ``on_reconnect`` listeners,
who must assume they missed signals. A call made meanwhile waits for the new connection
within its timeout.

This module only speaks the protocol. Neighbours: ``render`` (the unit text), ``units``
(unit files and ``observe``); deciding what to do is the reconciler's (``agent``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Literal

import structlog
from dbus_fast import BusType, Message, MessageType, Variant
from dbus_fast.aio import MessageBus

from pockestrator.controllers.systemd.unit_state import (
    UNIT_PATH_PREFIX,
    JobFailed,
    NoSuchUnit,
    SystemdError,
    UnitRow,
    UnitStatus,
    optional_uint,
    plain,
    unescape_unit_path,
    unit_path,
)

DESTINATION = "org.freedesktop.systemd1"
MANAGER_PATH = "/org/freedesktop/systemd1"
MANAGER_INTERFACE = "org.freedesktop.systemd1.Manager"
PROPERTIES_INTERFACE = "org.freedesktop.DBus.Properties"
# Method calls waiting for their replies at a time, per connection (see ``_in_flight``).
MAX_CALLS_IN_FLIGHT = 16
# The finished jobs whose result a late caller can still read.
FINISHED_JOBS_KEPT = 512

log = structlog.get_logger("pockestrator.systemd")

ManagerKind = Literal["system", "user"]


class SystemdBus:
    """One D-Bus connection to one systemd manager."""

    def __init__(
        self,
        bus: MessageBus,
        timeout: float = 10.0,
        reconnect: Callable[[], Awaitable[MessageBus]] | None = None,
    ) -> None:
        self._bus = bus
        self.timeout = timeout
        # systemd merges a job into one of the same kind already queued for the unit and
        # answers both callers with its path (a wake's StartUnit and a reconcile's), so
        # one job may have several waiters.
        self._job_waiters: dict[str, list[asyncio.Future[str]]] = {}
        # JobRemoved can be dispatched before the StartUnit reply resumes our coroutine;
        # a result stays readable (job paths are not reused) for a merged job's late caller.
        self._finished_jobs: OrderedDict[str, str] = OrderedDict()
        self._unit_listeners: list[Callable[[str], None]] = []
        self._reconnect_listeners: list[Callable[[], None]] = []
        self._subscribed = False
        self._reconnect = reconnect
        self._closing = False
        self._back = asyncio.Event()
        self._back.set()
        # A burst of any size reaches one wave now (agent.daemon lends workers), so
        # hundreds of StartUnit calls can be issued at once; the connection was lost
        # with 50 sent together on a busy host. This many wait for replies at a time.
        self._in_flight = asyncio.Semaphore(MAX_CALLS_IN_FLIGHT)
        self._keeper: asyncio.Task[None] | None = None
        bus.add_message_handler(self._on_message)

    @classmethod
    async def connect(
        cls, manager: ManagerKind = "system", address: str | None = None, timeout: float = 10.0
    ) -> SystemdBus:
        bus_type = BusType.SYSTEM if manager == "system" else BusType.SESSION

        async def open_bus() -> MessageBus:
            # File descriptors travel too: a transient unit's output is a pipe of ours.
            bus = MessageBus(bus_address=address, bus_type=bus_type, negotiate_unix_fd=True)
            try:
                await asyncio.wait_for(bus.connect(), timeout)
            except (OSError, TimeoutError, EOFError) as exc:
                bus.disconnect()
                raise SystemdError(f"cannot connect to the {manager} bus: {exc}") from exc
            return bus

        bus = await open_bus()
        client = cls(bus, timeout, reconnect=open_bus)
        try:
            await client._subscribe()
        except BaseException:
            bus.disconnect()  # not left open behind a failed connect
            raise
        client._keeper = asyncio.create_task(client._keep_connected(), name="dbus-reconnect")
        return client

    @property
    def connected(self) -> bool:
        return bool(self._bus.connected)

    def on_reconnect(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` after each reconnection (signals may have been missed)."""
        self._reconnect_listeners.append(listener)

    async def close(self) -> None:
        self._closing = True
        self._bus.disconnect()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._bus.wait_for_disconnect(), 2.0)  # type: ignore[no-untyped-call]
        if self._keeper is not None:
            self._keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keeper
        self._fail_waiters("D-Bus connection closed")

    def _fail_waiters(self, reason: str) -> None:
        for waiters in self._job_waiters.values():
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_exception(SystemdError(reason))

    async def _keep_connected(self) -> None:
        """Each time the connection drops: connect again (with backoff) and subscribe."""
        assert self._reconnect is not None
        while not self._closing:
            with contextlib.suppress(Exception):
                # Shielded: cancelling this task must not cancel the bus's own future,
                # which ``close`` waits on too.
                await asyncio.shield(self._bus.wait_for_disconnect())  # type: ignore[no-untyped-call]
            if self._closing:
                return
            self._back.clear()
            self._subscribed = False
            self._fail_waiters("D-Bus connection lost while waiting for the job")
            self._finished_jobs.clear()  # a new manager numbers its jobs anew
            log.warning("D-Bus connection lost; connecting again")
            pause = 0.05
            while True:
                try:
                    bus = await self._reconnect()
                except SystemdError as exc:
                    log.debug("D-Bus not back yet", error=str(exc), retry_in=pause)
                    await asyncio.sleep(pause)
                    pause = min(pause * 2, 5.0)
                    continue
                bus.add_message_handler(self._on_message)
                self._bus = bus
                try:
                    await self._subscribe()
                except SystemdError as exc:
                    log.debug("D-Bus subscription failed", error=str(exc), retry_in=pause)
                    bus.disconnect()
                    await asyncio.sleep(pause)
                    pause = min(pause * 2, 5.0)
                    continue
                break
            self._back.set()
            log.info("D-Bus connection back; subscribed again")
            for listener in list(self._reconnect_listeners):
                listener()

    async def call(
        self,
        member: str,
        signature: str = "",
        body: Sequence[Any] = (),
        *,
        path: str = MANAGER_PATH,
        interface: str = MANAGER_INTERFACE,
        destination: str = DESTINATION,
        timeout: float | None = None,
        unix_fds: Sequence[int] = (),
    ) -> list[Any]:
        """One method call, bounded by ``timeout`` (default: the client's); D-Bus errors
        become ``SystemdError``."""
        message = Message(
            destination=destination,
            path=path,
            interface=interface,
            member=member,
            signature=signature,
            body=list(body),
            unix_fds=list(unix_fds),
        )
        limit = self.timeout if timeout is None else timeout
        if not self._bus.connected and self._keeper is not None and not self._closing:
            try:
                await asyncio.wait_for(self._back.wait(), limit)
            except TimeoutError as exc:
                raise SystemdError(
                    f"{member}: D-Bus connection lost, not back in {limit}s"
                ) from exc
        try:
            async with self._in_flight:
                async with asyncio.timeout(limit):  # not wait_for: no task per call
                    reply = await self._bus.call(message)
        except TimeoutError as exc:
            raise SystemdError(f"{member} timed out after {limit}s") from exc
        except (OSError, EOFError) as exc:
            raise SystemdError(f"{member}: D-Bus connection lost: {exc}") from exc
        if reply.message_type == MessageType.ERROR:
            text = reply.body[0] if reply.body else reply.error_name
            error_class = (
                NoSuchUnit
                if reply.error_name == "org.freedesktop.systemd1.NoSuchUnit"
                else SystemdError
            )
            raise error_class(f"{member}: {text}", reply.error_name)
        return list(reply.body)

    async def _subscribe(self) -> None:
        if self._subscribed:
            return
        await self._add_match(
            f"type='signal',sender='{DESTINATION}',path='{MANAGER_PATH}',"
            f"interface='{MANAGER_INTERFACE}',member='JobRemoved'"
        )
        await self._add_match(
            f"type='signal',sender='{DESTINATION}',interface='{PROPERTIES_INTERFACE}',"
            f"member='PropertiesChanged',path_namespace='{UNIT_PATH_PREFIX.rstrip('/')}'"
        )
        # Without Subscribe() systemd does not emit job and unit signals to this client.
        await self.call("Subscribe")
        self._subscribed = True

    async def _add_match(self, rule: str) -> None:
        await self.call(
            "AddMatch",
            "s",
            [rule],
            destination="org.freedesktop.DBus",
            path="/org/freedesktop/DBus",
            interface="org.freedesktop.DBus",
        )

    def _on_message(self, message: Message) -> bool | None:
        if message.message_type != MessageType.SIGNAL:
            return None
        if message.member == "JobRemoved" and message.interface == MANAGER_INTERFACE:
            _job_id, job_path, _unit, result = message.body
            for waiter in self._job_waiters.pop(job_path, ()):
                if not waiter.done():
                    waiter.set_result(result)
            self._finished_jobs[job_path] = result
            while len(self._finished_jobs) > FINISHED_JOBS_KEPT:
                self._finished_jobs.popitem(last=False)
        elif message.member == "PropertiesChanged" and message.path:
            unit = unescape_unit_path(message.path)
            if unit is not None:
                for listener in list(self._unit_listeners):
                    listener(unit)
        return None

    def watch_units(self, listener: Callable[[str], None]) -> Callable[[], None]:
        """Call ``listener(unit_name)`` whenever a unit's properties change; returns unwatch."""
        self._unit_listeners.append(listener)

        def unwatch() -> None:
            with contextlib.suppress(ValueError):
                self._unit_listeners.remove(listener)

        return unwatch

    # -- manager-wide operations -------------------------------------------------------

    async def daemon_reload(self) -> None:
        """Re-read every unit file. A wave of unit changes shares one of these."""
        # Reload blocks the manager while it re-reads; allow more than an ordinary call.
        # Passed per call: the client's own timeout is shared by concurrent callers.
        await self.call("Reload", timeout=max(self.timeout, 60.0))

    async def enable_unit_files(self, names: Iterable[str]) -> None:
        names = list(names)
        if names:
            await self.call("EnableUnitFiles", "asbb", [names, False, True])

    async def disable_unit_files(self, names: Iterable[str]) -> None:
        names = list(names)
        if names:
            await self.call("DisableUnitFiles", "asb", [names, False])

    async def unit_file_state(self, name: str) -> str:
        """Whether the unit file is enabled, read from the disk now: the unit's own
        ``UnitFileState`` is what systemd found when it loaded the unit, kept until a
        daemon-reload, so an enable or a disable since does not show in it."""
        (state,) = await self.call("GetUnitFileState", "s", [name])
        return str(state)

    async def list_unit_names(self, patterns: Sequence[str]) -> list[str]:
        """Names of loaded units and of unit files matching ``patterns`` (globs)."""
        loaded = await self.call("ListUnitsByPatterns", "asas", [[], list(patterns)])
        files = await self.call("ListUnitFilesByPatterns", "asas", [[], list(patterns)])
        names = {row[0] for row in loaded[0]}
        names.update(path.rsplit("/", 1)[-1] for path, _state in files[0])
        return sorted(names)

    # -- jobs --------------------------------------------------------------------------

    async def start_unit(self, name: str) -> None:
        await self._run_job("StartUnit", name)

    async def stop_unit(self, name: str) -> None:
        await self._run_job("StopUnit", name)

    async def restart_unit(self, name: str) -> None:
        await self._run_job("RestartUnit", name)

    async def reload_unit(self, name: str) -> None:
        await self._run_job("ReloadUnit", name)

    async def reset_failed_unit(self, name: str) -> None:
        with contextlib.suppress(NoSuchUnit):
            await self.call("ResetFailedUnit", "s", [name])

    async def _run_job(self, member: str, name: str, timeout: float | None = None) -> None:
        """Queue a job with mode ``replace`` and wait for its ``JobRemoved`` result."""
        await self._subscribe()
        (job_path,) = await self.call(member, "ss", [name, "replace"])
        result = await self._job_result(job_path, f"{member} {name}", timeout)
        if result != "done":
            action = member.removesuffix("Unit").lower()
            raise JobFailed(name, action, result, await self._failure_detail(name))

    async def start_transient_unit(
        self,
        name: str,
        properties: Sequence[tuple[str, Variant]],
        timeout: float,
        unix_fds: Sequence[int] = (),
    ) -> str:
        """Create and start a transient unit; the job's result (``done``, ``failed``, ...).

        A ``Type=oneshot`` unit's start job ends when its process has exited, so for those
        the result says how the run went. Mode ``fail``: never replace a unit's job.
        ``unix_fds`` are the descriptors that ``h`` properties index (their output, say).
        """
        await self._subscribe()
        (job_path,) = await self.call(
            "StartTransientUnit",
            "ssa(sv)a(sa(sv))",
            [name, "fail", list(properties), []],
            unix_fds=unix_fds,
        )
        return await self._job_result(job_path, f"StartTransientUnit {name}", timeout)

    async def _job_result(self, job_path: str, what: str, timeout: float | None) -> str:
        """Wait for ``JobRemoved`` of ``job_path`` (it may have come already)."""
        result = self._finished_jobs.get(job_path)
        if result is not None:
            return result
        waiter: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        waiters = self._job_waiters.setdefault(job_path, [])
        waiters.append(waiter)
        try:
            return await asyncio.wait_for(waiter, timeout or max(self.timeout, 90.0))
        except TimeoutError as exc:
            raise SystemdError(f"{what}: job {job_path} did not finish") from exc
        finally:
            with contextlib.suppress(ValueError):
                waiters.remove(waiter)
            if not waiters and self._job_waiters.get(job_path) is waiters:
                del self._job_waiters[job_path]

    async def _failure_detail(self, name: str) -> str:
        try:
            status = await self.unit_status(name)
        except SystemdError as exc:
            return str(exc)
        return (
            f"unit is {status.active_state}/{status.sub_state}, Result={status.result}, "
            f"ExecMainStatus={status.exec_main_status}"
        )

    # -- observation -------------------------------------------------------------------

    async def unit_properties(self, name: str) -> dict[str, Any]:
        """All properties of the unit (every interface), loading it if needed: one call on
        the unit's own path, which loads it as ``LoadUnit`` did (one round trip less on
        every observation)."""
        (properties,) = await self.call(
            "GetAll", "s", [""], path=unit_path(name), interface=PROPERTIES_INTERFACE
        )
        return {key: plain(value) for key, value in properties.items()}

    async def unit_status(self, name: str) -> UnitStatus:
        props = await self.unit_properties(name)
        fragment = props.get("FragmentPath") or None
        return UnitStatus(
            name=name,
            load_state=str(props.get("LoadState", "")),
            active_state=str(props.get("ActiveState", "")),
            sub_state=str(props.get("SubState", "")),
            unit_file_state=str(props.get("UnitFileState", "")),
            main_pid=optional_uint(props.get("MainPID"), zero_is_unset=True),
            n_restarts=optional_uint(props.get("NRestarts")),
            exec_main_status=optional_uint(props.get("ExecMainStatus")),
            result=props.get("Result") or None,
            memory_current=optional_uint(props.get("MemoryCurrent")),
            cpu_usage_nsec=optional_uint(props.get("CPUUsageNSec")),
            need_daemon_reload=bool(props.get("NeedDaemonReload", False)),
            fragment_path=fragment,
            active_enter_timestamp_usec=optional_uint(
                props.get("ActiveEnterTimestamp"), zero_is_unset=True
            ),
            job_pending=_job_pending(props.get("Job")),
            memory_max=optional_uint(props.get("MemoryMax")),
            control_group=str(props.get("ControlGroup") or "") or None,
        )

    async def list_units_by_names(self, names: Sequence[str]) -> list[UnitRow]:
        """The state of each unit of ``names`` in one call (``ListUnitsByNames`` loads the
        ones not loaded yet; an unknown name answers ``not-found``), in the order asked."""
        if not names:
            return []
        (rows,) = await self.call("ListUnitsByNames", "as", [list(names)])
        return [
            UnitRow(
                name=str(row[0]),
                load_state=str(row[2]),
                active_state=str(row[3]),
                sub_state=str(row[4]),
                job_pending=isinstance(row[7], int) and row[7] != 0,
            )
            for row in rows
        ]


def _job_pending(job: Any) -> bool:
    """The unit's ``Job`` property, ``(id, path)``: id 0 when no job is queued."""
    if isinstance(job, (list, tuple)) and job:
        return isinstance(job[0], int) and job[0] != 0
    return False
