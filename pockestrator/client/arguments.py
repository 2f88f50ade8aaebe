"""Argument types the CLI's parsers share: numbers, ``-o`` formats, ``--since`` times.

Each is an ``argparse`` ``type=``: it returns the value or raises ``ArgumentTypeError``,
whose message argparse prints with the option's name (exit code 2, a usage error).
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path

from pockestrator.client.times import BadMoment, api_time, parse_moment

OUTPUT_FORMATS = ("table", "wide", "json", "yaml", "name")
JSONPATH_PREFIX = "jsonpath="


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < value < 1e7:
        raise argparse.ArgumentTypeError("must be a positive number of seconds")
    return value


def output_format(text: str) -> str:
    """``table|wide|json|yaml|name`` or ``jsonpath=TEMPLATE`` (checked now: a bad template
    is a usage error before any request is made)."""
    if text in OUTPUT_FORMATS:
        return text
    if text.startswith(JSONPATH_PREFIX):
        from pockestrator.client.jsonpath import JsonPathError, check_template

        try:
            check_template(text[len(JSONPATH_PREFIX) :])
        except JsonPathError as exc:
            raise argparse.ArgumentTypeError(f"jsonpath: {exc}") from None
        return text
    choices = "|".join(OUTPUT_FORMATS)
    raise argparse.ArgumentTypeError(f"{text!r}: use {choices} or jsonpath=TEMPLATE")


def moment(text: str) -> str:
    """A ``--since``/``--until`` time as the API's UTC text (``client.times``), read in
    this machine's local zone when it has none."""
    now = datetime.now(UTC)
    try:
        return api_time(parse_moment(text, now, now.astimezone().tzinfo or UTC))
    except BadMoment as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_database_options(parser: argparse.ArgumentParser) -> None:
    """``--config FILE`` or ``--database FILE``: where a local command finds the agent's
    database (``client.local``)."""
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--config", type=Path, help="the agent's configuration file")
    where.add_argument("--database", type=Path, help="the agent's database file")
