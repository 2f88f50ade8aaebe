"""The arguments of the backup commands (``backup create|list|verify|restore``, ``clone``,
``import``, ``archive list|restore``) and their dispatch to ``client.backups``; split from
``pockestrator.cli`` so that each command group keeps its parsing beside its neighbours.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from pockestrator.client.arguments import positive_int

if TYPE_CHECKING:
    from pockestrator.client.commands import Console
    from pockestrator.client.http import ApiClient


def port(text: str) -> int:
    value = positive_int(text)
    if not 1024 <= value <= 65535:
        raise argparse.ArgumentTypeError("must be a port from 1024 to 65535")
    return value


def add_backup_commands(
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
    clone.add_argument("--port", type=port, required=True)
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
    imported.add_argument("--port", type=port, required=True)
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
