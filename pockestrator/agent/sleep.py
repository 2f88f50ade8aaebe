"""Sleeping instances (scale to zero): put an idle service's PocketBase to sleep, wake it on
the first request, and answer that request rather than fail it.

Idle: Caddy writes an access log for each service with ``sleep_after`` (its site's ``log``,
``controllers.caddy.render``), and the mtime of that file is the end of the last request
through Caddy. The agent never reads the content, never polls: one timer per service fires
when the service would have been idle for ``sleep_after`` and looks at the mtime once (a
``stat``); a later request re-arms the timer for the rest. That is cheaper than Caddy's
per-host metrics, which need a global option in the operator's Caddyfile and a scrape and
parse of every service's counters on each look. A request writes its line when it ends,
so a service idle by the mtime is asked about once more: Caddy's admin API counts the
requests it is proxying now (``GET /reverse_proxy/upstreams``), and one in flight (a
realtime subscription, a long upload, a wake's requests still waiting on a slow boot)
keeps the service awake; the timer looks again after ``BUSY_RECHECK`` at most. The
agent's own health probes go to PocketBase directly, not through Caddy, so they keep
nothing awake.

Asleep: the reconcile that sees the service ``drowsy`` stops its unit (the data and the
Caddy site stay), then ``settled`` binds the service's own port on loopback
(``127.0.0.1:<port>``, where Caddy sends its requests) and records the sleep (a marker file
that outlives an agent restart, and an event). There is no second port and no proxy in
front of an awake instance: while it sleeps, the agent holds the very address PocketBase
listens on, so no tenant can reach a "far side" of another's.

Wake: the first connection makes the listening socket readable. In that one callback the
agent accepts every pending connection and closes the socket, then starts the unit
(``StartUnit``, no reconcile in between) and hands each accepted connection to PocketBase
once it listens (a short bounded retry of the connect: PocketBase has no readiness
notification). Requests that arrive in between find the port closed; Caddy holds and
retries them (``lb_try_duration``, ``proxy.hold_requests``, which ``sleep_after`` needs),
so they are answered too. The reconciler never starts a sleeping service (``plan``), a
control ``start`` wakes it (``release`` before the restart), a start by anyone else (an
operator's ``systemctl start``, a boot) is taken as a wake. ``wake_schedule`` wakes it a
minute before each time, so that PocketBase's own cron jobs (which do not run while it
sleeps) can run, and keeps it awake until a minute after.

While the agent is down, nobody holds a sleeping service's port: its requests are held by
Caddy and then answered 502 until the agent is back and wakes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import socket
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import structlog

from pockestrator.controllers.caddy import access_log_path
from pockestrator.controllers.snapshots.schedule import next_due
from pockestrator.controllers.systemd.bus import SystemdBus
from pockestrator.controllers.systemd.unit_state import SystemdError
from pockestrator.files import write_atomic
from pockestrator.specs import grammar
from pockestrator.specs.model import ServiceSpec, unit_name
from pockestrator.specs.store import Store

log = structlog.get_logger("pockestrator.sleep")

SleepState = Literal["awake", "drowsy", "asleep"]
# A timer fires this much after the service would be idle, so that a request that ended
# at the very edge is seen.
IDLE_SLACK = 0.05
# How long a scheduled wake comes before the cron time, and stays after it: PocketBase's
# cron ticks on whole minutes from its start.
SCHEDULE_MARGIN = timedelta(minutes=1)
# The connections one wake takes over at most (the rest are refused; Caddy retries them).
WAKE_CONNECTIONS_MAX = 256
# Between tries to reach a waking PocketBase: it boots in about 25 ms on an existing
# database; the tries end after the service's hold_requests.
CONNECT_RETRY = 0.005
PIPE_CHUNK = 65536
# How soon a service found idle by its access log but with a request in flight through
# Caddy is looked at again (its sleep_after, if shorter).
BUSY_RECHECK = 30.0

# Requests Caddy proxies now, per upstream address; None: not known (its admin API is off).
InFlight = Callable[[], Awaitable[Mapping[str, int] | None]]


async def _none_known() -> Mapping[str, int] | None:
    return None


def idle_wait(now: float, last_request: float | None, awake_since: float, after: int) -> float:
    """Seconds until the service has been idle for ``after``; 0 or less: it is now.

    Idle counts from the later of the last request (the access log's mtime; None: none
    yet) and the moment it was last seen to wake (``awake_since``, which a scheduled wake
    puts a minute past the cron time).
    """
    since = awake_since if last_request is None else max(last_request, awake_since)
    return since + after - now


def scheduled_wake(schedule: str, now: datetime) -> tuple[datetime, datetime]:
    """(when to wake, until when to stay awake) for the next cron time of ``schedule``
    that is at least a margin away: a minute before it, and a minute after it."""
    fire = next_due(schedule, now + SCHEDULE_MARGIN)
    return fire - SCHEDULE_MARGIN, fire + SCHEDULE_MARGIN


class SleepKeeper:
    """Which services sleep, the listeners that wake them and the timers that put them to
    sleep; one per agent. ``enqueue`` (set by the agent) queues a reconcile."""

    def __init__(
        self,
        bus: SystemdBus,
        store: Store,
        marks_dir: Path,
        access_log_dir: Path,
        in_flight: InFlight = _none_known,
    ) -> None:
        self.bus = bus
        self.store = store
        self.in_flight = in_flight
        self.marks_dir = marks_dir
        self.access_log_dir = access_log_dir
        self.enqueue: Callable[[str], None] = lambda _name: None
        self._asleep: set[str] = set()
        self._drowsy: set[str] = set()
        self._waking: set[str] = set()  # their wake's StartUnit is under way
        self._wakes: dict[str, int] = {}  # wakes begun, per name
        self._listeners: dict[str, socket.socket] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._awake_since: dict[str, float] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._load()

    # -- what the reconciler and the API ask -------------------------------------------

    def state(self, name: str) -> SleepState:
        if name in self._asleep:
            return "asleep"
        return "drowsy" if name in self._drowsy else "awake"

    def is_asleep(self, name: str) -> bool:
        return name in self._asleep

    def wakes(self, name: str) -> int:
        """How many wakes of ``name`` have begun: a reconcile that saw this number change
        (or ``waking``) between its look at the unit and its plan drops what it saw."""
        return self._wakes.get(name, 0)

    def waking(self, name: str) -> bool:
        """Whether a wake's own start of ``name`` is under way: a reconcile now would take
        the unit, not yet started, for one that stopped, and start it as drift. The wake
        queues a reconcile once its start has ended."""
        return name in self._waking

    def resting(self, name: str) -> bool:
        """Asleep, or drowsy (its stop is planned): a connection to its port now would wake
        it, or race the stop and wake it the moment its port is held."""
        return name in self._asleep or name in self._drowsy

    def still_idle(self, spec: ServiceSpec) -> bool:
        """Whether a drowsy service is still idle now (a request may have come since the
        timer decided); if not, it is awake again and its timer re-armed."""
        after = spec.sleep_seconds
        name = spec.project_name
        if after is None:
            self._drowsy.discard(name)
            return False
        wait = idle_wait(time.time(), self._last_request(name), self._since(name), after)
        if wait > 0:
            self._drowsy.discard(name)
            self._arm_idle(name, wait)
            return False
        return True

    def settled(self, spec: ServiceSpec | None, name: str, running: bool | None) -> None:
        """After a reconcile of ``name``: ``spec`` as stored (None: removed, or it should
        not run), and whether its unit now runs (None: not known). Level-triggered, so any
        number of calls in any order leave the right listener and timers."""
        after = spec.sleep_seconds if spec is not None else None
        if spec is None or after is None:
            self._forget(name)
            return
        if running is None:
            return
        if running:
            if name in self._asleep:
                # Started by someone else (an operator, a boot, an upgrade): it is awake.
                self._set_awake(name, "started by systemd or an operator")
            self._drowsy.discard(name)
            if name not in self._timers:
                self._arm_idle(name, after)
            return
        if name in self._drowsy:
            self._drowsy.discard(name)
            self._mark(name)
            # A probe that found it stopping is no failure to restart it for once it wakes.
            self.store.update_status(name, health_failures=0)
            self.store.add_event(
                name, "sleeping", f"put to sleep after {spec.sleep_after} without requests"
            )
            log.info("service asleep", service=name, after=spec.sleep_after)
        if name in self._asleep:
            self._hold(spec)

    def release(self, name: str, why: str) -> bool:
        """Wake ``name`` without starting it (the caller starts it: a control start)."""
        if name not in self._asleep:
            return False
        self._set_awake(name, why)
        return True

    def close(self) -> None:
        """The agent stops: every listener and timer goes; the marks stay on disk."""
        for name in list(self._listeners):
            self._close_listener(name)
        for name in list(self._timers):
            self._timers.pop(name).cancel()
        for task in self._tasks:
            task.cancel()

    # -- idle --------------------------------------------------------------------------

    def _last_request(self, name: str) -> float | None:
        try:
            return access_log_path(self.access_log_dir, name).stat().st_mtime
        except OSError:
            return None

    def _since(self, name: str) -> float:
        return self._awake_since.setdefault(name, time.time())

    def _arm_idle(self, name: str, delay: float) -> None:
        self._cancel_timer(name)
        loop = asyncio.get_running_loop()
        self._timers[name] = loop.call_later(max(0.0, delay) + IDLE_SLACK, self._idle_due, name)

    def _idle_due(self, name: str) -> None:
        """The timer: idle for sleep_after now? Then drowsy and reconciled; else later."""
        self._timers.pop(name, None)
        record = self.store.get_service(name)
        spec = record.spec if record is not None and record.desired_state == "running" else None
        after = spec.sleep_seconds if spec is not None else None
        if after is None or name in self._asleep:
            return
        wait = idle_wait(time.time(), self._last_request(name), self._since(name), after)
        if wait > 0:
            self._arm_idle(name, wait)
            return
        assert spec is not None
        self._spawn(self._unless_busy(name, spec.port, after))

    async def _unless_busy(self, name: str, port: int, after: int) -> None:
        """Idle by the access log: drowsy and reconciled, unless Caddy is proxying a
        request to it now (its line is written when it ends); then looked at again."""
        since = self._awake_since.get(name)
        counts = await self.in_flight()
        if (
            name in self._asleep
            or name in self._timers
            or name in self._drowsy
            or self._awake_since.get(name) != since
        ):
            return  # asleep, woken, re-armed or decided while Caddy was asked
        if counts and counts.get(f"127.0.0.1:{port}", 0) > 0:
            self._arm_idle(name, min(float(after), BUSY_RECHECK))
            return
        self._drowsy.add(name)
        self.enqueue(name)

    # -- asleep: the listener on the service's port --------------------------------------

    def _hold(self, spec: ServiceSpec) -> None:
        """Bind the sleeping service's port (once) and arm its scheduled wake."""
        name = spec.project_name
        held = self._listeners.get(name)
        if held is not None and held.getsockname()[1] != spec.port:
            self._close_listener(name)  # the spec moved it to another port while it slept
        if name not in self._listeners:
            try:
                listener = _listen(spec.port)
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise
                # Something listens there: PocketBase was started behind our back.
                self._set_awake(name, "its port was taken")
                self.enqueue(name)
                return
            self._listeners[name] = listener
            asyncio.get_running_loop().add_reader(listener.fileno(), self._knocked, spec)
        if spec.wake_schedule is not None and name not in self._timers:
            at, until = scheduled_wake(spec.wake_schedule, datetime.now(UTC))
            delay = (at - datetime.now(UTC)).total_seconds()
            loop = asyncio.get_running_loop()
            self._timers[name] = loop.call_later(
                max(0.0, delay), self._scheduled, spec, until.timestamp()
            )

    def _knocked(self, spec: ServiceSpec) -> None:
        """A connection waits on a sleeping service's port: take every pending one, close
        the port (so PocketBase can bind it) and wake the instance for them."""
        name = spec.project_name
        listener = self._listeners.get(name)
        if listener is None:
            return
        accepted: list[socket.socket] = []
        while len(accepted) < WAKE_CONNECTIONS_MAX:
            try:
                connection, _peer = listener.accept()
            except (BlockingIOError, InterruptedError):
                break
            connection.setblocking(False)
            accepted.append(connection)
        self._close_listener(name)
        self._set_awake(name, "a request came", clear_listener=False)
        self._begin_wake(name)
        self._spawn(self._wake(spec, accepted, "request"))

    def _scheduled(self, spec: ServiceSpec, until: float) -> None:
        name = spec.project_name
        self._timers.pop(name, None)
        if name not in self._asleep:
            return
        self._set_awake(name, f"scheduled ({spec.wake_schedule})")
        self._awake_since[name] = until
        self._begin_wake(name)
        self._spawn(self._wake(spec, [], "schedule"))

    async def _wake(self, spec: ServiceSpec, accepted: list[socket.socket], reason: str) -> None:
        """Start the unit and, beside that (not after its job's end), hand each accepted
        connection to PocketBase as soon as it listens."""
        deadline = time.monotonic() + max(1, spec.proxy.hold_requests)
        await asyncio.gather(
            self._start(spec.project_name, reason, len(accepted)),
            *(self._hand_over(connection, spec.port, deadline) for connection in accepted),
        )

    def _begin_wake(self, name: str) -> None:
        self._waking.add(name)
        self._wakes[name] = self._wakes.get(name, 0) + 1

    async def _start(self, name: str, reason: str, connections: int) -> None:
        try:
            await self.bus.reset_failed_unit(unit_name(name))
            await self.bus.start_unit(unit_name(name))
        except SystemdError as exc:
            log.warning("waking a service failed", service=name, error=str(exc))
        else:
            log.info("service woken", service=name, reason=reason, connections=connections)
        finally:
            self._waking.discard(name)
            self.enqueue(name)

    async def _hand_over(self, connection: socket.socket, port: int, deadline: float) -> None:
        """Pipe one accepted connection to PocketBase, once it listens, both ways."""
        try:
            reader, writer = await asyncio.open_connection(sock=connection)
        except OSError:
            connection.close()
            return
        upstream = await _connect(port, deadline)
        if upstream is None:
            writer.close()
            return
        up_reader, up_writer = upstream
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            for each in (writer, up_writer):
                each.close()

    # -- the state and its marks ---------------------------------------------------------

    def _set_awake(self, name: str, why: str, *, clear_listener: bool = True) -> None:
        if clear_listener:
            self._close_listener(name)
        self._cancel_timer(name)
        was_asleep = name in self._asleep
        self._asleep.discard(name)
        self._drowsy.discard(name)
        self._awake_since[name] = time.time()
        with contextlib.suppress(FileNotFoundError):
            self._mark_path(name).unlink()
        if was_asleep:
            self.store.add_event(name, "woken", f"woken: {why}")

    def _mark(self, name: str) -> None:
        self.marks_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_atomic(self._mark_path(name), b"")
        self._asleep.add(name)

    def _mark_path(self, name: str) -> Path:
        return self.marks_dir / grammar.check_project_name(name)

    def _load(self) -> None:
        """The services an earlier agent put to sleep (the marks it left)."""
        try:
            entries = os.listdir(self.marks_dir)
        except FileNotFoundError:
            return
        for entry in entries:
            try:
                self._asleep.add(grammar.check_project_name(entry))
            except grammar.GrammarError:
                continue  # an atomic write's leftover, or not ours

    def _forget(self, name: str) -> None:
        if name in self._asleep:
            self._set_awake(name, "its spec no longer lets it sleep (or it is stopped)")
        self._close_listener(name)
        self._cancel_timer(name)
        self._drowsy.discard(name)
        self._awake_since.pop(name, None)

    def _close_listener(self, name: str) -> None:
        listener = self._listeners.pop(name, None)
        if listener is not None:
            with contextlib.suppress(ValueError, OSError):
                asyncio.get_running_loop().remove_reader(listener.fileno())
            listener.close()

    def _cancel_timer(self, name: str) -> None:
        timer = self._timers.pop(name, None)
        if timer is not None:
            timer.cancel()

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _listen(port: int) -> socket.socket:
    """A non-blocking listening socket on ``127.0.0.1:port``, the address PocketBase binds
    (SO_REUSEADDR, as Go's listener sets it, so neither waits out the other's TIME_WAIT)."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen(WAKE_CONNECTIONS_MAX)
        listener.setblocking(False)
    except OSError:
        listener.close()
        raise
    return listener


async def _connect(
    port: int, deadline: float
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
    """A connection to a waking PocketBase, retried until ``deadline`` (monotonic)."""
    while True:
        try:
            return await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            if time.monotonic() >= deadline:
                return None
            await asyncio.sleep(CONNECT_RETRY)


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    """Copy until ``source`` ends, with backpressure; then half-close ``sink``."""
    try:
        while chunk := await source.read(PIPE_CHUNK):
            sink.write(chunk)
            await sink.drain()
        if sink.can_write_eof():
            sink.write_eof()
    except (ConnectionError, OSError):
        sink.close()
