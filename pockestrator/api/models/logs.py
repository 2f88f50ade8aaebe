"""What the log operation answers (``api.log_routes``): entries from the journal, in both
reference variants; the same ``LogEntryView`` is the data of each server-sent event."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from pockestrator.api.models import ClosedModel


class LogEntryView(ClosedModel):
    timestamp: datetime
    level: str
    message: str
    source: str
    line: str = Field(description="The entry as one plain line (the first variant's form).")
    cursor: str | None
    pid: int | None


class LogsResponse(ClosedModel):
    """Variant two's entries in ``logs``, variant one's plain lines in ``log_lines``."""

    service_id: str
    project_name: str
    lines: int = Field(description="How many entries were asked for.")
    logs: list[LogEntryView]
    log_lines: list[str]
    total_lines: int
    timestamp: datetime
    retrieved_at: datetime
