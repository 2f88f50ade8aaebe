"""Operations asked of a service: a snapshot, a verification, a restore, a deletion, an app
deploy or rollback.

An operation is a request the service's reconciles fulfil, in order, one at a time: the
API records it (``request_operation``) and queues the service; the reconciler sees the
oldest pending one (``pending_operations``), does it, and records how it ended
(``finish_operation``: ``done`` with a result, or ``failed`` with the reason). The row
stays as a receipt the API answers from. A restart of the agent finds what was pending
still pending, and what had finished finished.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pockestrator.specs.store.base import StorePart
from pockestrator.specs.store.receipts import Outcome, Receipt, stored_result
from pockestrator.specs.store.rows import record_of

OperationKind = Literal["snapshot", "verify", "restore", "delete", "deploy", "rollback"]
BACKUP_KINDS = frozenset({"snapshot", "verify", "restore", "delete"})
DEPLOY_KINDS = frozenset({"deploy", "rollback"})


@dataclass(frozen=True)
class Operation(Receipt):
    id: int
    service: str
    kind: OperationKind
    argument: str | None


def _operation(row: Any) -> Operation:
    return record_of(Operation, row)


class Operations(StorePart):
    def request_operation(
        self, service: str, kind: OperationKind, argument: str | None, by: str
    ) -> Operation:
        now = self._now()
        with self._database.write() as db:
            row = db.execute(
                "INSERT INTO operations (service, kind, argument, requested_at, requested_by)"
                " VALUES (?, ?, ?, ?, ?) RETURNING *",
                (service, kind, argument, now, by),
            ).fetchone()
        return _operation(row)

    def get_operation(self, operation_id: int) -> Operation | None:
        rows = self._database.read("SELECT * FROM operations WHERE id = ?", (operation_id,))
        return _operation(rows[0]) if rows else None

    def pending_operations(self, service: str) -> list[Operation]:
        """Oldest first."""
        rows = self._database.read(
            "SELECT * FROM operations WHERE service = ? AND finished_at IS NULL ORDER BY id",
            (service,),
        )
        return [_operation(row) for row in rows]

    def finish_operation(
        self, operation_id: int, outcome: Outcome, result: dict[str, Any]
    ) -> Operation | None:
        """Record the end (once: a finished operation is not finished again)."""
        with self._database.write() as db:
            db.execute(
                "UPDATE operations SET finished_at = ?, outcome = ?, result = ?"
                " WHERE id = ? AND finished_at IS NULL",
                (self._now(), outcome, stored_result(result), operation_id),
            )
        return self.get_operation(operation_id)

    def list_operations(self, service: str, *, limit: int = 50) -> list[Operation]:
        """Newest first."""
        rows = self._database.read(
            "SELECT * FROM operations WHERE service = ? ORDER BY id DESC LIMIT ?",
            (service, limit),
        )
        return [_operation(row) for row in rows]
