"""Logging: JSON lines when not on a terminal (journald keeps them), readable on a terminal.

Under systemd, stderr is a stream to journald, which files every line at the unit's
default priority (6, info) unless the line starts with a ``<N>`` syslog prefix (journald's
``SyslogLevelPrefix=``, on by default). So when ``JOURNAL_STREAM`` names the very stream
stderr is (its ``device:inode``: a child that inherited the variable but writes elsewhere
must not prefix), each line starts with its level's priority and ``journalctl -p err``
finds the errors; the JSON after the prefix is the message, so its fields stay searchable
(``journalctl -u pockestrator -g '"service": "blog"'``). ``NO_COLOR`` turns colours off on a
terminal, as https://no-color.org asks.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping

import structlog

# syslog(3) priorities of structlog's level names.
PRIORITIES = {
    "critical": 2,
    "exception": 3,
    "error": 3,
    "warning": 4,
    "warn": 4,
    "info": 6,
    "debug": 7,
    "notset": 7,
}


def priority_prefix(level: str) -> str:
    """``<N>`` for a level name: what journald reads as the line's priority."""
    return f"<{PRIORITIES.get(level.lower(), 6)}>"


def stream_is_journal(journal_stream: str | None, fd: int) -> bool:
    """Whether ``fd`` is the stream ``JOURNAL_STREAM`` (``device:inode``) names."""
    if not journal_stream:
        return False
    device, _, inode = journal_stream.partition(":")
    try:
        stat = os.fstat(fd)
        return (stat.st_dev, stat.st_ino) == (int(device), int(inode))
    except (OSError, ValueError):
        return False


class _Prefixed:
    """Wraps the final renderer: its line gets the priority prefix of its level."""

    def __init__(self, renderer: structlog.typing.Processor) -> None:
        self._renderer = renderer

    def __call__(self, logger: object, method: str, event: structlog.typing.EventDict) -> str:
        level = str(event.get("level") or method)
        rendered = self._renderer(logger, method, event)
        return priority_prefix(level) + str(rendered)


def wants_color(environ: Mapping[str, str], is_tty: bool) -> bool:
    """Colours on a terminal, unless ``NO_COLOR`` is set to anything but empty."""
    return is_tty and not environ.get("NO_COLOR")


def configure_logging(
    level: str = "info", *, json: bool | None = None, environ: Mapping[str, str] | None = None
) -> None:
    """Set up structlog once for the process; ``json`` defaults to "stderr is not a TTY"."""
    env = os.environ if environ is None else environ
    is_tty = sys.stderr.isatty()
    as_json = not is_tty if json is None else json
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if as_json
        # Plain tracebacks: rich's would print every frame's locals, and a local may be a
        # secret (a password on its way to `pocketbase superuser upsert`).
        else structlog.dev.ConsoleRenderer(
            colors=wants_color(env, is_tty), exception_formatter=structlog.dev.plain_traceback
        )
    )
    try:
        stderr_fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        stderr_fd = -1
    if stream_is_journal(env.get("JOURNAL_STREAM"), stderr_fd):
        renderer = _Prefixed(renderer)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
        ),
        # Look sys.stderr up at each use: whoever replaced it (a test runner) gets the lines.
        logger_factory=lambda *_args: structlog.PrintLogger(sys.stderr),
        cache_logger_on_first_use=False,
    )
