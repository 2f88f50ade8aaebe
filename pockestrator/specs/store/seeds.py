"""Seeds: where a new service's first data comes from, and how seeding it ended.

A clone, an import and an archive restored as a service are services like any other,
whose desired state also names the data to start from: a snapshot of another service, a
live copy of one (a snapshot of it that is being taken: the operation on the source), an
uploaded archive staged by the API, or an archived folder. The row is written in the same
transaction as the service (``Services.create_service``), so no service is seen without
its seed; the first reconcile puts the data in place before the first start and records
the outcome (``finish_seed``). A seed that failed stays failed, and the service is not
started on an empty folder instead.

Neighbours: ``agent.seeding`` does the work; ``services`` writes the row.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any, Literal

from pockestrator.database import Connection
from pockestrator.specs.store.base import StorePart
from pockestrator.specs.store.receipts import Outcome, Receipt, stored_result
from pockestrator.specs.store.rows import record_of

SeedKind = Literal["snapshot", "live", "import", "archive", "replica"]


@dataclass(frozen=True)
class SeedSource:
    """What to seed from: ``kind`` says which of the other fields count."""

    kind: SeedKind
    service: str | None = None  # snapshot, live, replica: the service the data comes from
    snapshot: str | None = None  # snapshot, replica (for all but data.db): its id
    operation: int | None = None  # live: the snapshot operation asked of ``service``
    path: str | None = None  # import: the staged archive (root-only, the agent's own)
    archive: str | None = None  # archive: the archived folder's name

    def to_json(self) -> str:
        return json.dumps({k: v for k, v in asdict(self).items() if v is not None})

    @classmethod
    def from_json(cls, text: str) -> SeedSource:
        return cls(**json.loads(text))

    def describe(self) -> str:
        match self.kind:
            case "snapshot":
                return f"snapshot {self.snapshot} of {self.service}"
            case "live":
                return f"a live copy of {self.service}"
            case "import":
                return "an imported archive"
            case "archive":
                return f"archived folder {self.archive}"
            case "replica":
                return f"snapshot {self.snapshot} of {self.service} and its newest replica"


@dataclass(frozen=True)
class Seed(Receipt):
    service: str
    source: SeedSource


def _seed(row: Any) -> Seed:
    return record_of(Seed, row, source=SeedSource.from_json(row["source"]))


def write_seed(db: Connection, service: str, source: SeedSource | None, by: str, now: str) -> None:
    """Inside a service's creation: its seed, replacing any a former service of the name
    left (none: no seed)."""
    db.execute("DELETE FROM seeds WHERE service = ?", (service,))
    if source is not None:
        db.execute(
            "INSERT INTO seeds (service, source, requested_at, requested_by) VALUES (?, ?, ?, ?)",
            (service, source.to_json(), now, by),
        )


class Seeds(StorePart):
    def get_seed(self, service: str) -> Seed | None:
        rows = self._database.read("SELECT * FROM seeds WHERE service = ?", (service,))
        return _seed(rows[0]) if rows else None

    def seeds_waiting_for(self, operation: int) -> list[str]:
        """The services whose pending live seed waits for ``operation`` (a snapshot)."""
        rows = self._database.read("SELECT * FROM seeds WHERE finished_at IS NULL")
        return [
            seed.service
            for seed in map(_seed, rows)
            if seed.source.kind == "live" and seed.source.operation == operation
        ]

    def finish_seed(self, service: str, outcome: Outcome, result: dict[str, Any]) -> None:
        """Record how seeding ended (once)."""
        with self._database.write() as db:
            db.execute(
                "UPDATE seeds SET finished_at = ?, outcome = ?, result = ?"
                " WHERE service = ? AND finished_at IS NULL",
                (self._now(), outcome, stored_result(result), service),
            )
