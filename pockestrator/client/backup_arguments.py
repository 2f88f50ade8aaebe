"""The arguments of the backup commands (``backup create|list|verify|restore``, ``clone``,
``import``, ``archive list|restore``) and their dispatch to ``client.backups``; split from
``pockestrator.cli`` so that each command group keeps its parsing beside its neighbours.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from pockestrator.client.arguments import Commands, add_command, add_group, positive_int

if TYPE_CHECKING:
    from pockestrator.client.commands import Console
    from pockestrator.client.http import ApiClient


def port(text: str) -> int:
    value = positive_int(text)
    if not 1024 <= value <= 65535:
        raise argparse.ArgumentTypeError("must be a port from 1024 to 65535")
    return value


def add_backup_commands(commands: Commands, client: argparse.ArgumentParser) -> None:
    """``backup create|list|verify|restore``, ``clone``, ``import``, ``archive list|restore``."""
    actions = add_group(
        commands, "backup", "a service's backups: create, list, verify, restore", "backup_command"
    )
    create = add_command(actions, "create", client, "take a backup now (online)", name="NAME")
    create.add_argument(
        "--no-wait", dest="wait", action="store_false", help="answer at once, do not follow it"
    )
    add_command(actions, "list", client, "a service's backups, newest first", name="NAME")
    verify = add_command(
        actions,
        "verify",
        client,
        "restore a backup into a scratch box, check it, boot it",
        name="NAME",
    )
    verify.add_argument("backup_id", nargs="?", metavar="ID", help="default: the newest")
    restore = add_command(
        actions,
        "restore",
        client,
        "put a backup back in place (asks first: says what is lost)",
        name="NAME",
        backup_id="ID",
    )
    restore.add_argument("-y", "--yes", action="store_true", help="do not ask")

    clone = add_command(
        commands,
        "clone",
        client,
        "a new service from another one's data (a backup of it, or taken now)",
        source="SOURCE",
        name="NEW_NAME",
    )
    clone.add_argument("--port", type=port, required=True)
    clone.add_argument("--domain", help="default: <NEW_NAME>.<the agent's default domain>")
    clone.add_argument(
        "--from-backup", dest="backup_id", metavar="ID", help="default: a backup taken now"
    )

    imported = add_command(
        commands,
        "import",
        client,
        "a new service from a PocketBase backup ZIP or a pb_data folder",
        name="NEW_NAME",
    )
    imported.add_argument("source", type=Path, metavar="ZIP|PB_DATA")
    imported.add_argument("--port", type=port, required=True)
    imported.add_argument(
        "--version",
        dest="pb_version",
        required=True,
        metavar="VERSION",
        help="the PocketBase release to run it with",
    )
    imported.add_argument("--domain", help="default: <NEW_NAME>.<the agent's default domain>")

    archive_actions = add_group(
        commands, "archive", "deleted services' data: list, restore", "archive_command"
    )
    add_command(archive_actions, "list", client, "the archive, with disk use")
    back = add_command(
        archive_actions, "restore", client, "an archived folder back as a service", archive_id="ID"
    )
    back.add_argument("--port", type=port, required=True)
    back.add_argument("--version", dest="pb_version", required=True, metavar="VERSION")
    back.add_argument("--name", help="default: the name it had")
    back.add_argument("--domain")


def dispatch_backups(client: ApiClient, args: argparse.Namespace, console: Console) -> int:
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
