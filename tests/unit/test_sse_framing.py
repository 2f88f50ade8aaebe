"""Server-sent events framing: what a browser's EventSource reads back is what was framed,
and a field that would end early (a line break in an id or name) is refused."""

from __future__ import annotations

import pytest

from pockestrator.api import sse
from pockestrator.client.http import SseParser


def _parsed(raw: bytes) -> list[tuple[str | None, str, str]]:
    parser = SseParser()
    found = []
    for line in raw.decode().split("\n"):
        event = parser.feed(line)
        if event is not None:
            found.append((event.id, event.event, event.data))
    return found


@pytest.mark.parametrize(
    ("data", "event", "event_id"),
    [
        ('{"id":1}', "event", "1"),
        ("two\nlines", "log", None),
        ("", None, "42"),
        ("ends with a line break\n", "event", "7"),
    ],
)
def test_a_framed_event_reads_back_as_itself(
    data: str, event: str | None, event_id: str | None
) -> None:
    assert _parsed(sse.frame(data, event=event, event_id=event_id)) == [
        (event_id, event or "message", data)
    ]


def test_carriage_returns_in_data_do_not_split_it_further() -> None:
    assert _parsed(sse.frame("a\r\nb", event="event")) == [(None, "event", "a\nb")]


@pytest.mark.parametrize("bad", ["1\n2", "1\r", "x\0"])
def test_an_id_or_event_name_with_a_line_break_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="line break"):
        sse.frame("x", event_id=bad)
    with pytest.raises(ValueError, match="line break"):
        sse.frame("x", event=bad)


def test_comments_and_retry_are_no_events() -> None:
    assert _parsed(sse.comment("keepalive") + sse.retry(3000)) == []
    assert sse.comment("keepalive") == b": keepalive\n\n"
    assert sse.retry(3000) == b"retry: 3000\n\n"
