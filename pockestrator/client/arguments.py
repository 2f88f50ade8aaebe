"""Argument types the CLI's parsers share: numbers, ``-o`` formats, ``--since`` times.

Each is an ``argparse`` ``type=``: it returns the value or raises ``ArgumentTypeError``,
whose message argparse prints with the option's name (exit code 2, a usage error).
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeAlias

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


# What add_subparsers gives (a string: argparse's class is not subscriptable at run time).
Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def add_command(
    commands: Commands,
    command: str,
    parent: argparse.ArgumentParser | None,
    help_text: str,
    /,
    *,
    description: str | None = None,
    **positionals: str,
) -> argparse.ArgumentParser:
    """A command taking ``parent``'s options and its plain positionals, ``dest=METAVAR``
    in order: how nearly every command's parser starts."""
    parser = commands.add_parser(
        command, parents=[parent] if parent else [], help=help_text, description=description
    )
    for dest, metavar in positionals.items():
        parser.add_argument(dest, metavar=metavar)
    return parser


def add_group(commands: Commands, command: str, help_text: str, dest: str) -> Commands:
    """A command made of actions (``backup create``, ``token list``): the action's name is
    required and lands in ``dest``."""
    group = commands.add_parser(command, help=help_text)
    return group.add_subparsers(dest=dest, metavar="ACTION", required=True)
