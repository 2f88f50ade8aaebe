"""The delivery worker: sends each outbox row to its webhook, signed, until it is acknowledged.

Event-driven: the store calls ``wake`` after an event's commit that queued outbox rows, and
a finished delivery wakes the loop too (a slot is free). The only timer is the next retry's:
the loop sleeps until the soonest pending row is due, or until it is woken. At most
``webhook_concurrency`` deliveries are in flight, each in its own task with its own
timeout, so a slow receiver holds a slot, never a reconcile (the reconciler only writes
the event).

Each row is claimed in the store before it is sent (``Outbox.claim_due``) and marked after
the answer (``Outbox.finish``); at start on one host the rows a killed agent left claimed
are released; in a fleet, where the agents share the outbox and another may be sending a
row, a claim older than a request may take lapses instead (``claim_lapse``). So an event is
sent again only when no answer was recorded for it: a receiver that answered 2xx to an
agent killed before the mark gets it once more, with the same ``Idempotency-Key``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import aiohttp
import structlog

from pockestrator import __version__
from pockestrator.agent.backoff import Backoff, worth_retrying
from pockestrator.agent.signatures import (
    ATTEMPT_HEADER,
    EVENT_HEADER,
    IDEMPOTENCY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    sign,
)
from pockestrator.clock import Clock
from pockestrator.config import AgentConfig
from pockestrator.database import iso
from pockestrator.specs.store import NO_SERVICE, Claimed, Event, Store
from pockestrator.waits import woken

log = structlog.get_logger("pockestrator.webhooks")

# What of a receiver's answer is kept in the delivery log (it is shown in the dashboard).
ERROR_TEXT_MAX = 300
MIN_SLEEP = 0.05
# Finished deliveries and their attempts are kept this long, and pruned every so many.
KEEP_DELIVERIES = timedelta(days=7)
# A claim lapses this long after a sender's request would have timed out: by then its
# sender has recorded the answer, or it is gone (killed, or its host lost).
CLAIM_MARGIN = timedelta(seconds=30)
PRUNE_EVERY = 500


def delivery_body(event: Event) -> bytes:
    """The JSON a receiver gets: the idempotency key (the event's id) and the event."""
    document: dict[str, Any] = {
        "idempotency_key": str(event.id),
        "event": {
            "id": event.id,
            "service": event.service if event.service != NO_SERVICE else None,
            "kind": event.kind,
            "message": event.message,
            "details": event.details,
            "at": iso(event.at),
        },
    }
    return json.dumps(document, separators=(",", ":"), sort_keys=True).encode()


def delivery_headers(claimed: Claimed, body: bytes, timestamp: int) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "User-Agent": f"pockestrator/{__version__}",
        IDEMPOTENCY_HEADER: str(claimed.event.id),
        EVENT_HEADER: claimed.event.kind,
        ATTEMPT_HEADER: str(claimed.attempt),
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: sign(claimed.webhook.secret, timestamp, body),
    }


class WebhookDispatcher:
    def __init__(self, store: Store, config: Callable[[], AgentConfig], clock: Clock) -> None:
        self.store = store
        self.config = config
        self.clock = clock
        self._wakeup = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._inflight: set[asyncio.Task[None]] = set()
        self._finished = 0
        self.session: aiohttp.ClientSession | None = None

    def wake(self, _event: Event | None = None, queued: int = 1) -> None:
        """New outbox rows (from any thread): look at the outbox again."""
        if queued and self._loop is not None:
            self._loop.call_soon_threadsafe(self._wakeup.set)

    def _backoff(self) -> Backoff:
        config = self.config()
        return Backoff(
            config.webhook_retry_base, config.webhook_retry_cap, config.webhook_max_attempts
        )

    def claim_lapse(self) -> timedelta:
        """How long a claimed row is left to its sender before it is due again."""
        return timedelta(seconds=self.config().webhook_timeout) + CLAIM_MARGIN

    async def run(self) -> None:
        # Its own session: no cookie jar (nothing a receiver sets is sent anywhere, nor
        # what an instance's probe answer set), and its connections apart from the probes'.
        async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
            self.session = session
            await self._run()

    async def _run(self) -> None:
        self._loop = asyncio.get_running_loop()
        stop_listening = self.store.listen_events(self.wake)
        self.store.prune_deliveries(self.clock.now() - KEEP_DELIVERIES)
        released = 0 if self.store.shared else self.store.release_claims()
        if released:
            log.warning("deliveries an earlier agent left unfinished are due again", rows=released)
        try:
            while True:
                self._wakeup.clear()
                free = self.config().webhook_concurrency - len(self._inflight)
                if free > 0:
                    lapsed_before = self.clock.now() - self.claim_lapse()
                    for claimed in self.store.claim_due(free, lapsed_before):
                        task = asyncio.create_task(self._deliver(claimed))
                        self._inflight.add(task)
                        task.add_done_callback(self._done)
                await self._sleep(free > 0)
        finally:
            stop_listening()
            for task in list(self._inflight):
                task.cancel()
            await asyncio.gather(*self._inflight, return_exceptions=True)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        self._wakeup.set()

    async def _sleep(self, may_claim: bool) -> None:
        """Until woken, or (with a free slot) until the soonest pending row is due."""
        timeout = None
        if may_claim:
            due = self.store.next_due_at(self.claim_lapse())
            if due is not None:
                # A floor, so that a row due but not claimable can never make this spin.
                timeout = max(MIN_SLEEP, (due - self.clock.now()).total_seconds())
        await woken(self._wakeup, timeout)

    async def _deliver(self, claimed: Claimed) -> None:
        config = self.config()
        assert self.session is not None
        body = delivery_body(claimed.event)
        started = self.clock.now()
        began = time.monotonic()
        status: int | None = None
        error: str | None = None
        try:
            async with self.session.post(
                claimed.webhook.url,
                data=body,
                headers=delivery_headers(claimed, body, int(started.timestamp())),
                timeout=aiohttp.ClientTimeout(total=config.webhook_timeout),
                allow_redirects=False,
            ) as response:
                status = response.status
                if not 200 <= status < 300:
                    error = (await response.content.read(ERROR_TEXT_MAX)).decode("utf-8", "replace")
        except TimeoutError:
            error = f"no answer within {config.webhook_timeout:g} s"
        except (aiohttp.ClientError, OSError) as exc:
            error = f"{type(exc).__name__}: {exc}"[:ERROR_TEXT_MAX]
        duration_ms = (time.monotonic() - began) * 1000
        self._record(claimed, status, error, started, duration_ms)

    def _record(
        self,
        claimed: Claimed,
        status: int | None,
        error: str | None,
        started: Any,
        duration_ms: float,
    ) -> None:
        retry_at = None
        if status is not None and 200 <= status < 300:
            outcome = "delivered"
        else:
            delay = self._backoff().delay(claimed.attempt) if worth_retrying(status) else None
            if delay is None:
                outcome = "failed"
            else:
                outcome = "retry"
                retry_at = self.clock.now() + timedelta(seconds=delay)
        self.store.finish(
            claimed,
            outcome,
            started=started,
            duration_ms=duration_ms,
            status_code=status,
            error=error,
            retry_at=retry_at,
        )
        self._finished += 1
        if self._finished % PRUNE_EVERY == 0:
            self.store.prune_deliveries(self.clock.now() - KEEP_DELIVERIES)
        log.info(
            "webhook delivery",
            webhook_id=claimed.webhook.id,
            event_id=claimed.event.id,
            attempt=claimed.attempt,
            status=status,
            outcome=outcome,
        )
