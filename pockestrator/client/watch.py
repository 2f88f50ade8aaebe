"""``get -w``: the services (or one), then a line per change, as ``kubectl get -w`` does.

The agent streams them (``GET /services?watch=true``, server-sent events): every service,
``synced``, then each change as it is committed, status changes included. The table's
columns take their widths from the first rows and keep them; ``-o json`` prints one compact
object per line (JSON Lines), ``-o yaml`` one document each. A stream the agent ends (a
restart) is opened again with the last event's id, so nothing is missed or printed twice
for long; Ctrl-C ends the command.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

from pockestrator.client.http import ApiClient, SseEvent, service_path
from pockestrator.client.output import cell

REOPENS = 5


class Columns:
    """Table lines whose widths, once set by the first rows, stay (a growing cell widens)."""

    def __init__(self, headers: Sequence[str]) -> None:
        self.headers = list(headers)
        self.widths = [len(h) for h in headers]

    def lines(self, rows: Sequence[Sequence[Any]], *, header: bool) -> list[str]:
        text_rows = [[cell(value) for value in row] for row in rows]
        for row in text_rows:
            self.widths = [max(w, len(v)) for w, v in zip(self.widths, row, strict=True)]
        shown = [self.headers, *text_rows] if header else text_rows
        return [
            "  ".join(
                [*(v.ljust(w) for v, w in zip(row[:-1], self.widths, strict=False)), row[-1]]
            ).rstrip()
            for row in shown
        ]


def follow(
    client: ApiClient, name: str | None, status: str | None
) -> Iterator[tuple[str, dict[str, Any]]]:
    """(kind, service) per event: ``service``, ``synced`` (the first state is complete) or
    ``deleted``; a single service's events carry its view."""
    path = service_path(name) if name is not None else "/services"
    query: dict[str, str | int | bool] = {"watch": True}
    if status is not None and name is None:
        query["status"] = status
    last_id: str | None = None
    for _attempt in range(REOPENS + 1):
        for event in client.events(path, query, last_event_id=last_id):
            last_id = event.id or last_id
            parsed = _parsed(event)
            if parsed is not None:
                yield parsed
    return


def _parsed(event: SseEvent) -> tuple[str, dict[str, Any]] | None:
    try:
        data = json.loads(event.data)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    if event.event == "service":
        return "service", dict(data.get("service", data))
    if event.event in ("synced", "deleted"):
        return event.event, data
    return None
