"""A node's loss and return, recorded once: its services' ``node_lost`` events and alerts.

Whether a node is lost is never stored: it is read from its lease by the server's clock
each time (``nodes``), so the state the API shows cannot lag the lease or outlive it. What
must be written once is the news: when a node's lease has ended, each of its services gets
a ``node_lost`` event and an ``alert_firing`` (rule ``node_lost``), delivered like every
event; when the node renews, ``node_returned`` and ``alert_resolved``. Every live node
looks (``agent.node_watch``); the conditional update of ``lost_noted_at`` inside the
store's one writer (SQLite's lock, PostgreSQL's advisory lock) lets exactly one of them
write the news, and a node that renews clears it in the same transaction as its lease.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from pockestrator.database import Connection, iso, parse_stored_time
from pockestrator.specs.store.base import StorePart

if TYPE_CHECKING:
    from pockestrator.specs.store.records import Event

NODE_LOST = "node_lost"  # the event's kind and the alert's rule


class NodeLoss(StorePart):
    def note_lost_nodes(self, observer: str) -> dict[str, list[str]]:
        """Record the news of every node whose lease has ended and was not noted yet;
        those nodes with their services (what this call wrote). The claim and the
        services are read in one transaction; the events follow its commit (a crash in
        between loses that news, never doubles it)."""
        noted: dict[str, tuple[str, list[str]]] = {}
        with self._database.write() as db:
            now = self._database.server_time(db) or self._clock.now()
            rows = db.execute(
                "SELECT name, lease_expires_at FROM nodes WHERE lost_noted_at IS NULL"
            ).fetchall()
            for row in rows:
                if parse_stored_time(row["lease_expires_at"]) > now:
                    continue
                node = str(row["name"])
                db.execute("UPDATE nodes SET lost_noted_at = ? WHERE name = ?", (iso(now), node))
                noted[node] = (str(row["lease_expires_at"]), _services_of(db, node))
        for node, (expired, services) in noted.items():
            for service in services:
                details = {"node": node, "lease_expired_at": expired, "noted_by": observer}
                message = f"node {node} is lost: its lease ended at {expired}"
                self.add_event(service, NODE_LOST, message, details)
                alert = {"rule": NODE_LOST, "service": service, **details}
                self.add_event(service, "alert_firing", message, alert)
        return {node: services for node, (_, services) in noted.items()}

    def note_return(self, node: str) -> list[str]:
        """After ``node`` renewed its lease: if its loss was noted, the news of its return
        for each of its services, and the loss cleared; those services. A read first: the
        write (and PostgreSQL's writers' lock) only when there is news."""
        noted = self._database.read("SELECT lost_noted_at FROM nodes WHERE name = ?", (node,))
        if not noted or noted[0][0] is None:
            return []
        with self._database.write() as db:
            cursor = db.execute(
                "UPDATE nodes SET lost_noted_at = NULL "
                "WHERE name = ? AND lost_noted_at IS NOT NULL",
                (node,),
            )
            if cursor.rowcount != 1:
                return []
            services = _services_of(db, node)
        for service in services:
            details = {"node": node}
            message = f"node {node} is back: its lease was renewed"
            self.add_event(service, "node_returned", message, details)
            alert = {"rule": NODE_LOST, "service": service, **details}
            self.add_event(service, "alert_resolved", f"resolved: {message}", alert)
        return services

    def server_now(self) -> datetime:
        """Now by the clock that judges leases (the server's; one host's own)."""
        with self._database.reading() as db:
            return self._database.server_time(db) or self._clock.now()

    def lost_nodes(self) -> frozenset[str]:
        """The nodes whose lease has ended, by the server's clock now; none on one host's
        SQLite store (its one node is the host answering, its lease judged by its clock)."""
        if self._database.backend == "sqlite":
            return frozenset()
        with self._database.reading() as db:
            now = self._database.server_time(db) or self._clock.now()
            rows = db.execute("SELECT name, lease_expires_at FROM nodes").fetchall()
        return frozenset(
            str(row["name"]) for row in rows if parse_stored_time(row["lease_expires_at"]) <= now
        )

    if TYPE_CHECKING:  # Events' (in the assembled Store)

        def add_event(
            self, service: str, kind: str, message: str, details: dict[str, Any] | None = None
        ) -> Event: ...


def _services_of(db: Connection, node: str) -> list[str]:
    rows = db.execute("SELECT name FROM services WHERE node = ? ORDER BY name", (node,)).fetchall()
    return [str(row["name"]) for row in rows]
