"""Server-sent event framing (pure): an event's lines, a comment, the reconnect delay.

The WHATWG event-stream format: ``id:``, ``event:`` and one ``data:`` line per line of the
payload, ended by a blank line; a line starting with ``:`` is a comment (the heartbeat).
An id can hold no line break and no NUL (a client would drop or split it), so such an id
is refused rather than sent. JSON payloads are compact and hold no raw line break.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel


def event_frame(event: str, data: BaseModel | dict[str, Any], event_id: str | None = None) -> bytes:
    """One event: its id (when given), its name and its JSON data."""
    if any(bad in event for bad in ("\r", "\n", "\0")) or not event:
        raise ValueError("an event name is one non-empty line")
    body = data.model_dump(mode="json") if isinstance(data, BaseModel) else data
    payload = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
    lines = []
    if event_id is not None:
        if any(bad in event_id for bad in ("\r", "\n", "\0")):
            raise ValueError("an event id is one line without NUL")
        lines.append(f"id: {event_id}")
    lines.append(f"event: {event}")
    lines += [f"data: {line}" for line in payload.splitlines() or [""]]
    return ("\n".join(lines) + "\n\n").encode()


def comment_frame(text: str = "") -> bytes:
    """A comment line (a heartbeat): clients ignore it, proxies see traffic."""
    return f": {text}\n\n".encode() if text else b":\n\n"


def retry_frame(milliseconds: int) -> bytes:
    """How long a browser's EventSource waits before it reconnects."""
    return f"retry: {int(milliseconds)}\n\n".encode()
