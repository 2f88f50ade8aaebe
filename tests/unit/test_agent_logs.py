"""The agent's log lines under journald: a ``<N>`` priority prefix exactly when stderr is
the stream JOURNAL_STREAM names, JSON after it, and NO_COLOR on a terminal."""

from __future__ import annotations

import io
import json
import os
import sys
from pathlib import Path

import pytest
import structlog

from pockestrator.agent.logs import (
    configure_logging,
    priority_prefix,
    stream_is_journal,
    wants_color,
)


@pytest.mark.parametrize(
    ("level", "prefix"),
    [
        ("critical", "<2>"),
        ("error", "<3>"),
        ("exception", "<3>"),
        ("warning", "<4>"),
        ("info", "<6>"),
        ("debug", "<7>"),
        ("ERROR", "<3>"),
        ("something else", "<6>"),
    ],
)
def test_each_level_has_its_syslog_priority(level: str, prefix: str) -> None:
    assert priority_prefix(level) == prefix


def test_only_the_stream_journal_stream_names_counts_as_the_journal(tmp_path: Path) -> None:
    with (tmp_path / "a").open("w") as first, (tmp_path / "b").open("w") as second:
        stat = os.fstat(first.fileno())
        named = f"{stat.st_dev}:{stat.st_ino}"
        assert stream_is_journal(named, first.fileno())
        assert not stream_is_journal(named, second.fileno())
    for broken in (None, "", "x:y", "1", ":"):
        assert not stream_is_journal(broken, 0)


@pytest.mark.parametrize(
    ("environ", "tty", "colored"),
    [
        ({}, True, True),
        ({}, False, False),
        ({"NO_COLOR": "1"}, True, False),
        ({"NO_COLOR": ""}, True, True),
    ],
)
def test_no_color_turns_colours_off_on_a_terminal(
    environ: dict[str, str], tty: bool, colored: bool
) -> None:
    assert wants_color(environ, tty) is colored


def _lines_under(environ: dict[str, str], stream: io.TextIOWrapper) -> list[str]:
    saved = sys.stderr
    sys.stderr = stream
    try:
        configure_logging("debug", json=True, environ=environ)
        log = structlog.get_logger("test")
        log.error("it broke", service="blog")
        log.info("all fine")
        stream.flush()
    finally:
        sys.stderr = saved
        configure_logging("info", json=False)
    stream.seek(0)
    return stream.read().splitlines()


def test_under_journald_each_json_line_starts_with_its_priority(tmp_path: Path) -> None:
    with (tmp_path / "stderr").open("w+") as stream:
        stat = os.fstat(stream.fileno())
        lines = _lines_under({"JOURNAL_STREAM": f"{stat.st_dev}:{stat.st_ino}"}, stream)
    assert [line[:3] for line in lines] == ["<3>", "<6>"]
    first = json.loads(lines[0][3:])
    assert (first["event"], first["level"], first["service"]) == ("it broke", "error", "blog")


def test_elsewhere_lines_are_plain_json(tmp_path: Path) -> None:
    with (tmp_path / "stderr").open("w+") as stream:
        lines = _lines_under({"JOURNAL_STREAM": "1:1"}, stream)
    assert [json.loads(line)["level"] for line in lines] == ["error", "info"]
