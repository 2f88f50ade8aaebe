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
follow ends). This module is the entry point and the product's own commands; the client
commands' parsers are ``client.command_arguments`` (command groups' beside their commands:
``client.backup_arguments``, ``client.config_commands``), running one is
``client.dispatch``; every ``--help`` has examples (``client.examples``).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

from pockestrator import __version__
from pockestrator.client import exits
from pockestrator.client.command_arguments import add_client_commands
from pockestrator.client.dispatch import run_client_command


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
    add_client_commands(parser, commands)
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
        return run_client_command(parser, args)
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
