"""Running one client command: the console it writes to, the agent it talks to (the
host's socket, else ``--url``/``--token``/``--context``), the command's function, and a
failure as one message on stderr with its exit code (``client.exits``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from pockestrator.client import exits

if TYPE_CHECKING:
    from pockestrator.client.commands import Console
    from pockestrator.client.http import ApiClient


EXIT_INTERRUPTED = exits.INTERRUPTED


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


def run_client_command(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
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
    from pockestrator.client import commands, local, spec_commands, token_commands

    command = args.command
    if command == "validate":
        return spec_commands.validate(console, args.paths, _default_domain(parser, args))
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
        return local.token_create(args, console, save_token if args.save else None)
    client = _client(parser, args)
    if command == "apply":
        return spec_commands.apply(
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
        return token_commands.token_create(
            client, console, args.name, save_token if args.save else None
        )
    if action == "list":
        return token_commands.token_list(client, console)
    return token_commands.token_revoke(client, console, args.key)


def _default_domain(parser: argparse.ArgumentParser, args: argparse.Namespace) -> str:
    """--default-domain, else the configuration's (file and POCKESTRATOR_* as the agent
    reads them), else the agent's default."""
    from pydantic import ValidationError

    from pockestrator.config import AgentConfig

    if args.default_domain is not None:
        try:
            return AgentConfig(default_domain=args.default_domain).default_domain
        except ValidationError as exc:
            message = exc.errors()[0]["msg"]
            parser.error(f"--default-domain: {message}")
    from pockestrator.client.local import agent_config

    return agent_config(args.config).default_domain


def save_token(token: str) -> Path:
    """Write the CLI's token file atomically, readable by its owner only."""
    from pockestrator.client.connection import token_file
    from pockestrator.files import write_atomic

    path = token_file()
    write_atomic(path, token + "\n", mode=0o600)
    return path
