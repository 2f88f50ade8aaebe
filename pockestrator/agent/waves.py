"""Batching of global operations (systemd daemon-reload, Caddy validate+reload) across reconciles.

Each reconcile runs on its own, but some steps are global: one ``Reload()`` re-reads every
unit file and one Caddy reload applies every site. Issued per service, 50 new services
would cost 50 of each. Instead a reconcile *parks* at a barrier ("I need a daemon-reload",
"here is my site snippet") and the coordinator fires each barrier once, for everybody parked
at it, at the moment when every active reconcile is either parked or finished and no more
work is ready to start. That is a wave: all the changes that arrived together.

Waiting for "every active reconcile is parked" cannot deadlock: being parked at any barrier
counts, and each firing runs the first registered barrier that has waiters (daemon-reload
before Caddy) and releases its waiters at once; the next barrier fires when everybody has
parked again, so the reconciles released by the first can join it.

A reconcile past its global steps (waiting for its instance's health, applying its
settings) tells the coordinator so (``step_aside``): it no longer holds the next wave, so a
lone change that arrives meanwhile is not kept waiting for it. Should it park again (a
deploy's switch), it joins again for as long as it is active.

It could stall, though: a reconcile that stays active without parking (a download, the
health wait of an instance that never comes up) and re-queues itself (its own unit's
signals) would hold every other service's wave for as long as that goes on. So a wave also
fires ``max_wait`` seconds after its first reconcile parked, settled or not; a burst that
settles sooner is still one wave.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import structlog

log = structlog.get_logger("pockestrator.waves")

Request = TypeVar("Request")
Outcome = TypeVar("Outcome")


@dataclass
class _Participant:
    """One reconcile's membership: counted among the active ones while ``counted``."""

    counted: bool = True


# The participant of the reconcile running in this task (None outside one).
_CURRENT: ContextVar[_Participant | None] = ContextVar("wave_participant", default=None)


@dataclass
class Barrier(Generic[Request, Outcome]):
    """Waiters parked for one global operation, with what each contributes."""

    name: str
    run: Callable[[Mapping[str, Request]], Awaitable[Mapping[str, Outcome]]]
    waiting: dict[str, tuple[Request, asyncio.Future[Outcome]]] = field(default_factory=dict)
    fired: int = 0


class WaveCoordinator:
    """Counts active reconciles and fires barriers when the wave has settled."""

    def __init__(
        self,
        ready_work: Callable[[], bool] = lambda: False,
        max_wait: float = 5.0,
        parked: Callable[[], None] = lambda: None,
    ) -> None:
        # `ready_work` says whether more keys are ready for a worker: if so, wait for
        # them to join rather than fire a half wave. `parked` is told each time a
        # reconcile parks (the daemon lends a worker for the next key).
        self._ready_work = ready_work
        self._on_parked = parked
        self.max_wait = max_wait
        self._active = 0
        self._parked = 0
        self._barriers: list[Barrier[object, object]] = []
        self._firing = False
        self._scheduled = False
        self._deadline: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None

    def barrier(
        self,
        name: str,
        run: Callable[[Mapping[str, Request]], Awaitable[Mapping[str, Outcome]]],
    ) -> Barrier[Request, Outcome]:
        """Register a global operation; barriers fire in registration order."""
        barrier: Barrier[Request, Outcome] = Barrier(name, run)
        self._barriers.append(barrier)  # type: ignore[arg-type]
        return barrier

    @asynccontextmanager
    async def participant(self) -> AsyncIterator[None]:
        """Wrap one reconcile: the coordinator waits for it before firing a wave."""
        member = _Participant()
        token = _CURRENT.set(member)
        self._active += 1
        try:
            yield
        finally:
            _CURRENT.reset(token)
            if member.counted:
                self._active -= 1
            self._maybe_fire()

    def step_aside(self) -> None:
        """The current reconcile will not park for a while (it waits for a boot, or works
        on its instance alone): the next wave need not wait for it."""
        member = _CURRENT.get()
        if member is not None and member.counted:
            member.counted = False
            self._active -= 1
            self._maybe_fire()

    def _rejoin(self) -> None:
        member = _CURRENT.get()
        if member is not None and not member.counted:
            member.counted = True
            self._active += 1

    async def park(self, barrier: Barrier[Request, Outcome], key: str, request: Request) -> Outcome:
        """Contribute ``request`` for ``key`` and wait until the barrier fires."""
        self._rejoin()
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        previous = barrier.waiting.get(key)
        if previous is not None and not previous[1].done():
            previous[1].cancel()
        barrier.waiting[key] = (request, future)
        self._parked += 1
        self._on_parked()
        self._arm_deadline()
        try:
            self._maybe_fire()
            return await future
        finally:
            self._parked -= 1
            current = barrier.waiting.get(key)
            if current is not None and current[1] is future:
                del barrier.waiting[key]

    def nudge(self) -> None:
        """Re-check the firing condition (e.g. after the queue ran dry)."""
        self._maybe_fire()

    @property
    def parked(self) -> int:
        """How many reconciles wait at a barrier now."""
        return self._parked

    def fired(self, name: str) -> int:
        """How many times the named barrier has fired (for tests and benchmarks)."""
        return sum(b.fired for b in self._barriers if b.name == name)

    def _settled(self) -> bool:
        return (
            self._parked >= self._active
            and any(b.waiting for b in self._barriers)
            and not self._ready_work()
        )

    def _maybe_fire(self) -> None:
        if self._firing or self._scheduled or not self._settled():
            return
        # Fire on the next loop turn, so that reconciles woken in this turn can join.
        self._scheduled = True
        asyncio.get_running_loop().call_soon(self._start_firing)

    def _start_firing(self) -> None:
        self._scheduled = False
        if self._firing or not self._settled():
            return
        self._begin_firing()

    def _begin_firing(self) -> None:
        self._firing = True
        self._task = asyncio.get_running_loop().create_task(self._fire())

    def _arm_deadline(self) -> None:
        """Start the clock of the wave at its first waiter (see the module docstring)."""
        if self._deadline is None:
            loop = asyncio.get_running_loop()
            self._deadline = loop.call_later(self.max_wait, self._deadline_passed)

    def _deadline_passed(self) -> None:
        self._deadline = None
        if self._firing or not any(b.waiting for b in self._barriers):
            return  # a firing in progress re-arms the clock for whoever still waits
        log.info(  # pragma: no mutate block (a log line, not a decision)
            "wave fired without waiting for every reconcile",
            active=self._active,
            parked=self._parked,
            after=self.max_wait,
        )
        self._begin_firing()

    async def _fire(self) -> None:
        """Run the first barrier that has waiters; later ones fire once all park again."""
        try:
            barrier = next(b for b in self._barriers if b.waiting)
            batch = dict(barrier.waiting)
            barrier.waiting.clear()
            requests = {key: request for key, (request, _future) in batch.items()}
            barrier.fired += 1
            try:
                outcomes = await barrier.run(requests)
            except Exception as exc:
                log.error("wave operation failed", operation=barrier.name, error=str(exc))
                for _request, future in batch.values():
                    if not future.done():
                        future.set_exception(exc)
            else:
                for key, (_request, future) in batch.items():
                    if not future.done():
                        future.set_result(outcomes[key])
        finally:
            self._firing = False
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None
            if any(b.waiting for b in self._barriers):
                self._arm_deadline()
            self._maybe_fire()
