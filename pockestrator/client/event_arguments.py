"""The arguments of ``events`` and ``webhooks list|add|delete|test|deliveries`` and their
dispatch to ``client.events``; beside ``backup_arguments``, so each command group keeps its
parsing in one place and ``pockestrator.cli`` stays the entry point."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from pockestrator.client.arguments import (
    Commands,
    add_command,
    add_group,
    positive_int,
    positive_seconds,
)

if TYPE_CHECKING:
    from pockestrator.client.commands import Console
    from pockestrator.client.http import ApiClient

COMMANDS = ("events", "webhooks")


def add_event_commands(commands: Commands, client: argparse.ArgumentParser) -> None:
    events = add_command(
        commands, "events", client, "every service's events (or one's), or follow them"
    )
    events.add_argument("name", nargs="?", metavar="NAME", help="only this service's")
    events.add_argument(
        "-n", "--limit", type=positive_int, default=50, metavar="N", help="how many (default 50)"
    )
    events.add_argument(
        "-f", "--follow", action="store_true", help="keep streaming new events (Ctrl-C ends it)"
    )
    actions = add_group(
        commands, "webhooks", "webhooks: list, add, delete, test, deliveries", "webhook_command"
    )
    add_command(actions, "list", client, "list webhooks (never their secrets)")
    add = add_command(actions, "add", client, "add a webhook; prints its signing secret, once")
    add.add_argument(
        "webhook_url", metavar="URL", help="http(s)://host[:port][/path], no credentials"
    )
    for what, metavar in (("kind", "KIND"), ("service", "NAME")):
        add.add_argument(
            f"--{what}",
            dest=f"{what}s",
            action="append",
            default=[],
            metavar=metavar,
            help=f"only events of this {what} (repeatable; default: every {what})",
        )
    add_command(actions, "delete", client, "delete a webhook", webhook_id="ID")
    test = add_command(actions, "test", client, "send a test event", webhook_id="ID")
    test.add_argument(
        "--wait",
        type=positive_seconds,
        default=30.0,
        metavar="SECONDS",
        help="wait this long for the delivery's outcome (default 30; exit 1 unless delivered)",
    )
    deliveries = add_command(
        actions, "deliveries", client, "a webhook's last delivery attempts", webhook_id="ID"
    )
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
