"""The agent's workers: each takes a key from the work queue and runs ``reconcile(name)``.

A pool of ``workers`` tasks bounds the reconciles that run at a time; one parked at a
wave's barrier lends a worker for the next queued key, so a burst of any size reaches one
wave (``_lend_a_worker``). A failure is retried with the queue's backoff, a terminal one
is recorded and not retried; ``wait_reconciled`` lets the API wait for a reconcile that
starts after its write, and the watchdog is withheld while one is stuck.
``agent.daemon.Agent`` is a ``WorkerPool``; its parts are made in ``Agent.start``.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections import defaultdict

import structlog

from pockestrator.agent.reconciler import Reconciler, TerminalError
from pockestrator.agent.waves import WaveCoordinator
from pockestrator.agent.workqueue import ShutDown, WorkQueue
from pockestrator.config import AgentConfig
from pockestrator.specs.store import Store
from pockestrator.telemetry import AgentMetrics, step_of

log = structlog.get_logger("pockestrator.agent")


class WorkerPool:
    """The workers and the waiters of reconciles: the part of the agent that runs work."""

    config: AgentConfig
    queue: WorkQueue
    metrics: AgentMetrics
    store: Store
    coordinator: WaveCoordinator
    reconciler: Reconciler

    def __init__(self) -> None:
        self._workers: list[asyncio.Task[None]] = []
        # Workers lent while reconciles wait at a wave's barrier (``_lend_a_worker``).
        self._lent: set[asyncio.Task[None]] = set()
        self._next_index = 0
        self._busy: dict[int, tuple[str, float]] = {}
        self._started_runs: defaultdict[str, int] = defaultdict(int)
        self._finished_runs: defaultdict[str, int] = defaultdict(int)
        self._run_waiters: defaultdict[str, list[tuple[int, asyncio.Future[None]]]] = defaultdict(
            list
        )

    def enqueue(self, name: str) -> None:
        self.queue.add(name)

    def enqueue_many(self, names: set[str] | list[str]) -> None:
        for name in sorted(names):
            self.queue.add(name)

    def queue_depth(self) -> int:
        return len(self.queue)

    def _work_is_waiting(self) -> bool:
        """Keys are queued and an idle worker (lent now if the pool is all parked) will
        take one: the wave waits for it to join."""
        if len(self.queue) == 0:
            return False
        self._lend_a_worker()
        return len(self._busy) < len(self._workers) + len(self._lent)

    def _lend_a_worker(self) -> None:
        """A reconcile parked at a wave's barrier: lend a worker for the next queued key.

        Parked reconciles hold their workers, so with only the pool a burst larger than
        ``workers`` went through in waves of ``workers``. A lent worker takes keys while
        any are queued and then ends, so a burst of any size reaches one wave; the pool
        still bounds the reconciles that run (not park) at a time.
        """
        if not self._workers or len(self.queue) == 0:
            return
        if len(self._busy) - self.coordinator.parked >= len(self._workers):
            return
        if len(self._busy) < len(self._workers) + len(self._lent):
            return  # an idle worker will take it
        index = self._next_index
        self._next_index += 1
        task = asyncio.create_task(self._worker(index, lent=True), name=f"worker-{index}")
        self._lent.add(task)
        task.add_done_callback(self._lent.discard)

    async def _worker(self, index: int, *, lent: bool = False) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if lent and len(self.queue) == 0:
                return
            try:
                name = await self.queue.get()
            except ShutDown:
                return
            self._busy[index] = (name, loop.time())
            self._started_runs[name] += 1
            run = self._started_runs[name]
            started = loop.time()
            try:
                result = await self.reconciler.reconcile(name)
            except TerminalError as exc:
                self._count_failure(exc)
                self.queue.forget(name)
                log.error("reconcile failed for good", service=name, error=str(exc))
                self._record_failure(name, str(exc))
            except Exception as exc:
                self._count_failure(exc)
                delay = self.queue.add_rate_limited(name)
                log.warning(
                    "reconcile failed; will retry",
                    service=name,
                    error=str(exc),
                    retry_in=round(delay, 2),
                    exc_info=not isinstance(exc, OSError),
                )
                self._record_failure(name, str(exc))
            else:
                self.queue.forget(name)
                if result.requeue_after is not None:
                    self.queue.add_after(name, result.requeue_after)
            finally:
                self.metrics.reconcile_seconds.observe(loop.time() - started)
                del self._busy[index]
                self.queue.done(name)
                self._finished(name, run)
                self.coordinator.nudge()

    def _count_failure(self, exc: BaseException) -> None:
        """One failed reconcile, under the plan step that raised (``observe`` before any)."""
        self.metrics.reconcile_errors.labels(step_of(exc) or "observe").inc()

    def _record_failure(self, name: str, message: str) -> None:
        """Put a failed reconcile's reason in the status, if the store takes it: a store
        that cannot be written (a full disk) must not end the worker with it."""
        try:
            if self.store.get_service(name) is not None:
                self.store.update_status(name, state="error", last_error=message[:2000])
        except sqlite3.Error as exc:
            log.error("the failure cannot be recorded", service=name, error=str(exc))

    def _finished(self, name: str, run: int) -> None:
        self._finished_runs[name] = max(self._finished_runs[name], run)
        if self.reconciler.booting(name):
            return  # converged once the boot is over: the reconcile after it tells waiters
        waiters = self._run_waiters.get(name, [])
        remaining = []
        for threshold, future in waiters:
            if run > threshold:
                if not future.done():
                    future.set_result(None)
            else:
                remaining.append((threshold, future))
        if remaining:
            self._run_waiters[name] = remaining
        else:
            self._run_waiters.pop(name, None)

    async def wait_reconciled(self, name: str, timeout: float) -> bool:
        """Enqueue ``name`` and wait until a reconcile that started after now has finished."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._run_waiters[name].append((self._started_runs[name], future))
        self.enqueue(name)
        try:
            await asyncio.wait_for(future, timeout)
        except TimeoutError:
            return False
        return True

    def _making_progress(self) -> bool:
        loop = asyncio.get_running_loop()
        stuck_after = self.config.download_timeout + self.config.upgrade_health_deadline + 120.0
        stuck = sorted(
            name for name, since in self._busy.values() if loop.time() - since > stuck_after
        )
        if stuck:
            log.error("a reconcile is stuck; withholding the watchdog ping", services=stuck)
        return not stuck
