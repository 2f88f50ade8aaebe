"""The ``pockestrator`` command: the daemon, the sandbox, and clients of a running agent.

``agent`` and ``up`` run the product itself. Every other command is a client of a running
agent's REST API (``pockestrator.client``), except those that must work without one:
``validate`` (offline, the agent's own spec parser), ``admin create`` and ``token create
--local`` (the bootstrap of the first admin and token, written straight into the agent's
database through its store: ``client.local``), ``config`` (the contexts file) and
``completion`` (generated from this parser).

Which agent: ``--url``/``--token``, ``--context NAME`` (``client.contexts``), the
environment, the current context, the defaults; each option is accepted anywhere on the
line. Exit codes (``client.exits``): 0 ok, 1 failed, 2 usage, 3 invalid, 4 not found,
5 unreachable, 6 refused, 130 interrupted (``logs -f`` ends with 0 on Ctrl-C: that is how a
follow ends). Parsers of command groups live beside their commands
(``client.backup_arguments``, ``client.config_commands``); every ``--help`` has examples
(``client.examples``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pockestrator import __version__
from pockestrator.client import exits
from pockestrator.client.arguments import (
    add_database_options,
    moment,
    output_format,
    positive_int,
    positive_seconds,
)

if TYPE_CHECKING:
    from pockestrator.client.commands import Console
    from pockestrator.client.http import ApiClient

EXIT_INTERRUPTED = exits.INTERRUPTED
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


def build_parser() -> argparse.ArgumentParser:
    from pockestrator.client.examples import add_examples

    parser = argparse.ArgumentParser(
        prog="pockestrator",
        description="Run many PocketBase instances on one host, kept right by a reconciling agent.",
    )
    parser.add_argument("--version", action="version", version=f"pockestrator {__version__}")
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="log verbosity (default: info)",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    up = commands.add_parser(
        "up",
        help="run the sandbox: private systemd, Caddy, the agent and its dashboard",
        description="Run the whole product on this machine (root needed), watching ./specs.",
    )
    up.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="where the sandbox keeps its data (default /var/lib/pockestrator-sandbox)",
    )
    up.add_argument(
        "--specs",
        type=Path,
        default=Path("specs"),
        help="the spec folder to watch (default ./specs)",
    )
    up.add_argument("--port", type=int, default=8091, help="API and dashboard port (default 8091)")
    up.add_argument(
        "--caddy-port",
        type=int,
        default=8080,
        help="Caddy's HTTP port (default 8080, or a free one if taken)",
    )

    agent = commands.add_parser("agent", help="run the reconciling agent (the daemon)")
    agent.add_argument(
        "--config",
        type=Path,
        default=None,
        help="YAML configuration file (POCKESTRATOR_* variables override it)",
    )
    _add_client_commands(parser, commands)
    add_examples(parser)
    return parser


# Options whose value may start with '-' (``--since -1h``, as journalctl takes it), which
# argparse would otherwise read as another option.
_DASHED_VALUES = frozenset({"-S", "--since", "-U", "--until"})


def join_dashed_values(argv: Sequence[str]) -> list[str]:
    """``--since -1h`` as ``--since=-1h`` (and ``-S -1h`` as ``-S-1h``), up to ``--``."""
    joined: list[str] = []
    index = 0
    while index < len(argv):
        word = argv[index]
        if word == "--":
            return [*joined, *argv[index:]]
        following = argv[index + 1] if index + 1 < len(argv) else None
        if word in _DASHED_VALUES and following is not None and following.startswith("-"):
            joined.append(f"{word}={following}" if word.startswith("--") else word + following)
            index += 2
            continue
        joined.append(word)
        index += 1
    return joined


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(join_dashed_values(sys.argv[1:] if argv is None else argv))
    if args.command is None:
        parser.print_help()
        return exits.USAGE
    if args.command not in ("agent", "up"):
        return _run_client_command(parser, args)
    from pockestrator.agent.logs import configure_logging

    configure_logging(args.log_level)
    if args.command == "agent":
        from pockestrator.agent.daemon import run_agent

        return asyncio.run(run_agent(args.config))
    if args.command == "up":
        from pockestrator.agent.up import DEFAULT_STATE_DIR, UpOptions, run_up

        options = UpOptions(
            state_dir=(args.state_dir or DEFAULT_STATE_DIR).resolve(),
            specs_dir=args.specs,
            listen_port=args.port,
            caddy_port=args.caddy_port,
        )
        return asyncio.run(run_up(options))
    raise AssertionError(f"unhandled command {args.command}")


# -- client commands ---------------------------------------------------------------------


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


def _add_client_commands(
    parser: argparse.ArgumentParser,
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    from pockestrator.client import backup_arguments, config_commands, event_arguments, moves
    from pockestrator.client.completion import SHELLS
    from pockestrator.client.times import HELP as TIME_HELP

    _connection_options(parser, None)
    parser.set_defaults(output="table")
    client = argparse.ArgumentParser(add_help=False)
    _connection_options(client, argparse.SUPPRESS)
    output_only = argparse.ArgumentParser(add_help=False)
    _output_option(output_only, argparse.SUPPRESS)

    apply = commands.add_parser(
        "apply",
        parents=[client],
        help="create or update services from spec files (like kubectl apply)",
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

    get = commands.add_parser("get", parents=[client], help="list services, or show one")
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

    describe = commands.add_parser(
        "describe",
        parents=[client],
        help="services in detail: status, hashes, runtime, recent events",
    )
    _names(describe)
    describe.add_argument(
        "--events", type=positive_int, default=10, metavar="N", help="recent events (default 10)"
    )

    delete = commands.add_parser(
        "delete", parents=[client], help="delete services (their data is archived unless --purge)"
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
        _names(commands.add_parser(action, parents=[client], help=text))

    deploy = commands.add_parser(
        "deploy",
        parents=[client],
        help="deploy an app (pb_hooks, pb_migrations, pb_public) to a service",
        description="Pack DIR's pb_hooks/, pb_migrations/ and pb_public/ (or send a tar.gz as "
        "it is) and deploy it: checked, booted on a copy, snapshot first, rolled back on failure.",
    )
    deploy.add_argument("name", metavar="NAME")
    source = deploy.add_mutually_exclusive_group(required=True)
    source.add_argument("dir", nargs="?", type=Path, metavar="DIR", help="the app's folder")
    source.add_argument(
        "--from-archive", type=Path, metavar="FILE", help="a tar.gz of the app folders"
    )
    rollback = commands.add_parser(
        "rollback", parents=[client], help="go back to an earlier app release"
    )
    rollback.add_argument("name", metavar="NAME")
    rollback.add_argument(
        "release", nargs="?", metavar="RELEASE", help="default: the one before the live one"
    )
    releases = commands.add_parser("releases", parents=[client], help="a service's app releases")
    releases.add_argument("name", metavar="NAME")

    logs = commands.add_parser("logs", parents=[client], help="a service's logs")
    logs.add_argument("name", metavar="NAME")
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

    validate = commands.add_parser(
        "validate",
        parents=[output_only],
        help="check spec files offline (no agent needed)",
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

    commands.add_parser("system", parents=[client], help="the agent's health (exit 1: unhealthy)")
    commands.add_parser(
        "version",
        parents=[client],
        help="the client's and the agent's versions (warns when they differ)",
    )
    completion = commands.add_parser(
        "completion",
        help="print the shell completion script (bash, zsh, fish)",
        description="Generated from this command's own parser; the .deb installs all three.",
    )
    completion.add_argument("shell", choices=SHELLS, metavar="SHELL", help="bash, zsh or fish")
    config_commands.add_parser(commands, output_only)
    backup_arguments.add_backup_commands(commands, client)
    event_arguments.add_event_commands(commands, client)
    commands.add_parser(
        "nodes", parents=[client], help="the nodes of the fleet (exit 1: a node is lost)"
    )
    moves.add_move_command(commands, client)

    token = commands.add_parser("token", help="API tokens: create, list, revoke")
    token_commands = token.add_subparsers(dest="token_command", metavar="ACTION", required=True)
    create = token_commands.add_parser(
        "create",
        parents=[client],
        help="create an API token",
        description="Through the agent's API with a token, or with --local straight into the "
        "agent's database on its host (as root; no agent or token needed: the first token).",
    )
    create.add_argument("name", metavar="NAME")
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
    token_commands.add_parser("list", parents=[client], help="list API tokens")
    revoke = token_commands.add_parser("revoke", parents=[client], help="revoke an API token")
    revoke.add_argument("key", metavar="ID|NAME")

    admin = commands.add_parser("admin", help="dashboard admins (local: the agent's database)")
    admin_commands = admin.add_subparsers(dest="admin_command", metavar="ACTION", required=True)
    admin_create = admin_commands.add_parser(
        "create",
        parents=[output_only],
        help="create a dashboard admin in the agent's database (no running agent needed)",
        description="Writes to the agent's SQLite database directly: this is how the first "
        "admin is made. The password is asked for twice on the terminal, or read from "
        "stdin with --password-stdin; it is never echoed.",
    )
    admin_create.add_argument("email", metavar="EMAIL")
    add_database_options(admin_create)
    admin_create.add_argument(
        "--password-stdin", action="store_true", help="read the password from stdin"
    )


def _console(args: argparse.Namespace) -> Console:
    from pockestrator.client import output
    from pockestrator.client.arguments import JSONPATH_PREFIX
    from pockestrator.client.commands import Console

    chosen = str(args.output)
    output.TABLE_WIDTH[0] = output.terminal_width(
        os.environ, sys.stdout.isatty(), shutil.get_terminal_size((0, 0)).columns
    )
    if chosen.startswith(JSONPATH_PREFIX):
        return Console(fmt="jsonpath", template=chosen[len(JSONPATH_PREFIX) :])
    return Console(fmt=chosen)  # type: ignore[arg-type]  # output_format checked it


def _run_client_command(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """Run one client command; a failure is one message on stderr and its exit code."""
    from pockestrator.client.connection import SettingError
    from pockestrator.client.http import ClientError

    console = _console(args)
    try:
        return _dispatch(parser, args, console)
    except ClientError as exc:
        console.note(f"pockestrator {args.command}: {exc}")
        return exits.exit_code(exc)
    except SettingError as exc:
        console.note(f"pockestrator {args.command}: {exc}")
        return exits.USAGE
    except KeyboardInterrupt:
        console.note("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader (e.g. `| head`) is gone: nothing more to say, and no traceback.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


def _client(parser: argparse.ArgumentParser, args: argparse.Namespace) -> ApiClient:
    from pockestrator.client.connection import Credentials, SettingError, local_socket, resolve
    from pockestrator.client.contexts import load_contexts
    from pockestrator.client.http import ApiClient
    from pockestrator.client.version import api_mismatch

    try:
        # The host's socket, unless a URL, a token or a context (named, or current) says
        # which agent: kubectl's current context wins over the local default too.
        local = None
        if args.context is None and load_contexts(os.environ).current is None:
            local = local_socket(args.url, args.token, os.environ)
        if local is not None:
            client = ApiClient(local, Credentials(None, "the local socket (no token needed)"))
        else:
            client = ApiClient(*resolve(args.url, args.token, args.context, os.environ))
    except SettingError as exc:
        parser.error(str(exc))

    def warn(agent_api: str) -> None:
        warning = api_mismatch(agent_api)
        if warning is not None:
            print(warning, file=sys.stderr, flush=True)

    client.on_api_version = warn
    return client


def _dispatch(parser: argparse.ArgumentParser, args: argparse.Namespace, console: Console) -> int:
    from pockestrator.client import commands, local

    command = args.command
    if command == "validate":
        return commands.validate(console, args.paths, _default_domain(parser, args))
    if command == "admin":
        return local.admin_create(args, console)
    if command == "completion":
        from pockestrator.client.completion import render

        console.out.write(render(args.shell, parser))
        return 0
    if command == "config":
        from pockestrator.client import config_commands

        return config_commands.run(args, console)
    if command == "token" and getattr(args, "local", False):  # only `token create` has it
        return local.token_create(args, console, _save_token if args.save else None)
    client = _client(parser, args)
    if command == "apply":
        return commands.apply(
            client,
            console,
            args.paths,
            wait=args.wait,
            timeout=args.timeout,
            dry_run=args.dry_run,
        )
    if command == "get" and args.watch:
        return commands.watch(client, console, args.name, args.status)
    if command == "get":
        return commands.get(client, console, args.name, args.status)
    if command == "describe":
        return commands.each(
            console, args.names, lambda name: commands.describe(client, console, name, args.events)
        )
    if command == "delete":
        return commands.each(
            console,
            args.names,
            lambda name: commands.delete(client, console, name, args.purge, args.wait),
        )
    if command in ("start", "stop", "restart"):
        return commands.each(
            console, args.names, lambda name: commands.control(client, console, command, name)
        )
    if command in ("deploy", "rollback", "releases"):
        from pockestrator.client import deploys

        if command == "deploy":
            return deploys.deploy(client, console, args.name, args.dir, args.from_archive)
        if command == "rollback":
            return deploys.rollback(client, console, args.name, args.release)
        return deploys.releases(client, console, args.name)
    if command == "logs":
        return commands.logs(
            client, console, args.name, args.lines, args.follow, args.since, args.until
        )
    if command == "system":
        return commands.system(client, console)
    if command == "version":
        from pockestrator.client.version import version

        return version(client, console)
    if command == "nodes":
        return commands.nodes(client, console)
    if command == "move":
        from pockestrator.client import moves

        return moves.move(
            client,
            console,
            args.name,
            args.to,
            from_backup=args.from_backup,
            wait=args.wait,
            timeout=args.timeout,
        )
    if command in ("backup", "clone", "import", "archive"):
        from pockestrator.client.backup_arguments import dispatch_backups

        return dispatch_backups(client, args, console)
    if command in ("events", "webhooks"):
        from pockestrator.client.event_arguments import dispatch_events

        return dispatch_events(client, args, console)
    action = args.token_command
    if action == "create":
        return commands.token_create(client, console, args.name, _save_token if args.save else None)
    if action == "list":
        return commands.token_list(client, console)
    return commands.token_revoke(client, console, args.key)


def _default_domain(parser: argparse.ArgumentParser, args: argparse.Namespace) -> str:
    """--default-domain, else the configuration's (file and POCKESTRATOR_* as the agent
    reads them), else the agent's default."""
    from pydantic import ValidationError

    from pockestrator.config import AgentConfig, ConfigError, load_config

    if args.default_domain is not None:
        try:
            return AgentConfig(default_domain=args.default_domain).default_domain
        except ValidationError as exc:
            message = exc.errors()[0]["msg"]
            parser.error(f"--default-domain: {message}")
    try:
        return load_config(args.config).default_domain
    except ConfigError as exc:
        from pockestrator.client.http import ClientError

        raise ClientError(str(exc)) from None


def _save_token(token: str) -> Path:
    """Write the CLI's token file atomically, readable by its owner only."""
    from pockestrator.client.connection import token_file
    from pockestrator.files import write_atomic

    path = token_file()
    write_atomic(path, token + "\n", mode=0o600)
    return path
