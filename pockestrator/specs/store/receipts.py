"""What a request recorded for the reconciler keeps after it ran: who asked, when, how it ended.

Operations and seeds are both such requests: the API writes one, a reconcile fulfils it and
records the end once, and the row stays as the receipt the API answers from.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from pockestrator.database import parse_iso, parse_stored_time

Outcome = Literal["done", "failed"]


@dataclass(frozen=True, kw_only=True)
class Receipt:
    requested_at: datetime
    requested_by: str
    finished_at: datetime | None = None
    outcome: Outcome | None = None
    result: dict[str, Any] = field(default_factory=dict)

    @property
    def pending(self) -> bool:
        return self.finished_at is None


def receipt_columns(row: Any) -> dict[str, Any]:
    """The receipt's fields of a stored row, as keyword arguments."""
    return {
        "requested_at": parse_stored_time(row["requested_at"]),
        "requested_by": row["requested_by"],
        "finished_at": parse_iso(row["finished_at"]),
        "outcome": row["outcome"],
        "result": json.loads(row["result"]),
    }


def stored_result(result: dict[str, Any]) -> str:
    """How a result is stored: JSON with sorted keys, anything else as its text."""
    return json.dumps(result, sort_keys=True, default=str)
