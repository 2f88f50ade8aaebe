"""Server-sent events framing (the WHATWG ``text/event-stream`` format), pure.

Every stream of the API writes through these: an event is ``id:``, ``event:`` and one
``data:`` line per line of its text, ended by an empty line; a comment (``: ...``) is
ignored by clients and keeps idle connections open; ``retry:`` tells a reconnecting client
how long to wait. An id or event name cannot hold a line break (it would end the field), so
one that does is refused rather than written.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel

HEADERS = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache, no-store",
    "X-Accel-Buffering": "no",
}


def _one_line(value: str, what: str) -> str:
    if "\n" in value or "\r" in value or "\0" in value:
        raise ValueError(f"an SSE {what} cannot hold a line break or NUL")
    return value


def frame(data: str, *, event: str | None = None, event_id: str | None = None) -> bytes:
    """One event; ``data`` may span lines (each becomes its own ``data:`` line)."""
    lines = []
    if event_id is not None:
        lines.append(f"id: {_one_line(event_id, 'id')}")
    if event is not None:
        lines.append(f"event: {_one_line(event, 'event name')}")
    lines += [f"data: {line}" for line in data.replace("\r\n", "\n").split("\n")]
    return ("\n".join(lines) + "\n\n").encode()


def json_frame(event: str, data: BaseModel | dict[str, Any], event_id: str | None = None) -> bytes:
    """One event whose data is compact, ASCII JSON: one line, whatever the text holds."""
    if not event:
        raise ValueError("an SSE event name is one non-empty line")
    body = data.model_dump(mode="json") if isinstance(data, BaseModel) else data
    payload = json.dumps(body, separators=(",", ":"))  # ASCII: no character a reader splits on
    return frame(payload, event=event, event_id=event_id)


def comment(text: str = "") -> bytes:
    """A comment (a heartbeat): clients ignore it, proxies see traffic."""
    return f": {_one_line(text, 'comment')}\n\n".encode() if text else b":\n\n"


def retry(milliseconds: int) -> bytes:
    return f"retry: {int(milliseconds)}\n\n".encode()
