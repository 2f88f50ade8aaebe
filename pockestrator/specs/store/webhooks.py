"""Webhooks: where events are delivered, which of them, and the secret that signs them.

The secret is made by the agent (``secrets.token_urlsafe``) and kept in the row, since the
agent needs its plain value to sign every delivery; the database file is root's (0600).
``Webhook`` records carry it for the delivery worker; the API shows it once, in the answer
that created it, and never again (``WebhookView`` has no such field).

The filter is two lists, kinds and services; an empty list matches every value. Which
webhooks an event goes to is decided in the event's own transaction (``outbox``).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from pockestrator.database import Row, parse_iso
from pockestrator.specs.store.base import StorePart
from pockestrator.specs.store.rows import record_of

# Longer than any brute force could guess, short enough to paste into a receiver's config.
SECRET_BYTES = 32
WEBHOOK_ID_PREFIX = "wh_"


@dataclass(frozen=True)
class Webhook:
    id: str
    url: str
    secret: str
    kinds: tuple[str, ...]
    services: tuple[str, ...]
    created_at: datetime
    created_by: str

    def wants(self, service: str, kind: str) -> bool:
        """Whether an event of ``kind`` about ``service`` passes this webhook's filter."""
        return (not self.kinds or kind in self.kinds) and (
            not self.services or service in self.services
        )


@dataclass(frozen=True)
class Delivery:
    """One attempt to deliver one event to one webhook, as it ended."""

    id: int
    webhook_id: str
    event_id: int
    attempt: int
    at: datetime
    duration_ms: float
    status_code: int | None
    error: str | None
    outcome: str


def webhook_of(row: Row) -> Webhook:
    return record_of(Webhook, row)


class Webhooks(StorePart):
    def create_webhook(
        self,
        url: str,
        *,
        kinds: Sequence[str] = (),
        services: Sequence[str] = (),
        created_by: str,
    ) -> Webhook:
        webhook_id = WEBHOOK_ID_PREFIX + secrets.token_hex(8)
        secret = secrets.token_urlsafe(SECRET_BYTES)
        now = self._now()
        with self._database.write() as db:
            row = db.execute(
                "INSERT INTO webhooks (id, url, secret, kinds, services, created_at, created_by)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING *",
                (
                    webhook_id,
                    url,
                    secret,
                    json.dumps(list(kinds)),
                    json.dumps(list(services)),
                    now,
                    created_by,
                ),
            ).fetchone()
        return webhook_of(row)

    def get_webhook(self, webhook_id: str) -> Webhook | None:
        rows = self._database.read("SELECT * FROM webhooks WHERE id = ?", (webhook_id,))
        return webhook_of(rows[0]) if rows else None

    def list_webhooks(self) -> list[Webhook]:
        rows = self._database.read("SELECT * FROM webhooks ORDER BY created_at, id")
        return [webhook_of(row) for row in rows]

    def delete_webhook(self, webhook_id: str) -> bool:
        """Remove the webhook, its undelivered outbox rows and its delivery log."""
        with self._database.write() as db:
            cursor = db.execute("DELETE FROM webhooks WHERE id = ?", (webhook_id,))
            return cursor.rowcount == 1

    def list_deliveries(
        self, webhook_id: str, *, limit: int = 50, before: int | None = None
    ) -> list[Delivery]:
        """The webhook's latest attempts, newest first; ``before`` pages back from an id."""
        rows = self._database.read(
            "SELECT * FROM deliveries WHERE webhook_id = ? AND id < ? ORDER BY id DESC LIMIT ?",
            (webhook_id, before if before is not None else 2**63 - 1, limit),
        )
        return [record_of(Delivery, row) for row in rows]

    def delivery_counts(self, webhook_id: str) -> dict[str, int]:
        """Outbox rows of the webhook by state (pending, sending, delivered, failed)."""
        rows = self._database.read(
            "SELECT state, count(*) FROM outbox WHERE webhook_id = ? GROUP BY state",
            (webhook_id,),
        )
        counts = dict.fromkeys(("pending", "sending", "delivered", "failed"), 0)
        counts.update({row[0]: int(row[1]) for row in rows})
        return counts

    def last_delivery_at(self, webhook_id: str) -> datetime | None:
        rows = self._database.read(
            "SELECT max(at) FROM deliveries WHERE webhook_id = ?", (webhook_id,)
        )
        return parse_iso(rows[0][0]) if rows else None
