"""The ``pockestrator`` command: the daemon, the sandbox, and clients of a running agent.

Exit codes scripts can rely on: 0 success, 1 failure, 2 usage error (argparse's own).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

from pockestrator import __version__


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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
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
    print(f"pockestrator {args.command}: not built yet", file=sys.stderr)
    return 1
