"""The arguments of ``events`` and ``webhooks list|add|delete|test|deliveries`` and their
dispatch to ``client.events``; beside ``backup_arguments``, so each command group keeps its
parsing in one place and ``pockestrator.cli`` stays the entry point."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from pockestrator.client.arguments import positive_int, positive_seconds

if TYPE_CHECKING:
    from pockestrator.client.commands import Console
    from pockestrator.client.http import ApiClient

COMMANDS = ("events", "webhooks")


def add_event_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    client: argparse.ArgumentParser,
) -> None:
    events = commands.add_parser(
        "events", parents=[client], help="every service's events (or one's), or follow them"
    )
    events.add_argument("name", nargs="?", metavar="NAME", help="only this service's")
    events.add_argument(
        "-n", "--limit", type=positive_int, default=50, metavar="N", help="how many (default 50)"
    )
    events.add_argument(
        "-f", "--follow", action="store_true", help="keep streaming new events (Ctrl-C ends it)"
    )
    webhooks = commands.add_parser("webhooks", help="webhooks: list, add, delete, test, deliveries")
    actions = webhooks.add_subparsers(dest="webhook_command", metavar="ACTION", required=True)
    actions.add_parser("list", parents=[client], help="list webhooks (never their secrets)")
    add = actions.add_parser(
        "add", parents=[client], help="add a webhook; prints its signing secret, once"
    )
    add.add_argument(
        "webhook_url", metavar="URL", help="http(s)://host[:port][/path], no credentials"
    )
    add.add_argument(
        "--kind",
        dest="kinds",
        action="append",
        default=[],
        metavar="KIND",
        help="only events of this kind (repeatable; default: every kind)",
    )
    add.add_argument(
        "--service",
        dest="services",
        action="append",
        default=[],
        metavar="NAME",
        help="only events of this service (repeatable; default: every service)",
    )
    delete = actions.add_parser("delete", parents=[client], help="delete a webhook")
    delete.add_argument("webhook_id", metavar="ID")
    test = actions.add_parser("test", parents=[client], help="send a test event")
    test.add_argument("webhook_id", metavar="ID")
    test.add_argument(
        "--wait",
        type=positive_seconds,
        default=30.0,
        metavar="SECONDS",
        help="wait this long for the delivery's outcome (default 30; exit 1 unless delivered)",
    )
    deliveries = actions.add_parser(
        "deliveries", parents=[client], help="a webhook's last delivery attempts"
    )
    deliveries.add_argument("webhook_id", metavar="ID")
    deliveries.add_argument(
        "-n", "--limit", type=positive_int, default=20, metavar="N", help="how many (default 20)"
    )


def dispatch_events(client: ApiClient, args: argparse.Namespace, console: Console) -> int:
    from pockestrator.client import events

    if args.command == "events":
        return events.events(client, console, args.name, args.limit, args.follow)
    action = args.webhook_command
    if action == "list":
        return events.webhooks_list(client, console)
    if action == "add":
        return events.webhooks_add(client, console, args.webhook_url, args.kinds, args.services)
    if action == "delete":
        return events.webhooks_delete(client, console, args.webhook_id)
    if action == "test":
        return events.webhooks_test(client, console, args.webhook_id, args.wait)
    return events.webhooks_deliveries(client, console, args.webhook_id, args.limit)
