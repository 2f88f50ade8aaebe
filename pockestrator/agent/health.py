"""Health of PocketBase instances: ``GET /api/health`` on loopback, and CPU from /proc.

Two users: the ``BootWatch`` waits for a freshly started instance to answer (a bounded
wait with growing intervals; PocketBase has no readiness notification) without holding
the reconcile that started it, and the ``HealthProber``
probes every instance that should run on an interval with jitter, records the result in
its status and re-queues a service whose probes fail, so that the reconciler restarts it
after ``health_failures_before_restart`` failures. Probes of many services are spread over
the interval rather than fired all at once.
"""

from __future__ import annotations

import asyncio
import math
import os
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import aiohttp
import structlog

from pockestrator.agent.health_probe import ProbeConnections, probe
from pockestrator.clock import utc_now
from pockestrator.specs.store import ServiceStatus, Store
from pockestrator.telemetry import AgentMetrics

log = structlog.get_logger("pockestrator.health")

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# A round's probes start in groups at least this far apart. Each wake-up of the event loop
# costs the agent about 0.1 ms of CPU on a VM like CI's: a probe alone every 15 ms (500
# services, a 30 s interval) cost 354 us of CPU each, in groups of 20 60 us.
PROBE_GAP = 0.25
HEALTH_LOST = "health_lost"
HEALTH_RECOVERED = "health_recovered"
_TURNS = {
    HEALTH_LOST: "the instance stopped answering /api/health with 200",
    HEALTH_RECOVERED: "the instance answers /api/health with 200 again",
}


async def wait_healthy(
    session: aiohttp.ClientSession,
    port: int,
    deadline: float,
    gave_up: Callable[[], bool] = lambda: False,
) -> bool:
    """Probe until healthy or ``deadline`` (loop time): 20 ms, doubling to 250 ms between
    probes (PocketBase needs about 100 ms to boot; a burst of instances needs CPU more than
    questions). ``session`` is no longer used (``health_probe`` speaks HTTP itself); the
    callers still pass theirs."""
    loop = asyncio.get_running_loop()
    pause = 0.02
    while True:
        remaining = deadline - loop.time()
        if remaining <= 0:
            return False
        if await probe(port, min(2.0, max(0.05, remaining))):
            return True
        if gave_up():
            return False
        await asyncio.sleep(min(pause, max(0.0, deadline - loop.time())))
        pause = min(pause * 2, 0.25)


class BootWatch:
    """Waits for freshly started instances to answer, off the workers.

    A reconcile that started an instance used to hold its worker through the boot
    (about 0.1 s alone, seconds for a burst booting together), so a burst larger than the
    worker pool went through in waves of boots. Now the reconcile probes once and, when
    the instance does not answer yet, hands it to a watch here and finishes (the status
    says ``deploying``). The watch probes (``wait_healthy``) until the instance answers or
    the deadline passes, keeps the verdict and queues the service (``wake``); the
    reconcile that follows takes the verdict and records the status, ``active`` once
    healthy, as before.

    An instance that answers while others of its burst still boot leaves its own
    settings (the agent's superuser, a PocketBase process of its own in a box, and the
    settings calls) until the last boot is over (``after_boots``): on a small host they
    took the CPU the remaining boots needed.
    """

    def __init__(
        self, session: aiohttp.ClientSession, wake: Callable[[str], None], timeout: float = 2.0
    ) -> None:
        self.session = session
        self.wake = wake
        self.timeout = timeout
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._verdicts: dict[str, tuple[bool, datetime]] = {}
        self._after: set[str] = set()  # queued again once no boot is watched

    def after_boots(self, name: str) -> bool:
        """True when other instances' boots are watched now: ``name`` is queued again
        once the last of them is over, and its caller leaves its work until then."""
        if not any(other != name for other in self._tasks):
            return False
        self._after.add(name)
        return True

    def _boots_over(self) -> None:
        if self._tasks or not self._after:
            return
        waiting, self._after = sorted(self._after), set()
        for name in waiting:
            self.wake(name)

    def watching(self, name: str) -> bool:
        """True while a watch of ``name``'s boot runs (it queues the service at its end)."""
        return name in self._tasks

    async def look(
        self, name: str, port: int, deadline: float, *, started: bool
    ) -> tuple[bool, datetime]:
        """Whether the instance answers, and when that was seen; when it does not yet, a
        watch of up to ``deadline`` seconds is started (or left running). ``started``: the
        reconcile just started or restarted it, so what was seen before is of another
        process."""
        if started:
            self.forget(name)
        else:
            verdict = self._verdicts.pop(name, None)
            if verdict is not None:
                return verdict
            if name in self._tasks:
                return False, utc_now()
        healthy = await probe(port, self.timeout)
        if not healthy:
            self._tasks[name] = asyncio.create_task(
                self._watch(name, port, deadline), name=f"boot-{name}"
            )
        return healthy, utc_now()

    async def _watch(self, name: str, port: int, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        healthy = False
        try:
            healthy = await wait_healthy(self.session, port, started + deadline)
            log.info(
                "boot watched",
                service=name,
                healthy=healthy,
                seconds=round(loop.time() - started, 3),
            )
        finally:
            if self._tasks.get(name) is asyncio.current_task():
                del self._tasks[name]
                self._verdicts[name] = (healthy, utc_now())
                self.wake(name)
                self._boots_over()

    def forget(self, name: str) -> None:
        """Drop ``name``'s watch and verdict (a new process, or the service is gone)."""
        self._verdicts.pop(name, None)
        self._after.discard(name)
        task = self._tasks.pop(name, None)
        if task is not None:
            task.cancel()
            self._boots_over()

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


@dataclass
class CpuSample:
    pid: int
    ticks: int
    at: float


def process_age(pid: int) -> float | None:
    """Seconds since ``pid`` started (its ``starttime`` against the uptime); None: gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return max(0.0, uptime - int(fields[19]) / CLOCK_TICKS)
    except (OSError, IndexError, ValueError):
        return None


def process_cpu_ticks(pid: int) -> int | None:
    """utime + stime of ``pid`` in clock ticks, or None when it is gone (read with one
    ``os.read``: it is asked at every probe, and pathlib's open cost three times more)."""
    try:
        descriptor = os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
        try:
            data = os.read(descriptor, 4096)
        finally:
            os.close(descriptor)
        fields = data.rsplit(b")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except (OSError, IndexError, ValueError):
        return None


class CpuMeter:
    """CPU percent of one core per process, from two /proc samples (no CPU accounting here)."""

    def __init__(self) -> None:
        self._last: dict[str, CpuSample] = {}

    def sample(self, name: str, pid: int | None, now: float) -> float | None:
        if pid is None:
            self._last.pop(name, None)
            return None
        ticks = process_cpu_ticks(pid)
        if ticks is None:
            return None
        previous = self._last.get(name)
        self._last[name] = CpuSample(pid, ticks, now)
        if previous is None or previous.pid != pid or now <= previous.at:
            return None
        return round(100.0 * (ticks - previous.ticks) / CLOCK_TICKS / (now - previous.at), 1)


def probe_delays(count: int, interval: float) -> list[float]:
    """When each of a round's ``count`` probes starts: spread over 50 ms a probe, at most a
    quarter of the ``interval``, in as few groups ``PROBE_GAP`` apart as that allows."""
    if count == 0:
        return []
    spread = min(0.05 * count, interval / 4)
    groups = max(1, math.ceil(spread / PROBE_GAP - 1e-9))
    size = math.ceil(count / groups)
    return [(index // size) * spread / groups for index in range(count)]


class HealthProber:
    """Probes running instances on an interval; failures re-queue the service."""

    def __init__(
        self,
        store: Store,
        enqueue: Callable[[str], None],
        interval: float,
        timeout: float,
        failures_before_restart: int,
        boot_grace: float = 15.0,
        metrics: AgentMetrics | None = None,
        asleep: Callable[[str], bool] = lambda _name: False,
        booting: Callable[[str], bool] = lambda name: False,
    ) -> None:
        self.metrics = metrics if metrics is not None else AgentMetrics()
        self.store = store
        # A boot the reconciler watches (``BootWatch``) is its to judge, not a failure.
        self.booting = booting
        self.enqueue = enqueue
        self.interval = interval
        self.timeout = timeout
        self.failures_before_restart = failures_before_restart
        self.boot_grace = boot_grace
        # Asleep or about to be (agent.sleep): a probe would wake it, or race its stop.
        self.asleep = asleep
        self.cpu = CpuMeter()
        self.connections = ProbeConnections()  # one kept alive per instance (health_probe)
        # Told when a probe's verdict differs from the last one recorded (the alert rules).
        self.verdict_changed: Callable[[], None] | None = None

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                started = loop.time()
                await self.probe_all()
                jitter = random.uniform(-0.1, 0.1) * self.interval  # noqa: S311 (not security)
                await asyncio.sleep(max(0.0, self.interval + jitter - (loop.time() - started)))
        finally:
            self.connections.close()

    async def probe_all(self) -> None:
        ports = self.store.running_ports()
        statuses = self.store.all_statuses()
        running = [
            (name, port, status)
            for name, port in sorted(ports.items())
            if (status := statuses.get(name)) is not None
            and status.state in ("active", "error")  # deploying or stopped: the reconciler's
            and not self.asleep(name)
            and not self.booting(name)
        ]
        # An instance not probed now (stopped, asleep, booting, gone) keeps no connection.
        self.connections.retain({port for _name, port, _status in running})
        if not running:
            return
        # Spread the probes over a fraction of the interval instead of a burst, in groups
        # (``probe_delays``), and record the whole round in one transaction.
        delays = probe_delays(len(running), self.interval)
        found = await asyncio.gather(
            *(
                self._probe_one(name, port, status, delay)
                for delay, (name, port, status) in zip(delays, running, strict=True)
            )
        )
        # A service that went to rest while its probe waited was not probed (None).
        results = [result for result in found if result is not None]
        self.store.update_statuses({name: changes for name, changes, _again, _turn in results})
        # A verdict that turned is an event (webhooks and alerts hear of it); a boot's
        # failing probes are not a loss, and a first verdict is not a turn.
        for name, _changes, _again, turn in results:
            if turn is not None:
                self.store.add_event(name, turn, _TURNS[turn], {"port": ports[name]})
        if self.verdict_changed is not None and any(
            changes["health_ok"] != statuses[name].health_ok for name, changes, _, _ in results
        ):
            self.verdict_changed()
        # Only now: the reconciler must see the failure count that asked for it.
        for name, _changes, again, _turn in results:
            if again:
                self.enqueue(name)

    async def _probe_one(
        self,
        name: str,
        port: int,
        status: ServiceStatus,
        delay: float,
    ) -> tuple[str, dict[str, object], bool, str | None] | None:
        """Probe one instance: the status changes to record, whether to reconcile it, and
        the event its verdict turning is (``health_lost``, ``health_recovered``, or None);
        None when it went to rest during the delay (the probe would wake it)."""
        await asyncio.sleep(delay)
        if self.asleep(name):
            return None
        loop = asyncio.get_running_loop()
        started = loop.time()
        healthy = await self.connections.probe(port, self.timeout)
        self.metrics.probed(name, loop.time() - started)
        changes: dict[str, object] = {
            "last_health_check": utc_now(),
            "health_ok": healthy,
            "cpu_percent": self.cpu.sample(name, status.pid, loop.time()),
        }
        turn = None
        if healthy:
            changes["health_failures"] = 0
            again = bool(
                status.state == "error" and status.last_error and "health" in status.last_error
            )
            if status.health_ok is False:
                turn = HEALTH_RECOVERED
        elif self._booting(status):
            again = False  # its boot is the reconciler's to wait for, not a failure
        elif status.health_failures >= self.failures_before_restart:
            # The restart is asked for and not done yet (a loaded host, a long reconcile):
            # the count stays at what asked for it, so the restart says why it happened.
            again = True
        else:
            failures = status.health_failures + 1
            changes["health_failures"] = failures
            log.warning("health probe failed", service=name, failures=failures)
            again = failures >= self.failures_before_restart
            if status.health_ok is True:
                turn = HEALTH_LOST
        return name, changes, again, turn

    def _booting(self, status: ServiceStatus) -> bool:
        """Whether the instance probed is a process still in its first ``boot_grace``.

        Just after a restart (an operator's, or systemd's after a crash) the recorded PID
        is the old, gone one until the reconcile that the restart's signal started records
        the new one: a probe then reached a process younger than any grace, so it counts
        as booting too. Without a known PID the failure counts.
        """
        if status.pid is None:
            return False
        age = process_age(status.pid)
        return age is None or age < self.boot_grace
