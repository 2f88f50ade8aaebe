"""What ``logs -f`` and ``events -f`` take from a stream and how they print each item: one
``decoded_events`` and one ``Console.streamed`` for both."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest

from pockestrator.client.commands import Console
from pockestrator.client.http import SseEvent, decoded_events
from pockestrator.client.output import Format


def test_only_the_named_events_with_json_data_are_taken_in_order() -> None:
    stream = [
        SseEvent("log", '{"message": "one"}', "1"),
        SseEvent("", "", None),  # a keep-alive comment's empty event
        SseEvent("event", '{"kind": "started"}', "2"),  # another kind
        SseEvent("log", "not json", "3"),
        SseEvent("log", '"two"', None),  # any JSON value
        SseEvent("log", '{"message": "three"}', "5"),
    ]
    assert [(event.id, data) for event, data in decoded_events(stream, "log")] == [
        ("1", {"message": "one"}),
        (None, "two"),
        ("5", {"message": "three"}),
    ]
    assert [data for _event, data in decoded_events(stream, "event")] == [{"kind": "started"}]


def test_decoded_events_reads_the_stream_only_as_far_as_asked() -> None:
    read: list[str] = []

    def stream() -> Iterator[SseEvent]:
        for number in range(3):
            read.append(str(number))
            yield SseEvent("log", str(number), str(number))

    first = next(decoded_events(stream(), "log"))
    assert (first[1], read) == (0, ["0"])


@pytest.mark.parametrize(
    ("fmt", "printed"),
    [
        ("json", '{"message": "café", "n": 1}\n'),
        ("yaml", "---\nmessage: café\nn: 1\n"),
        ("table", "line: café\n"),
        ("wide", "line: café\n"),
    ],
)
def test_a_streamed_item_is_one_json_line_one_yaml_document_or_its_text_line(
    fmt: Format, printed: str
) -> None:
    out = io.StringIO()
    console = Console(fmt=fmt, out=out, err=io.StringIO())
    console.streamed({"message": "café", "n": 1}, lambda item: f"line: {item['message']}")
    assert out.getvalue() == printed
