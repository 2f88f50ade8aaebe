"""The backup commands: ``backup create|list|verify|restore``, ``clone``, ``import``,
``archive list|restore``.

A long operation (a snapshot, a verification, a restore, a clone's first start) is one
request the agent answers when it is done, or with 202 after a minute; the command then
asks again for the operation, which the agent again answers when it ends (a long poll, not
a busy one). Meanwhile stderr shows progress: a spinner and the time so far on a terminal,
one line per state change elsewhere. A restore asks before it replaces data, naming what
is lost (``--yes`` skips the question; without a terminal it is required).

``import DIR`` zips a local ``pb_data`` folder the way PocketBase's own backups are made
(its contents at the top, without ``backups/``; links and special files are left out and
said so) and uploads it: the agent only ever unpacks archives it has checked.
"""

from __future__ import annotations

import os
import stat
import sys
import tempfile
import threading
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from pockestrator.client.commands import Console
from pockestrator.client.http import WAITING_TIMEOUT, ApiClient, ClientError, Reply, service_path
from pockestrator.client.output import duration, short_time, table
from pockestrator.client.progress import Item, Progress

REDRAW_SECONDS = 0.2


def with_progress(
    err: TextIO, what: str, request: Callable[[], Reply], interactive: bool | None = None
) -> Reply:
    """Run ``request`` in a thread while stderr shows that ``what`` is under way."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["reply"] = request()
        except BaseException as exc:  # handed to the caller's thread
            outcome["error"] = exc

    worker = threading.Thread(target=run, name="request", daemon=True)
    worker.start()
    progress = Progress(err, interactive)
    try:
        while worker.is_alive():
            progress.update([Item(what, "in progress", ready=False)])
            worker.join(REDRAW_SECONDS)
    finally:
        progress.close()
    if "error" in outcome:
        raise outcome["error"]
    reply: Reply = outcome["reply"]
    return reply


def follow_operation(client: ApiClient, console: Console, name: str, reply: Reply) -> Reply:
    """Ask again (long polls) while the agent answers 202: the operation is still running."""
    while reply.status == 202:
        operation = reply.body["operation"]
        path = service_path(name, "operations", str(operation["id"]))

        def ask(path: str = path) -> Reply:
            return client.call("GET", path, query={"wait": True}, timeout=WAITING_TIMEOUT)

        reply = with_progress(console.err, f"{name}: {operation['kind']}", ask)
    return reply


def _post(
    client: ApiClient,
    console: Console,
    what: str,
    path: str,
    *,
    wait: bool = True,
    body: dict[str, Any] | None = None,
    timeout: float = WAITING_TIMEOUT,
) -> Reply:
    """POST ``path`` while stderr shows that ``what`` is under way (``None`` values of
    ``body`` left out: the API's defaults hold)."""
    sent = (
        None if body is None else {key: value for key, value in body.items() if value is not None}
    )
    return with_progress(
        console.err,
        what,
        lambda: client.call("POST", path, query={"wait": wait}, body=sent, timeout=timeout),
    )


def _operate(
    client: ApiClient, console: Console, name: str, what: str, path: str, wait: bool
) -> Reply:
    reply = _post(client, console, f"{name}: {what}", path, wait=wait)
    return follow_operation(client, console, name, reply) if wait else reply


# -- backup ------------------------------------------------------------------------------

BACKUP_COLUMNS = ("ID", "KIND", "AGE", "SIZE", "FILES", "VERSION", "VERIFIED")


def size(value: Any) -> str:
    number = float(value or 0)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if number < 1024 or unit == "GiB":
            return f"{number:.0f} {unit}" if unit == "B" else f"{number:.1f} {unit}"
        number /= 1024
    return str(value)


def backup_row(backup: dict[str, Any]) -> list[Any]:
    verified = backup.get("verified")
    return [
        backup.get("id"),
        backup.get("kind"),
        duration(float(backup.get("age_seconds") or 0)),
        size(backup.get("size_bytes")),
        backup.get("file_count"),
        backup.get("pocketbase_version"),
        "-" if verified is None else ("yes" if verified else "FAILED"),
    ]


def backup_list(client: ApiClient, console: Console, name: str) -> int:
    answer = client.call("GET", service_path(name, "backups")).body
    backups = answer["backups"]
    if not backups and console.human:
        console.note(f"{name} has no backups yet")
        return 0
    console.show(answer, lambda: table(BACKUP_COLUMNS, [backup_row(b) for b in backups]))
    return 0


def backup_create(client: ApiClient, console: Console, name: str, wait: bool) -> int:
    reply = _operate(client, console, name, "backup", service_path(name, "backups"), wait)
    answer = reply.body
    backup = answer.get("backup")
    if backup:
        text = f"{name}: backup {backup['id']} taken ({size(backup['size_bytes'])})"
    else:
        text = f"{name}: backup asked for (operation {answer['operation']['id']})"
    console.show(answer, lambda: text)
    return 0


def _newest(client: ApiClient, name: str) -> str:
    backups = client.call("GET", service_path(name, "backups")).body["backups"]
    if not backups:
        raise ClientError(f"{name} has no backups")
    return str(backups[0]["id"])


def backup_verify(client: ApiClient, console: Console, name: str, backup_id: str | None) -> int:
    chosen = backup_id or _newest(client, name)
    reply = _operate(
        client, console, name, "verify", service_path(name, "backups", chosen, "verify"), True
    )
    answer = reply.body
    console.show(answer, lambda: f"{name}: backup {chosen} verified (restored, checked, booted)")
    return 0


def restore_warning(name: str, backup: dict[str, Any]) -> str:
    """What a restore replaces, said before it does."""
    return (
        f"This replaces the data of {name} with backup {backup['id']} "
        f"(taken {short_time(backup.get('created_at'))}, "
        f"{duration(float(backup.get('age_seconds') or 0))} ago): everything written to {name} "
        "since then is lost from the running service (a safety backup is taken first, and the "
        "replaced data is kept on the host). The service is stopped while it happens."
    )


def confirm(question: str, stdin: TextIO, err: TextIO) -> bool:
    err.write(question + " Type 'yes' to go on: ")
    err.flush()
    return stdin.readline().strip().lower() == "yes"


def backup_restore(
    client: ApiClient,
    console: Console,
    name: str,
    backup_id: str,
    yes: bool,
    stdin: TextIO | None = None,
) -> int:
    backup = client.call("GET", service_path(name, "backups", backup_id)).body
    warning = restore_warning(name, backup)
    reader = stdin or sys.stdin
    if not yes:
        if not reader.isatty():
            raise ClientError(f"{warning} Give --yes to restore without a terminal to ask on.")
        if not confirm(warning, reader, console.err):
            console.note("nothing restored")
            return 1
    path = service_path(name, "backups", backup_id, "restore")
    reply = _operate(client, console, name, "restore", path, True)
    answer = reply.body
    safety = (answer.get("operation") or {}).get("result", {}).get("safety_snapshot")
    console.show(
        answer,
        lambda: (
            f"{name}: backup {backup_id} restored"
            + (f" (safety backup {safety} taken first)" if safety else "")
        ),
    )
    return 0


# -- clone, import -----------------------------------------------------------------------


def _written(console: Console, answer: dict[str, Any], text: str) -> int:
    service = answer.get("service") or {}
    state = "ready" if answer.get("reconciled") else "accepted; still deploying"
    console.show(
        answer,
        lambda: (
            f"{text}: {service.get('project_name')} on port {service.get('port')}, "
            f"{service.get('domain')} ({state})"
        ),
    )
    return 0


def clone(
    client: ApiClient,
    console: Console,
    source: str,
    name: str,
    port: int,
    domain: str | None,
    backup_id: str | None,
) -> int:
    body = {"project_name": name, "port": port, "domain": domain, "backup_id": backup_id}
    reply = _post(
        client,
        console,
        f"{name}: clone of {source}",
        service_path(source, "clone"),
        body=body,
        timeout=WAITING_TIMEOUT * 2,
    )
    how = f"backup {backup_id}" if backup_id else "a backup taken now"
    return _written(console, reply.body, f"cloned {source} from {how}")


def zip_pb_data(folder: Path, target: Path, err: TextIO) -> int:
    """``folder`` (a pb_data) as a ZIP in PocketBase's backup layout; members written."""
    if not (folder / "data.db").is_file():
        raise ClientError(f"{folder} has no data.db: not a pb_data folder")
    written = 0
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as out:
        for root, dirs, files in os.walk(folder):
            relative = Path(root).relative_to(folder)
            if relative == Path("."):
                dirs[:] = [d for d in dirs if d != "backups"]  # as PocketBase's own backups
            for entry in sorted([*dirs, *files]):
                path = Path(root) / entry
                mode = path.lstat().st_mode
                if stat.S_ISDIR(mode):
                    continue
                if not stat.S_ISREG(mode):
                    err.write(f"left out {path}: not a regular file\n")
                    continue
                out.write(path, (relative / entry).as_posix())
                written += 1
            dirs[:] = [d for d in dirs if not (Path(root) / d).is_symlink()]
    return written


def import_service(
    client: ApiClient,
    console: Console,
    name: str,
    source: Path,
    port: int,
    version: str,
    domain: str | None,
) -> int:
    query: dict[str, str | int | bool] = {
        "project_name": name,
        "port": port,
        "pocketbase_version": version,
        "wait": True,
    }
    if domain is not None:
        query["domain"] = domain
    with tempfile.TemporaryDirectory(prefix="pockestrator-import-") as scratch:
        archive = source
        if source.is_dir():
            archive = Path(scratch) / "pb_data.zip"
            count = zip_pb_data(source, archive, console.err)
            console.note(f"zipped {count} files of {source}")
        elif not source.is_file():
            raise ClientError(f"{source} is neither a ZIP file nor a pb_data folder")
        reply = with_progress(
            console.err,
            f"{name}: import",
            lambda: client.upload("/imports", archive, query=query, timeout=WAITING_TIMEOUT * 4),
        )
    return _written(console, reply.body, f"imported {source}")


# -- archive -----------------------------------------------------------------------------

ARCHIVE_COLUMNS = ("ID", "NAME", "ARCHIVED", "AGE", "SIZE", "EXPIRES")


def archive_list(client: ApiClient, console: Console) -> int:
    answer = client.call("GET", "/archives").body
    archives = answer["archives"]
    if not archives and console.human:
        console.note("the archive is empty")
        return 0
    rows = [
        [
            a["id"],
            a["project_name"],
            short_time(a["archived_at"]),
            duration(float(a["age_seconds"])),
            size(a["size_bytes"]),
            short_time(a["expires_at"]) if a.get("expires_at") else "never",
        ]
        for a in archives
    ]
    console.show(answer, lambda: table(ARCHIVE_COLUMNS, rows))
    return 0


def archive_restore(
    client: ApiClient,
    console: Console,
    archive_id: str,
    port: int,
    version: str,
    name: str | None,
    domain: str | None,
) -> int:
    body = {"port": port, "pocketbase_version": version, "project_name": name, "domain": domain}
    reply = _post(
        client, console, f"{archive_id}: restore", f"/archives/{archive_id}/restore", body=body
    )
    return _written(console, reply.body, f"restored {archive_id}")
