"""The nodes of a fleet: who they are, what they can hold, and whether they are alive.

Each agent registers its node (its name, the address of its API, Caddy's public address,
its memory and CPUs) and then holds a lease on it, renewed well before it ends
(``agent.node_lease``). Whether a lease has ended is judged by the database server's clock
(``StoreDatabase.server_time``), which every node shares, never by a host's own: a node
whose clock is wrong cannot keep a dead node alive or declare a live one lost. One host's
SQLite store has no server, so there the store's ``Clock`` stands in.

A node is ``ready`` while its lease runs and ``lost`` once it has ended; the row stays, so
the fleet view shows a node that went away and its services (moves and failover, which act
on a lost node, are for a later round: docs/fleet.md). A service's ``node`` is where it
runs; services stored before there were nodes have ``''`` until an agent adopts them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from pockestrator.database import Connection, Row, iso, parse_stored_time
from pockestrator.specs.store.base import StorePart
from pockestrator.specs.store.rows import record_of

NodeState = Literal["ready", "lost"]


@dataclass(frozen=True)
class NodeInfo:
    """What an agent says of its node when it registers."""

    name: str
    api_address: str
    public_address: str
    memory_bytes: int
    cpus: int


@dataclass(frozen=True)
class NodeRecord:
    name: str
    api_address: str
    public_address: str
    memory_bytes: int
    cpus: int
    registered_at: datetime
    renewed_at: datetime
    lease_expires_at: datetime
    state: NodeState
    services: int


class Nodes(StorePart):
    def _server_now(self, db: Connection) -> datetime:
        return self._database.server_time(db) or self._clock.now()

    def register_node(self, node: NodeInfo, lease: timedelta) -> NodeRecord:
        """Insert or refresh ``node`` with a new lease; services stored before there were
        nodes (``''``) become this node's. One host's SQLite store is one node's: there
        the node takes every service and deletion, and is the only node, so a host whose
        name changed carries on with its services instead of seeing them as another's."""
        sole = self._database.backend == "sqlite"
        with self._database.write() as db:
            if sole:
                db.execute("DELETE FROM nodes WHERE name <> ?", (node.name,))
                db.execute("UPDATE services SET node = ? WHERE node <> ?", (node.name, node.name))
                db.execute("UPDATE deletions SET node = ? WHERE node <> ?", (node.name, node.name))
            now = self._server_now(db)
            db.execute(
                "INSERT INTO nodes (name, api_address, public_address, memory_bytes, cpus, "
                "registered_at, renewed_at, lease_expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(name) DO UPDATE SET api_address = excluded.api_address, "
                "public_address = excluded.public_address, "
                "memory_bytes = excluded.memory_bytes, cpus = excluded.cpus, "
                "renewed_at = excluded.renewed_at, lease_expires_at = excluded.lease_expires_at",
                (
                    node.name,
                    node.api_address,
                    node.public_address,
                    node.memory_bytes,
                    node.cpus,
                    iso(now),
                    iso(now),
                    iso(now + lease),
                ),
            )
            db.execute("UPDATE services SET node = ? WHERE node = ''", (node.name,))
            db.execute("UPDATE deletions SET node = ? WHERE node = ''", (node.name,))
            row = _node_row(db, node.name)
            assert row is not None
            return _node(row, now)

    def renew_lease(self, name: str, lease: timedelta) -> datetime | None:
        """The lease's new end, or None when the node is not registered (any more)."""
        with self._database.write() as db:
            now = self._server_now(db)
            expires = now + lease
            cursor = db.execute(
                "UPDATE nodes SET renewed_at = ?, lease_expires_at = ? WHERE name = ?",
                (iso(now), iso(expires), name),
            )
            return expires if cursor.rowcount == 1 else None

    def list_nodes(self) -> list[NodeRecord]:
        """Every node in name order, its state judged by the server's clock now."""
        with self._database.reading() as db:
            now = self._server_now(db)
            rows = db.execute(f"{_NODES} ORDER BY name").fetchall()
        return [_node(row, now) for row in rows]

    def get_node(self, name: str) -> NodeRecord | None:
        with self._database.reading() as db:
            now = self._server_now(db)
            row = _node_row(db, name)
        return _node(row, now) if row is not None else None

    def node_of(self, service: str) -> str | None:
        """The node ``service`` runs on ('' before one adopted it), None if unknown."""
        rows = self._database.read("SELECT node FROM services WHERE name = ?", (service,))
        return str(rows[0][0]) if rows else None


# A node's row with the number of services placed on it.
_NODES = (
    "SELECT nodes.*, (SELECT count(*) FROM services WHERE services.node = nodes.name) "
    "AS service_count FROM nodes"
)


def _node_row(db: Connection, name: str) -> Row | None:
    row: Row | None = db.execute(f"{_NODES} WHERE name = ?", (name,)).fetchone()
    return row


def _node(row: Row, now: datetime) -> NodeRecord:
    expires = parse_stored_time(row["lease_expires_at"])
    return record_of(
        NodeRecord,
        row,
        state="ready" if expires > now else "lost",
        services=int(row["service_count"]),
    )
