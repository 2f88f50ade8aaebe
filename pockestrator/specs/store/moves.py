"""Moves of a service from one node to another, step by recorded step.

A move is an intent record like the other control actions: any node's API writes it
(``request_move``), and the two nodes it names each do their steps when told of it (the
row's triggers NOTIFY both). Every step's end is a state written here, in the same
transaction as what it changes, so an agent that restarts finds the move where it was and
an interrupted move is never taken for a finished one. The states, and whose turn each is,
are ``agent.move_plan``'s; the switch (the service's node changes, with the final snapshot
as the target's seed) is one transaction here (``switch_move``).

One unfinished move per service (a partial unique index). Neighbours: ``agent.mover``
does the steps; ``seeds`` is how the target's first reconcile puts the data in place.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pockestrator.database import Connection, iso, parse_stored_time
from pockestrator.specs.errors import ErrorCode, FieldIssue
from pockestrator.specs.model import ServiceSpec
from pockestrator.specs.store.base import StorePart
from pockestrator.specs.store.records import Conflict, NotFound
from pockestrator.specs.store.rows import record_of
from pockestrator.specs.store.seeds import SeedKind, SeedSource, write_seed

MoveState = Literal[
    "requested",  # the source takes a snapshot to the off-site target
    "staged",  # the target fetches it and boots it in a scratch box (the health gate)
    "verified",  # the source stops, takes the final snapshot and switches
    "switched",  # the target's reconcile seeds the final snapshot and starts it
    "done",
    "failed",  # before the switch: nothing changed on the source but a snapshot
    "rolled_back",  # after the switch: the service went back to its source
    "failed_on_target",  # after the switch, none to go back to: it lives on the target
]
FINISHED: frozenset[str] = frozenset({"done", "failed", "rolled_back", "failed_on_target"})


@dataclass(frozen=True)
class Move:
    id: int
    service: str
    source: str
    target: str
    from_backup: bool
    state: MoveState
    snapshot: str | None
    final_snapshot: str | None
    requested_at: datetime
    requested_by: str
    updated_at: datetime
    finished_at: datetime | None
    error: str | None
    # When the target first answered its health probe after the switch (sticky: set with
    # that status, never cleared), so a later error is never a reason to roll back.
    served_at: datetime | None = None

    @property
    def pending(self) -> bool:
        return self.finished_at is None

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "service": self.service,
            "source": self.source,
            "target": self.target,
            "from_backup": self.from_backup,
            "state": self.state,
            "snapshot": self.snapshot,
            "final_snapshot": self.final_snapshot,
            "error": self.error,
            "served": self.served_at is not None,
        }


def _conflict(field: str, message: str, code: ErrorCode) -> Conflict:
    return Conflict([FieldIssue(field, message, code)])


def _move(row: Any) -> Move:
    return record_of(Move, row)


def note_served(db: Connection, service: str, node: str, now: str) -> None:
    """In the transaction that writes ``service``'s first healthy status on ``node``: if
    that is the target of its switched move, the move has served there (for good)."""
    db.execute(
        "UPDATE moves SET served_at = ?, updated_at = ? WHERE service = ? AND target = ? "
        "AND state = 'switched' AND finished_at IS NULL AND served_at IS NULL",
        (now, now, service, node),
    )


class Moves(StorePart):
    def request_move(self, service: str, target: str, *, from_backup: bool, by: str) -> Move:
        """Record a move of ``service`` to node ``target``. ``NotFound`` for an unknown
        service or node; ``Conflict`` when the target is lost, the service is there
        already, another move of it is unfinished, or its port is taken on the target."""
        now = self._now()
        with self._database.write() as db:
            row = db.execute(
                "SELECT node, port FROM services WHERE name = ?", (service,)
            ).fetchone()
            if row is None:
                raise NotFound(service)
            lease = db.execute(
                "SELECT lease_expires_at FROM nodes WHERE name = ?", (target,)
            ).fetchone()
            if lease is None:
                raise NotFound(target)
            server_now = self._database.server_time(db) or self._clock.now()
            if parse_stored_time(lease["lease_expires_at"]) <= server_now:
                raise _conflict(
                    "to", f"node {target} is lost (its lease ended)", ErrorCode.NODE_LOST
                )
            source = str(row["node"])
            if source == target:
                raise _conflict(
                    "node", f"{service} runs on {target} already", ErrorCode.ALREADY_ON_NODE
                )
            if db.execute(
                "SELECT 1 FROM moves WHERE service = ? AND finished_at IS NULL", (service,)
            ).fetchone():
                raise _conflict(
                    "id", f"{service} is being moved already", ErrorCode.MOVE_IN_PROGRESS
                )
            if db.execute(
                "SELECT 1 FROM services WHERE node = ? AND port = ? AND name <> ?",
                (target, row["port"], service),
            ).fetchone():
                taken = f"port {row['port']} is taken on {target}"
                raise _conflict("port", taken, ErrorCode.PORT_IN_USE)
            inserted = db.execute(
                "INSERT INTO moves (service, source, target, from_backup, state, "
                "requested_at, requested_by, updated_at) "
                "VALUES (?, ?, ?, ?, 'requested', ?, ?, ?) RETURNING *",
                (service, source, target, 1 if from_backup else 0, now, by, now),
            ).fetchone()
        return _move(inserted)

    def get_move(self, move_id: int) -> Move | None:
        rows = self._database.read("SELECT * FROM moves WHERE id = ?", (move_id,))
        return _move(rows[0]) if rows else None

    def current_move(self, service: str) -> Move | None:
        """The unfinished move of ``service``, if any."""
        rows = self._database.read(
            "SELECT * FROM moves WHERE service = ? AND finished_at IS NULL", (service,)
        )
        return _move(rows[0]) if rows else None

    def unfinished_moves(self) -> list[Move]:
        """Every unfinished move, oldest first (an agent's start looks at its own)."""
        rows = self._database.read("SELECT * FROM moves WHERE finished_at IS NULL ORDER BY id")
        return [_move(row) for row in rows]

    def moves_of_node(self, node: str, finished_since: datetime) -> list[Move]:
        """The moves from or to ``node`` that are unfinished or finished since
        ``finished_since``, oldest first: what decides the node's forwards
        (``agent.mover_routes``)."""
        rows = self._database.read(
            "SELECT * FROM moves WHERE (source = ? OR target = ?) "
            "AND (finished_at IS NULL OR finished_at >= ?) ORDER BY id",
            (node, node, iso(finished_since)),
        )
        return [_move(row) for row in rows]

    def advance_move(
        self, move_id: int, was: MoveState, now_state: MoveState, **columns: str | None
    ) -> Move | None:
        """Move the record from ``was`` to ``now_state`` (with ``snapshot``,
        ``final_snapshot`` or ``error``); None when it was not in ``was`` any more (another
        step got there first: the step's result is not recorded twice)."""
        allowed = {"snapshot", "final_snapshot", "error"}
        assert set(columns) <= allowed, columns
        now = self._now()
        sets = "".join(f", {column} = ?" for column in columns)  # names checked above
        finished = now if now_state in FINISHED else None
        with self._database.write() as db:
            cursor = db.execute(
                f"UPDATE moves SET state = ?, updated_at = ?, finished_at = ?{sets} "  # noqa: S608
                "WHERE id = ? AND state = ? AND finished_at IS NULL",
                (now_state, now, finished, *columns.values(), move_id, was),
            )
            if cursor.rowcount != 1:
                return None
        return self.get_move(move_id)

    def switch_move(
        self,
        move: Move,
        was: MoveState,
        to_node: str,
        snapshot: str,
        state: MoveState,
        seed: SeedKind = "snapshot",
    ) -> Move | None:
        """In one transaction: the service now runs on ``to_node``, whose first reconcile
        seeds it from ``snapshot`` (fetched from the off-site target; with ``seed``
        ``replica``, its data.db from the service's replica), and the move is in ``state``
        (``switched``, or ``rolled_back`` the other way). None when the move was not in
        ``was`` any more."""
        now = self._now()
        finished = now if state in FINISHED else None
        with self._database.write() as db:
            cursor = db.execute(
                "UPDATE moves SET state = ?, updated_at = ?, finished_at = ?, final_snapshot = ? "
                "WHERE id = ? AND state = ? AND finished_at IS NULL",
                (state, now, finished, snapshot, move.id, was),
            )
            if cursor.rowcount != 1:
                return None
            source = SeedSource(seed, service=move.service, snapshot=snapshot)
            write_seed(db, move.service, source, f"move {move.id}", now)
            # A spec that named its node names the new one (it cannot change otherwise).
            row = db.execute("SELECT spec FROM services WHERE name = ?", (move.service,)).fetchone()
            spec = ServiceSpec.model_validate_json(row["spec"])
            if spec.node is not None:
                spec = spec.model_copy(update={"node": to_node})
            db.execute(
                "UPDATE services SET node = ?, spec = ?, updated_at = ? WHERE name = ?",
                (to_node, spec.model_dump_json(), now, move.service),
            )
            # What the old node observed is not the new one's: deploying until it reports.
            db.execute(
                "UPDATE status SET state = 'deploying', health_ok = NULL WHERE name = ?",
                (move.service,),
            )
        return self.get_move(move.id)
