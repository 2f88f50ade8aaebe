"""The outbox: each event waiting for each webhook that wants it, until it is acknowledged.

A row is written in the event's own transaction (``fan_out``, called by ``add_event``), so
an event the store has is an event the webhooks will get. Its life:

    pending --claim--> sending --2xx--> delivered
       ^                  |--error, 5xx, timeout--> pending (later) ... --> failed
       '--agent restart---'

``claim_due`` moves due rows to ``sending`` in one write transaction before anything is
sent, so no two senders take the same row, even the agents of a fleet sharing one
PostgreSQL outbox: the write is serialised, the rows are locked (``FOR UPDATE SKIP
LOCKED``), and a row is handed out only when this claim's own update moved it. ``finish``
records the answer and moves the row on, but only from ``sending`` and only for the
attempt that was claimed. A delivered row is never claimed again, so an event a receiver
acknowledged (and the agent recorded) is not sent to it again.

An agent killed between the receiver's 2xx and ``finish`` leaves the row ``sending``. On
one host the next agent puts it back to ``pending`` at start (``release_claims``: no one
else can be sending it). In a fleet another agent may be sending it that very moment, so
a claim instead lapses: a row ``sending`` since before ``lapsed_before`` (longer than a
sender's request may take) is due again. Either way it is sent again with the same
idempotency key, so the receiver can drop it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from pockestrator.database import Connection, iso, parse_iso
from pockestrator.specs.store.base import StorePart
from pockestrator.specs.store.records import Event
from pockestrator.specs.store.rows import record_of
from pockestrator.specs.store.webhooks import Webhook, webhook_of

OUTCOMES = ("delivered", "retry", "failed")


@dataclass(frozen=True)
class Claimed:
    """One outbox row taken for sending: which attempt it is, to whom, and what."""

    outbox_id: int
    attempt: int
    webhook: Webhook
    event: Event


def fan_out(db: Connection, event_id: int, service: str, kind: str, at: str) -> int:
    """Inside the event's transaction: an outbox row for every webhook that wants it."""
    written = 0
    for row in db.execute("SELECT * FROM webhooks").fetchall():
        if webhook_of(row).wants(service, kind):
            db.execute(
                "INSERT INTO outbox (webhook_id, event_id, state, next_attempt_at, updated_at)"
                " VALUES (?, ?, 'pending', ?, ?)",
                (row["id"], event_id, at, at),
            )
            written += 1
    return written


class Outbox(StorePart):
    def claim_due(self, limit: int, lapsed_before: datetime | None = None) -> list[Claimed]:
        """Take up to ``limit`` due rows (oldest due first) for sending, all at once; with
        ``lapsed_before``, rows claimed before then and never finished are due too."""
        now = self._now()
        lapsed = iso(lapsed_before) or ""  # "" is before every stored time: none lapsed
        locking = self._database.lock_rows("outbox")
        with self._database.write() as db:
            rows = db.execute(
                # The locking clause is the backend's own, for a constant table.
                "SELECT outbox.id AS outbox_id, outbox.attempts, outbox.event_id,"  # noqa: S608
                " outbox.state AS o_state, webhooks.*, events.service AS e_service,"
                " events.at AS e_at, events.kind AS e_kind, events.message AS e_message,"
                " events.details AS e_details"
                " FROM outbox JOIN webhooks ON webhooks.id = outbox.webhook_id"
                " JOIN events ON events.id = outbox.event_id"
                " WHERE (outbox.state = 'pending' AND outbox.next_attempt_at <= ?)"
                " OR (outbox.state = 'sending' AND outbox.updated_at < ?)"
                f" ORDER BY outbox.next_attempt_at, outbox.id LIMIT ?{locking}",
                (now, lapsed, limit),
            ).fetchall()
            rows = [
                row
                for row in rows
                if db.execute(
                    "UPDATE outbox SET state = 'sending', attempts = attempts + 1,"
                    " updated_at = ? WHERE id = ? AND state = ? AND attempts = ?",
                    (now, row["outbox_id"], row["o_state"], row["attempts"]),
                ).rowcount
                == 1
            ]
        return [
            Claimed(
                outbox_id=row["outbox_id"],
                attempt=row["attempts"] + 1,
                webhook=webhook_of(row),
                event=record_of(Event, row, "e_", id=row["event_id"]),
            )
            for row in rows
        ]

    def finish(
        self,
        claimed: Claimed,
        outcome: str,
        *,
        started: datetime,
        duration_ms: float,
        status_code: int | None,
        error: str | None,
        retry_at: datetime | None = None,
    ) -> bool:
        """Record one attempt and move its row on (delivered, pending again, or failed).

        False when the row is no longer ``sending`` this attempt (its webhook was deleted
        meanwhile, or the claim lapsed and another sender took it).
        """
        if outcome not in OUTCOMES:
            raise ValueError(f"unknown outcome {outcome!r}")
        if (outcome == "retry") != (retry_at is not None):
            raise ValueError("a retry, and only a retry, has a time")
        now = self._now()
        state = "pending" if outcome == "retry" else outcome
        with self._database.write() as db:
            cursor = db.execute(
                "UPDATE outbox SET state = ?, next_attempt_at = coalesce(?, next_attempt_at),"
                " updated_at = ? WHERE id = ? AND state = 'sending' AND attempts = ?",
                (state, iso(retry_at), now, claimed.outbox_id, claimed.attempt),
            )
            if cursor.rowcount != 1:
                return False
            db.execute(
                "INSERT INTO deliveries (outbox_id, webhook_id, event_id, attempt, at,"
                " duration_ms, status_code, error, outcome) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    claimed.outbox_id,
                    claimed.webhook.id,
                    claimed.event.id,
                    claimed.attempt,
                    iso(started),
                    round(duration_ms, 3),
                    status_code,
                    error,
                    outcome,
                ),
            )
        return True

    def release_claims(self) -> int:
        """At start on one host: rows a previous agent claimed and never finished are due
        again (never in a fleet, where another agent may be sending them: they lapse)."""
        with self._database.write() as db:
            cursor = db.execute(
                "UPDATE outbox SET state = 'pending', updated_at = ? WHERE state = 'sending'",
                (self._now(),),
            )
            return cursor.rowcount

    def prune_deliveries(self, before: datetime) -> int:
        """Forget finished rows (delivered, failed) and attempts older than ``before``, so
        that the outbox and the log stay as large as the recent past, not all of it."""
        cutoff = iso(before)
        with self._database.write() as db:
            db.execute("DELETE FROM deliveries WHERE at < ?", (cutoff,))
            cursor = db.execute(
                "DELETE FROM outbox WHERE state IN ('delivered', 'failed') AND updated_at < ?",
                (cutoff,),
            )
            return cursor.rowcount

    def next_due_at(self, lapse: timedelta | None = None) -> datetime | None:
        """When the soonest pending row is due, or (given how long a claim lasts) the
        soonest claim lapses; None: nothing is pending or claimed."""
        rows = self._database.read(
            "SELECT min(CASE WHEN state = 'pending' THEN next_attempt_at END),"
            " min(CASE WHEN state = 'sending' THEN updated_at END)"
            " FROM outbox WHERE state IN ('pending', 'sending')"
        )
        due = parse_iso(rows[0][0]) if rows else None
        claimed = parse_iso(rows[0][1]) if rows and lapse is not None else None
        if claimed is None or lapse is None:
            return due
        return min(claimed + lapse, due) if due is not None else claimed + lapse

    def outbox_state(self, webhook_id: str, event_id: int) -> tuple[str, int] | None:
        """The state and attempts of one event's row for one webhook."""
        rows = self._database.read(
            "SELECT state, attempts FROM outbox WHERE webhook_id = ? AND event_id = ?",
            (webhook_id, event_id),
        )
        return (rows[0]["state"], int(rows[0]["attempts"])) if rows else None
