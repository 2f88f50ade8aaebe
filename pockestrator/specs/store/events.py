"""The event log of each service: what the agent did and why, newest first, append-only.

Events are history, so the database refuses to rewrite one (a trigger aborts any
``UPDATE``); they are kept by service name and outlive the service's row, so the reason a
service went away can still be read. ``details`` is JSON (values it cannot encode become
text).
"""

from __future__ import annotations

import json
from typing import Any

from pockestrator.database import iso, parse_stored_time
from pockestrator.specs.store.base import StorePart
from pockestrator.specs.store.records import Event

# Larger than any event id; the first page of ``list_events`` pages back from here.
_NEWEST = 2**62


class Events(StorePart):
    def add_event(
        self, service: str, kind: str, message: str, details: dict[str, Any] | None = None
    ) -> Event:
        at = self._clock.now()
        payload = json.dumps(details or {}, sort_keys=True, default=str)
        with self._database.write() as db:
            cursor = db.execute(
                "INSERT INTO events (service, at, kind, message, details) VALUES (?, ?, ?, ?, ?) "
                "RETURNING id",
                (service, iso(at), kind, message, payload),
            )
            event_id = int(cursor.fetchone()[0])
        return Event(event_id, service, at, kind, message, json.loads(payload))

    def list_events(
        self, service: str, *, limit: int = 100, before: int | None = None
    ) -> list[Event]:
        """Newest first; ``before`` pages back from an event id."""
        rows = self._database.read(
            "SELECT * FROM events WHERE service = ? AND id < ? ORDER BY id DESC LIMIT ?",
            (service, before if before is not None else _NEWEST, limit),
        )
        return [
            Event(
                row["id"],
                row["service"],
                parse_stored_time(row["at"]),
                row["kind"],
                row["message"],
                json.loads(row["details"]),
            )
            for row in rows
        ]

    def count_events(self, service: str) -> int:
        rows = self._database.read("SELECT count(*) FROM events WHERE service = ?", (service,))
        return int(rows[0][0])
