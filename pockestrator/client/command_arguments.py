"""The client commands' parsers: the connection and output options every command takes
(before or after its name), and each command's own arguments; command groups with many
of their own keep them beside their commands (``backup_arguments``, ``event_arguments``,
``config_commands``).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pockestrator.client.arguments import (
    Commands,
    add_command,
    add_database_options,
    add_group,
    moment,
    output_format,
    positive_int,
    positive_seconds,
)

SERVICE_STATES = ("active", "inactive", "error", "deploying", "sleeping")


def add_spec_paths(command: argparse.ArgumentParser) -> None:
    """``-f FILE|DIR`` (repeatable), shared by ``apply`` and ``validate``."""
    command.add_argument(
        "-f",
        "--filename",
        dest="paths",
        action="append",
        type=Path,
        required=True,
        metavar="FILE|DIR",
        help="a spec file, or a folder of *.yaml/*.yml files (repeatable)",
    )


def _connection_options(parser: argparse.ArgumentParser, default: Any) -> None:
    """--url, --token, --context and -o; accepted before or after the command name (the
    subcommand's copies default to SUPPRESS so that they do not overwrite a value given
    before it)."""
    parser.add_argument(
        "--url",
        default=default,
        help="the agent's URL (default: the context's, $POCKESTRATOR_URL, else "
        "http://127.0.0.1:8091)",
    )
    parser.add_argument(
        "--token",
        default=default,
        help="API token (default: the context's token file, $POCKESTRATOR_TOKEN, else the "
        "token file of `pockestrator up` / `token create --save`)",
    )
    parser.add_argument(
        "--context",
        default=default,
        metavar="NAME",
        help="talk to this context's agent (see `pockestrator config get-contexts`)",
    )
    _output_option(parser, default)


def _output_option(parser: argparse.ArgumentParser, default: Any) -> None:
    parser.add_argument(
        "-o",
        "--output",
        type=output_format,
        default=default,
        metavar="FORMAT",
        help="table (default), wide, json, yaml, name, or jsonpath=TEMPLATE (a subset of "
        "kubectl's: {.field}, {.items[*].name}, {range .items[*]}...{end})",
    )


def _names(command: argparse.ArgumentParser, what: str = "a project name or id") -> None:
    command.add_argument("names", nargs="+", metavar="NAME", help=f"{what} (several allowed)")


def add_client_commands(parser: argparse.ArgumentParser, commands: Commands) -> None:
    from pockestrator.client import backup_arguments, config_commands, event_arguments, moves
    from pockestrator.client.completion import SHELLS
    from pockestrator.client.times import HELP as TIME_HELP

    _connection_options(parser, None)
    parser.set_defaults(output="table")
    client = argparse.ArgumentParser(add_help=False)
    _connection_options(client, argparse.SUPPRESS)
    output_only = argparse.ArgumentParser(add_help=False)
    _output_option(output_only, argparse.SUPPRESS)

    apply = add_command(
        commands,
        "apply",
        client,
        "create or update services from spec files (like kubectl apply)",
        description="Create the services the agent does not know, patch the ones that differ, "
        "leave the rest. Every file is checked first; if any has a problem, nothing is applied.",
    )
    add_spec_paths(apply)
    apply.add_argument(
        "--wait", action="store_true", help="wait until every applied service is ready"
    )
    apply.add_argument(
        "--timeout",
        type=positive_seconds,
        default=120.0,
        metavar="SECONDS",
        help="how long --wait waits (default 120)",
    )
    apply.add_argument(
        "--dry-run",
        action="store_true",
        help="say what would change (new services are checked by the agent); change nothing",
    )

    get = add_command(commands, "get", client, "list services, or show one")
    get.add_argument("name", nargs="?", metavar="NAME", help="a project name or id")
    get.add_argument(
        "--status", choices=SERVICE_STATES, help="only services in this state (the agent filters)"
    )
    get.add_argument(
        "-w",
        "--watch",
        action="store_true",
        help="then print a line per change, as it happens (until Ctrl-C)",
    )

    describe = add_command(
        commands, "describe", client, "services in detail: status, hashes, runtime, recent events"
    )
    _names(describe)
    describe.add_argument(
        "--events", type=positive_int, default=10, metavar="N", help="recent events (default 10)"
    )

    delete = add_command(
        commands, "delete", client, "delete services (their data is archived unless --purge)"
    )
    _names(delete)
    delete.add_argument(
        "--purge", action="store_true", help="remove the data for good instead of archiving it"
    )
    delete.add_argument(
        "--no-wait",
        dest="wait",
        action="store_false",
        help="answer at once instead of when the host is clean",
    )

    for action, text in (
        ("start", "start services and keep them running"),
        ("stop", "stop services and keep them stopped"),
        ("restart", "restart services once"),
    ):
        _names(add_command(commands, action, client, text))

    deploy = add_command(
        commands,
        "deploy",
        client,
        "deploy an app (pb_hooks, pb_migrations, pb_public) to a service",
        description="Pack DIR's pb_hooks/, pb_migrations/ and pb_public/ (or send a tar.gz as "
        "it is) and deploy it: checked, booted on a copy, snapshot first, rolled back on failure.",
        name="NAME",
    )
    source = deploy.add_mutually_exclusive_group(required=True)
    source.add_argument("dir", nargs="?", type=Path, metavar="DIR", help="the app's folder")
    source.add_argument(
        "--from-archive", type=Path, metavar="FILE", help="a tar.gz of the app folders"
    )
    rollback = add_command(
        commands, "rollback", client, "go back to an earlier app release", name="NAME"
    )
    rollback.add_argument(
        "release", nargs="?", metavar="RELEASE", help="default: the one before the live one"
    )
    add_command(commands, "releases", client, "a service's app releases", name="NAME")

    logs = add_command(commands, "logs", client, "a service's logs", name="NAME")
    logs.add_argument(
        "-n",
        "--lines",
        "--tail",
        dest="lines",
        type=positive_int,
        default=100,
        metavar="N",
        help="how many of the latest lines (default 100)",
    )
    logs.add_argument(
        "-f", "--follow", action="store_true", help="keep streaming new lines (Ctrl-C ends it)"
    )
    logs.add_argument(
        "-S", "--since", type=moment, metavar="TIME", help=f"only lines since TIME: {TIME_HELP}"
    )
    logs.add_argument(
        "-U", "--until", type=moment, metavar="TIME", help="only lines before TIME (as --since)"
    )

    validate = add_command(
        commands,
        "validate",
        output_only,
        "check spec files offline (no agent needed)",
        description="Parse spec files exactly as the agent does and print every problem with "
        "file:line, field and code. Exit code 1 when there is any.",
    )
    add_spec_paths(validate)
    validate.add_argument(
        "--config", type=Path, help="take default_domain from this agent configuration"
    )
    validate.add_argument(
        "--default-domain",
        help="the domain services without one get a subdomain of (default: the agent "
        "configuration's, else localhost)",
    )

    add_command(commands, "system", client, "the agent's health (exit 1: unhealthy)")
    add_command(
        commands,
        "version",
        client,
        "the client's and the agent's versions (warns when they differ)",
    )
    completion = add_command(
        commands,
        "completion",
        None,
        "print the shell completion script (bash, zsh, fish)",
        description="Generated from this command's own parser; the .deb installs all three.",
    )
    completion.add_argument("shell", choices=SHELLS, metavar="SHELL", help="bash, zsh or fish")
    config_commands.add_parser(commands, output_only)
    backup_arguments.add_backup_commands(commands, client)
    event_arguments.add_event_commands(commands, client)
    add_command(commands, "nodes", client, "the nodes of the fleet (exit 1: a node is lost)")
    moves.add_move_command(commands, client)

    token_commands = add_group(
        commands, "token", "API tokens: create, list, revoke", "token_command"
    )
    create = add_command(
        token_commands,
        "create",
        client,
        "create an API token",
        description="Through the agent's API with a token, or with --local straight into the "
        "agent's database on its host (as root; no agent or token needed: the first token).",
        name="NAME",
    )
    create.add_argument(
        "--save",
        action="store_true",
        help="also write it to the CLI's token file (mode 0600), for later commands",
    )
    create.add_argument(
        "--local",
        action="store_true",
        help="write it into this host's agent database (root), not through the API",
    )
    add_database_options(create)
    add_command(token_commands, "list", client, "list API tokens")
    add_command(token_commands, "revoke", client, "revoke an API token", key="ID|NAME")

    admin_commands = add_group(
        commands, "admin", "dashboard admins (local: the agent's database)", "admin_command"
    )
    admin_create = add_command(
        admin_commands,
        "create",
        output_only,
        "create a dashboard admin in the agent's database (no running agent needed)",
        description="Writes to the agent's SQLite database directly: this is how the first "
        "admin is made. The password is asked for twice on the terminal, or read from "
        "stdin with --password-stdin; it is never echoed.",
        email="EMAIL",
    )
    add_database_options(admin_create)
    admin_create.add_argument(
        "--password-stdin", action="store_true", help="read the password from stdin"
    )
