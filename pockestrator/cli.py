"""The ``pockestrator`` command: the daemon, the sandbox, and clients of a running agent.

``agent`` and ``up`` run the product itself. Every other command is a client of a running
agent's REST API (``pockestrator.client``), except two that must work without one:
``validate`` (offline, the agent's own spec parser) and ``admin create`` (the bootstrap of
the first admin, written straight into the agent's database through the store).

Exit codes scripts can rely on: 0 success, 1 failure, 2 usage error (argparse's own), 130
when Ctrl-C interrupts a command (``logs -f`` is the exception: Ctrl-C is how a follow
ends, so it exits 0).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pockestrator import __version__

if TYPE_CHECKING:
    from pockestrator.client.commands import Console
    from pockestrator.client.http import ApiClient

EXIT_INTERRUPTED = 130
SERVICE_STATES = ("active", "inactive", "error", "deploying")


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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
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


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < value < 1e7:
        raise argparse.ArgumentTypeError("must be a positive number of seconds")
    return value


def _connection_options(parser: argparse.ArgumentParser, default: Any) -> None:
    """--url, --token and -o; accepted before or after the command name (the subcommand's
    copies default to SUPPRESS so that they do not overwrite a value given before it)."""
    parser.add_argument(
        "--url",
        default=default,
        help="the agent's URL (default: $POCKESTRATOR_URL, else http://127.0.0.1:8091)",
    )
    parser.add_argument(
        "--token",
        default=default,
        help="API token (default: $POCKESTRATOR_TOKEN, else the token file of "
        "`pockestrator up` / `token create --save`)",
    )
    _output_option(parser, default)


def _output_option(parser: argparse.ArgumentParser, default: Any) -> None:
    parser.add_argument(
        "-o",
        "--output",
        choices=["table", "json", "yaml"],
        default=default,
        help="output format (default: table)",
    )


def _add_client_commands(
    parser: argparse.ArgumentParser,
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
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
        type=_positive_seconds,
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
    get.add_argument("--status", choices=SERVICE_STATES, help="only services in this state")

    describe = commands.add_parser(
        "describe",
        parents=[client],
        help="one service in detail: status, hashes, runtime, recent events",
    )
    describe.add_argument("name", metavar="NAME")
    describe.add_argument(
        "--events", type=_positive_int, default=10, metavar="N", help="recent events (default 10)"
    )

    delete = commands.add_parser(
        "delete", parents=[client], help="delete a service (its data is archived unless --purge)"
    )
    delete.add_argument("name", metavar="NAME")
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
        ("start", "start a service and keep it running"),
        ("stop", "stop a service and keep it stopped"),
        ("restart", "restart a service once"),
    ):
        control = commands.add_parser(action, parents=[client], help=text)
        control.add_argument("name", metavar="NAME")

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
        type=_positive_int,
        default=100,
        metavar="N",
        help="how many of the latest lines (default 100)",
    )
    logs.add_argument(
        "-f", "--follow", action="store_true", help="keep streaming new lines (Ctrl-C ends it)"
    )
    logs.add_argument("--since", metavar="TIME", help="only lines since, e.g. 2025-07-31T19:30:00Z")

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
        "nodes", parents=[client], help="the nodes of the fleet (exit 1: a node is lost)"
    )
    _add_backup_commands(commands, client)

    token = commands.add_parser("token", help="API tokens: create, list, revoke")
    token_commands = token.add_subparsers(dest="token_command", metavar="ACTION", required=True)
    create = token_commands.add_parser("create", parents=[client], help="create an API token")
    create.add_argument("name", metavar="NAME")
    create.add_argument(
        "--save",
        action="store_true",
        help="also write it to the CLI's token file (mode 0600), for later commands",
    )
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
    where = admin_create.add_mutually_exclusive_group()
    where.add_argument("--config", type=Path, help="the agent's configuration file")
    where.add_argument("--database", type=Path, help="the agent's database file")
    admin_create.add_argument(
        "--password-stdin", action="store_true", help="read the password from stdin"
    )


def _port(text: str) -> int:
    value = _positive_int(text)
    if not 1024 <= value <= 65535:
        raise argparse.ArgumentTypeError("must be a port from 1024 to 65535")
    return value


def _add_backup_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    client: argparse.ArgumentParser,
) -> None:
    """``backup create|list|verify|restore``, ``clone``, ``import``, ``archive list|restore``."""
    backup = commands.add_parser(
        "backup", help="a service's backups: create, list, verify, restore"
    )
    actions = backup.add_subparsers(dest="backup_command", metavar="ACTION", required=True)
    create = actions.add_parser("create", parents=[client], help="take a backup now (online)")
    create.add_argument("name", metavar="NAME")
    create.add_argument(
        "--no-wait", dest="wait", action="store_false", help="answer at once, do not follow it"
    )
    listing = actions.add_parser("list", parents=[client], help="a service's backups, newest first")
    listing.add_argument("name", metavar="NAME")
    verify = actions.add_parser(
        "verify", parents=[client], help="restore a backup into a scratch box, check it, boot it"
    )
    verify.add_argument("name", metavar="NAME")
    verify.add_argument("backup_id", nargs="?", metavar="ID", help="default: the newest")
    restore = actions.add_parser(
        "restore",
        parents=[client],
        help="put a backup back in place (asks first: says what is lost)",
    )
    restore.add_argument("name", metavar="NAME")
    restore.add_argument("backup_id", metavar="ID")
    restore.add_argument("-y", "--yes", action="store_true", help="do not ask")

    clone = commands.add_parser(
        "clone",
        parents=[client],
        help="a new service from another one's data (a backup of it, or taken now)",
    )
    clone.add_argument("source", metavar="SOURCE")
    clone.add_argument("name", metavar="NEW_NAME")
    clone.add_argument("--port", type=_port, required=True)
    clone.add_argument("--domain", help="default: <NEW_NAME>.<the agent's default domain>")
    clone.add_argument(
        "--from-backup", dest="backup_id", metavar="ID", help="default: a backup taken now"
    )

    imported = commands.add_parser(
        "import",
        parents=[client],
        help="a new service from a PocketBase backup ZIP or a pb_data folder",
    )
    imported.add_argument("name", metavar="NEW_NAME")
    imported.add_argument("source", type=Path, metavar="ZIP|PB_DATA")
    imported.add_argument("--port", type=_port, required=True)
    imported.add_argument(
        "--version",
        dest="pb_version",
        required=True,
        metavar="VERSION",
        help="the PocketBase release to run it with",
    )
    imported.add_argument("--domain", help="default: <NEW_NAME>.<the agent's default domain>")

    archive = commands.add_parser("archive", help="deleted services' data: list, restore")
    archive_actions = archive.add_subparsers(
        dest="archive_command", metavar="ACTION", required=True
    )
    archive_actions.add_parser("list", parents=[client], help="the archive, with disk use")
    back = archive_actions.add_parser(
        "restore", parents=[client], help="an archived folder back as a service"
    )
    back.add_argument("archive_id", metavar="ID")
    back.add_argument("--port", type=_port, required=True)
    back.add_argument("--version", dest="pb_version", required=True, metavar="VERSION")
    back.add_argument("--name", help="default: the name it had")
    back.add_argument("--domain")


def _dispatch_backups(client: ApiClient, args: argparse.Namespace, console: Console) -> int:
    from pockestrator.client import backups

    command = args.command
    if command == "clone":
        return backups.clone(
            client, console, args.source, args.name, args.port, args.domain, args.backup_id
        )
    if command == "import":
        return backups.import_service(
            client, console, args.name, args.source, args.port, args.pb_version, args.domain
        )
    if command == "archive":
        if args.archive_command == "list":
            return backups.archive_list(client, console)
        return backups.archive_restore(
            client, console, args.archive_id, args.port, args.pb_version, args.name, args.domain
        )
    action = args.backup_command
    if action == "create":
        return backups.backup_create(client, console, args.name, args.wait)
    if action == "list":
        return backups.backup_list(client, console, args.name)
    if action == "verify":
        return backups.backup_verify(client, console, args.name, args.backup_id)
    return backups.backup_restore(client, console, args.name, args.backup_id, args.yes)


def _run_client_command(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """Run one client command; a failure is one message on stderr and exit code 1."""
    from pockestrator.client.commands import Console
    from pockestrator.client.http import ClientError

    console = Console(fmt=args.output)
    try:
        return _dispatch(parser, args, console)
    except ClientError as exc:
        console.note(f"pockestrator {args.command}: {exc}")
        return 1
    except KeyboardInterrupt:
        console.note("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader (e.g. `| head`) is gone: nothing more to say, and no traceback.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


def _client(parser: argparse.ArgumentParser, args: argparse.Namespace) -> ApiClient:
    from pockestrator.client.connection import (
        SettingError,
        resolve_token,
        resolve_url,
        token_file,
    )
    from pockestrator.client.http import ApiClient

    try:
        endpoint = resolve_url(args.url, os.environ)
        credentials = resolve_token(args.token, os.environ, token_file())
    except SettingError as exc:
        parser.error(str(exc))
    return ApiClient(endpoint, credentials)


def _dispatch(parser: argparse.ArgumentParser, args: argparse.Namespace, console: Console) -> int:
    from pockestrator.client import commands

    command = args.command
    if command == "validate":
        return commands.validate(console, args.paths, _default_domain(parser, args))
    if command == "admin":
        return _admin_create(args, console)
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
    if command == "get":
        return commands.get(client, console, args.name, args.status)
    if command == "describe":
        return commands.describe(client, console, args.name, args.events)
    if command == "delete":
        return commands.delete(client, console, args.name, args.purge, args.wait)
    if command in ("start", "stop", "restart"):
        return commands.control(client, console, command, args.name)
    if command in ("deploy", "rollback", "releases"):
        from pockestrator.client import deploys

        if command == "deploy":
            return deploys.deploy(client, console, args.name, args.dir, args.from_archive)
        if command == "rollback":
            return deploys.rollback(client, console, args.name, args.release)
        return deploys.releases(client, console, args.name)
    if command == "logs":
        return commands.logs(client, console, args.name, args.lines, args.follow, args.since)
    if command == "system":
        return commands.system(client, console)
    if command == "nodes":
        return commands.nodes(client, console)
    if command in ("backup", "clone", "import", "archive"):
        return _dispatch_backups(client, args, console)
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


PASSWORD_READ_MAX = 4096


def _read_password(args: argparse.Namespace) -> str:
    from pockestrator.client.http import ClientError

    if args.password_stdin:
        text = sys.stdin.read(PASSWORD_READ_MAX + 1)
        if len(text) > PASSWORD_READ_MAX:
            raise ClientError("the password on stdin is too long")
        password = text.removesuffix("\n").removesuffix("\r")
        if "\n" in password or "\r" in password:
            raise ClientError("the password on stdin must be one line")
        return password
    if not sys.stdin.isatty():
        raise ClientError(
            "no terminal to ask for the password on: pipe it in with --password-stdin"
        )
    first = getpass.getpass(f"Password for {args.email}: ")
    second = getpass.getpass("Repeat the password: ")
    if first != second:
        raise ClientError("the two passwords differ; no admin was created")
    return first


def _admin_create(args: argparse.Namespace, console: Console) -> int:
    """The first admin's bootstrap: straight into the agent's database, its account store."""
    from pockestrator.accounts.passwords import create_admin
    from pockestrator.accounts.store import AccountStore, AdminExists
    from pockestrator.client.http import ClientError
    from pockestrator.config import ConfigError, load_config

    if args.database is not None:
        database, source = args.database.absolute(), "--database"
    else:
        try:
            database = load_config(args.config).database
        except ConfigError as exc:
            raise ClientError(str(exc)) from None
        source = f"the configuration {args.config}" if args.config else "the default configuration"
    if not database.is_file():
        raise ClientError(
            f"no agent database at {database} (from {source}); start the agent once so that "
            "it creates it, or pass the agent's --config or --database"
        )
    password = _read_password(args)
    accounts = AccountStore(database)
    try:
        admin = create_admin(accounts, args.email, password)
    except AdminExists:
        raise ClientError(f"an admin with the e-mail {args.email} already exists") from None
    except ValueError as exc:
        raise ClientError(f"{args.email}: {exc}") from None
    finally:
        accounts.close()
    data = {"id": admin.id, "email": admin.email, "database": str(database)}
    console.show(data, lambda: f"created admin {admin.email} (id {admin.id}) in {database}")
    return 0
