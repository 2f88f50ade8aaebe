"""What a request recorded for the reconciler keeps after it ran: who asked, when, how it ended.

Operations and seeds are both such requests: the API writes one, a reconcile fulfils it and
records the end once, and the row stays as the receipt the API answers from.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

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


def stored_result(result: dict[str, Any]) -> str:
    """How a result is stored: JSON with sorted keys, anything else as its text."""
    return json.dumps(result, sort_keys=True, default=str)
