"""Observed status: what the reconciler and the health prober last saw of each service.

Status is kept per name, not per service row, so that it survives a spec being replaced
(and a spec moving between files). A row is written with the service (``deploying``) and
removed by ``finish_deletion`` once the host is clean; a probe round never brings back the
row of a service deleted meanwhile. Callers set fields by name (``update_status(name,
pid=42)``), checked against ``STATUS_FIELDS``, so a typo fails loudly instead of being
stored.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pockestrator.database import Connection, Row, iso, parse_iso
from pockestrator.specs.store.base import StorePart
from pockestrator.specs.store.moves import note_served
from pockestrator.specs.store.records import STATUS_FIELDS, STATUS_STATES, ServiceStatus
from pockestrator.specs.store.rows import record_of

# Fields a steady service rewrites on every probe round: a write of only these (with the
# values of the others unchanged) is no change to tell the watches about, or every open
# watch would hear of every service every health interval.
QUIET_FIELDS = frozenset(
    {
        "last_health_check",
        "cpu_usage_nsec",
        "cpu_percent",
        "memory_bytes",
        "settings_checked_at",
        "certificate_checked_at",
    }
)


def insert_first_status(db: Connection, name: str, now: str) -> None:
    """The ``deploying`` row of a new service (an existing row, kept by name, stays)."""
    db.execute(
        "INSERT INTO status (name, state, updated_at) VALUES (?, 'deploying', ?) "
        "ON CONFLICT(name) DO NOTHING",
        (name, now),
    )


class Statuses(StorePart):
    def get_status(self, name: str) -> ServiceStatus | None:
        rows = self._database.read("SELECT * FROM status WHERE name = ?", (name,))
        return _status(rows[0]) if rows else None

    def all_statuses(self) -> dict[str, ServiceStatus]:
        return {row["name"]: _status(row) for row in self._database.read("SELECT * FROM status")}

    def states(self) -> dict[str, tuple[str, bool | None]]:
        """Each service's state and last health verdict: ``all_statuses`` in two columns,
        for a metrics scrape of hundreds of services (a sixth of the cost)."""
        rows = self._database.read("SELECT name, state, health_ok FROM status")
        return {
            str(name): (str(state), None if healthy is None else bool(healthy))
            for name, state, healthy in rows
        }

    def alert_facts(self) -> dict[str, tuple[bool, str | None, datetime | None]]:
        """What the alert rules read of each service besides its state, from columns: its
        own backup policy's presence and schedule (no policy: the agent's default applies)
        and the end of the certificate last recorded for it."""
        policy = self._database.json_text("s.spec", "backups")
        schedule_of = self._database.json_text("s.spec", "backups.schedule")
        rows = self._database.read(
            # The expressions are the backend's own, for constant keys.
            f"SELECT s.name, {policy} IS NOT NULL, {schedule_of},"  # noqa: S608
            " st.certificate_not_after FROM services s LEFT JOIN status st ON st.name = s.name"
        )
        return {
            str(name): (
                bool(kind),
                str(schedule) if schedule is not None else None,
                parse_iso(ends),
            )
            for name, kind, schedule, ends in rows
        }

    def update_status(self, name: str, **changes: Any) -> ServiceStatus:
        """Set some status fields of ``name`` (creating the row); returns the new status."""
        with self._database.write() as db:
            noticed = self._upsert_status(db, name, changes)
            status = _status(db.execute("SELECT * FROM status WHERE name = ?", (name,)).fetchone())
        if noticed:
            self.changes.record([name])
        return status

    def update_statuses(self, changes_by_name: Mapping[str, Mapping[str, Any]]) -> None:
        """``update_status`` for many services in one transaction (a round of probes).

        A service deleted while its probe ran is skipped: a status row written after
        ``finish_deletion`` would outlive it and greet a new service of the same name.
        """
        written: list[str] = []
        with self._database.write() as db:
            for name, changes in changes_by_name.items():
                if db.execute(
                    "SELECT 1 FROM services WHERE name = ?", (name,)
                ).fetchone() and self._upsert_status(db, name, changes):
                    written.append(name)
        self.changes.record(written)

    def _upsert_status(self, db: Connection, name: str, changes: Mapping[str, Any]) -> bool:
        """Write ``changes``; True when a field outside ``QUIET_FIELDS`` took a new value
        (or the row is new): a change the watches hear of."""
        unknown = set(changes) - set(STATUS_FIELDS)
        if unknown:
            raise ValueError(f"unknown status fields: {sorted(unknown)}")
        if "state" in changes and changes["state"] not in STATUS_STATES:
            raise ValueError(f"invalid state {changes['state']!r}")
        encoded = {key: _encode(value) for key, value in changes.items()}
        before = db.execute("SELECT * FROM status WHERE name = ?", (name,)).fetchone()
        noticed = before is None or any(
            before[key] != value for key, value in encoded.items() if key not in QUIET_FIELDS
        )
        encoded["updated_at"] = self._now()
        updates = ", ".join(f"{column} = excluded.{column}" for column in encoded)
        encoded.setdefault("state", "deploying")  # only for a new row
        columns = ", ".join(encoded)
        placeholders = ", ".join("?" for _ in encoded)
        db.execute(
            # Column names come from STATUS_FIELDS (checked above), never from input.
            f"INSERT INTO status (name, {columns}) VALUES (?, {placeholders}) "  # noqa: S608
            f"ON CONFLICT(name) DO UPDATE SET {updates}",
            (name, *encoded.values()),
        )
        if changes.get("health_ok") is True:  # a move's target served (an indexed no-op else)
            note_served(db, name, self.node, encoded["updated_at"])
        return noticed


def _encode(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, tuple | list):
        return json.dumps(list(value))
    return value


def _status(row: Row) -> ServiceStatus:
    return record_of(ServiceStatus, row, health_failures=int(row["health_failures"] or 0))
