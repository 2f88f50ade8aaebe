"""The event log of each service: what the agent did and why, newest first, append-only.

Events are history, so the database refuses to rewrite one (a trigger aborts any
``UPDATE``); they are kept by service name and outlive the service's row, so the reason a
service went away can still be read. ``details`` is JSON (values it cannot encode become
text).

Each event is written with its outbox rows, one per webhook that wants it, in one
transaction (``outbox.fan_out``): no event is recorded and then lost to the webhooks. After
the commit the listeners hear of it (the delivery worker, the open event streams); a
listener may be called from any thread, so it only wakes its own loop.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import structlog

from pockestrator.database import iso
from pockestrator.specs.store.base import StorePart
from pockestrator.specs.store.outbox import fan_out
from pockestrator.specs.store.records import Event
from pockestrator.specs.store.rows import record_of

log = structlog.get_logger("pockestrator.store")

# Larger than any event id; the first page of ``list_events`` pages back from here.
_NEWEST = 2**62
# The service of the events no service has (a webhook's test event): never a project name.
NO_SERVICE = ""
TEST_KIND = "webhook_test"

# Told of each new event and of how many outbox rows came with it.
EventListener = Callable[[Event, int], None]


class Events(StorePart):
    _event_listeners: list[EventListener]

    def add_event(
        self, service: str, kind: str, message: str, details: dict[str, Any] | None = None
    ) -> Event:
        return self._record(service, kind, message, details, webhook_id=None)

    def add_test_event(self, webhook_id: str) -> Event:
        """An event for one webhook only ("send test event"), of no service."""
        return self._record(
            NO_SERVICE,
            TEST_KIND,
            "a test event, sent on request",
            {"webhook_id": webhook_id},
            webhook_id=webhook_id,
        )

    def _record(
        self,
        service: str,
        kind: str,
        message: str,
        details: dict[str, Any] | None,
        *,
        webhook_id: str | None,
    ) -> Event:
        at = self._clock.now()
        stamp = iso(at)
        payload = json.dumps(details or {}, sort_keys=True, default=str)
        with self._database.write() as db:
            cursor = db.execute(
                "INSERT INTO events (service, at, kind, message, details) VALUES (?, ?, ?, ?, ?) "
                "RETURNING id",
                (service, stamp, kind, message, payload),
            )
            event_id = int(cursor.fetchone()[0])
            if webhook_id is None:
                queued = fan_out(db, event_id, service, kind, stamp or "")
            else:
                db.execute(
                    "INSERT INTO outbox (webhook_id, event_id, state, next_attempt_at,"
                    " updated_at) VALUES (?, ?, 'pending', ?, ?)",
                    (webhook_id, event_id, stamp, stamp),
                )
                queued = 1
        self.changes.record([service])  # the service's history moved: its page shows it
        event = Event(event_id, service, at, kind, message, json.loads(payload))
        for listener in list(self._event_listeners):
            try:
                listener(event, queued)
            except Exception:  # a listener's bug must not fail the write it heard of
                log.exception("an event listener failed", event_id=event_id)
        return event

    def listen_events(self, listener: EventListener) -> Callable[[], None]:
        """Call ``listener`` after each new event's commit; returns the way to stop."""
        self._event_listeners.append(listener)

        def stop() -> None:
            if listener in self._event_listeners:
                self._event_listeners.remove(listener)

        return stop

    def events_after(
        self, after: int, *, service: str | None = None, limit: int = 100
    ) -> list[Event]:
        """Oldest first: the events after id ``after`` (all services', or ``service``'s)."""
        if service is None:
            rows = self._database.read(
                "SELECT * FROM events WHERE id > ? ORDER BY id LIMIT ?", (after, limit)
            )
        else:
            rows = self._database.read(
                "SELECT * FROM events WHERE service = ? AND id > ? ORDER BY id LIMIT ?",
                (service, after, limit),
            )
        return [_event_of(row) for row in rows]

    def last_event_id(self) -> int:
        rows = self._database.read("SELECT coalesce(max(id), 0) FROM events")
        return int(rows[0][0])

    def list_all_events(self, *, limit: int = 100, before: int | None = None) -> list[Event]:
        """Every service's events, newest first; ``before`` pages back from an event id."""
        rows = self._database.read(
            "SELECT * FROM events WHERE id < ? ORDER BY id DESC LIMIT ?",
            (before if before is not None else _NEWEST, limit),
        )
        return [_event_of(row) for row in rows]

    def count_all_events(self) -> int:
        return int(self._database.read("SELECT count(*) FROM events")[0][0])

    def list_events(
        self, service: str, *, limit: int = 100, before: int | None = None
    ) -> list[Event]:
        """Newest first; ``before`` pages back from an event id."""
        rows = self._database.read(
            "SELECT * FROM events WHERE service = ? AND id < ? ORDER BY id DESC LIMIT ?",
            (service, before if before is not None else _NEWEST, limit),
        )
        return [_event_of(row) for row in rows]

    def alert_events(self) -> list[Event]:
        """Every ``alert_firing`` and ``alert_resolved`` event (any service), oldest first:
        what the alert rules read back at start, to know which of their alerts still fire."""
        rows = self._database.read(
            "SELECT * FROM events WHERE kind IN ('alert_firing', 'alert_resolved') ORDER BY id"
        )
        return [_event_of(row) for row in rows]

    def count_events(self, service: str) -> int:
        rows = self._database.read("SELECT count(*) FROM events WHERE service = ?", (service,))
        return int(rows[0][0])


def _event_of(row: Any) -> Event:
    return record_of(Event, row)
