"""The ``pockestrator`` command: the daemon, the sandbox, and clients of a running agent.

Exit codes scripts can rely on: 0 success, 1 failure, 2 usage error (argparse's own).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from pockestrator import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pockestrator",
        description="Run many PocketBase instances on one host, kept right by a reconciling agent.",
    )
    parser.add_argument("--version", action="version", version=f"pockestrator {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser("up", help="run the sandbox: private systemd, Caddy, agent, dashboard")
    agent = commands.add_parser("agent", help="run the reconciling agent (the daemon)")
    agent.add_argument("--config", help="YAML configuration file")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    print(f"pockestrator {args.command}: not built yet", file=sys.stderr)
    return 1
