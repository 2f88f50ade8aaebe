"""Backups of a service: list, take, inspect, verify, restore, delete, download.

A backup is a snapshot (docs/backups.md): a consistent online copy of the databases, the
uploaded files and the app folders, with a manifest of every file's SHA-256. Taking,
verifying, restoring and deleting one are *operations* of the service: the API records the
request and queues the service; the reconcile that converges it does the work, in the
service's own turn, so nothing else changes the service meanwhile. With ``wait`` (the
default) the answer comes when the operation has finished (200/201; a failure is 502
``OPERATION_FAILED`` with the reason), or 202 with the operation to follow at
``GET /services/{id}/operations/{operation_id}`` when it takes longer.

Reading (the list, one backup, a download) goes through the host view, never a controller.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import tarfile
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from pockestrator.api.context import AgentContext, BackupInfo
from pockestrator.api.errors import ApiError, Problem, validation_failed
from pockestrator.api.inputs import parse_query
from pockestrator.api.models.backups import (
    BackupDetail,
    BackupFileView,
    BackupList,
    BackupView,
    CreateBackupQuery,
    OperationAnswer,
    OperationFollowQuery,
    OperationQuery,
    OperationView,
)
from pockestrator.api.models.requests import WholePageQuery
from pockestrator.api.paging import page_of, with_next
from pockestrator.api.routing import (
    Handler,
    Operation,
    agent_of,
    answer,
    operation_answers,
    principal_of,
    starting_an_operation,
)
from pockestrator.api.service_routes.checks import find_service
from pockestrator.api.service_routes.writes import WAIT_SECONDS
from pockestrator.clock import utc_now
from pockestrator.specs.copying import copied
from pockestrator.specs.errors import ErrorCode
from pockestrator.specs.grammar import GrammarError, check_snapshot_id
from pockestrator.specs.store import BACKUP_KINDS, OperationKind, ServiceRecord
from pockestrator.specs.store import Operation as StoredOperation

_CHUNK = 256 * 1024


def backup_view(info: BackupInfo) -> BackupView:
    age = max(0, int((utc_now() - info.created_at).total_seconds()))
    return copied(
        BackupView,
        info,
        id=info.backup_id,
        age_seconds=age,
        verified=info.verified_ok,
        locations=list(info.locations),
    )


def operation_view(operation: StoredOperation) -> OperationView:
    state = "pending" if operation.pending else operation.outcome or "failed"
    error = operation.result.get("error") if operation.outcome == "failed" else None
    return OperationView(
        id=operation.id,
        kind=operation.kind,
        # A snapshot's argument is its point in time (or none), a deploy's its release:
        # their backup is the one they made. The others name the backup they act on.
        backup_id=operation.result.get("snapshot")
        if operation.kind == "snapshot" or operation.kind not in BACKUP_KINDS
        else operation.argument or operation.result.get("snapshot"),
        state=state,
        requested_at=operation.requested_at,
        requested_by=operation.requested_by,
        finished_at=operation.finished_at,
        result=operation.result,
        error=str(error) if error is not None else None,
    )


def _backup_id(request: web.Request) -> str:
    value = request.match_info["backup_id"]
    try:
        return check_snapshot_id(value)
    except GrammarError as exc:
        raise validation_failed([Problem("backup_id", exc.message, exc.code)]) from None


async def _existing(agent: AgentContext, record: ServiceRecord, backup_id: str) -> BackupInfo:
    info = await agent.host.backup(record.name, backup_id)
    if info is None:
        raise ApiError(
            404,
            ErrorCode.BACKUP_NOT_FOUND,
            f"{record.name} has no backup {backup_id}",
            service_id=record.id,
        )
    return info


async def list_backups(request: web.Request) -> web.StreamResponse:
    agent = agent_of(request)
    record = find_service(agent, request.match_info["id"])
    query = parse_query(request, WholePageQuery)
    backups = [backup_view(info) for info in await agent.host.backups(record.name)]
    shown, cursor = page_of(backups, query.limit, query.cursor)
    body = BackupList(
        service_id=record.id,
        project_name=record.name,
        policy=record.spec.backups or agent.config.backups,
        backups=shown,
        total=len(backups),
        total_bytes=sum(b.size_bytes for b in backups),
        next=cursor,
    )
    return with_next(answer(body), request, cursor)


async def get_backup(request: web.Request) -> web.StreamResponse:
    agent = agent_of(request)
    record = find_service(agent, request.match_info["id"])
    info = await _existing(agent, record, _backup_id(request))
    view = backup_view(info)
    files = [BackupFileView(path=f.path, size_bytes=f.size, sha256=f.sha256) for f in info.files]
    return answer(BackupDetail(**view.model_dump(), files=files))


async def _operate(
    request: web.Request,
    kind: OperationKind,
    backup_id: str | None,
    created: int = 200,
) -> web.StreamResponse:
    agent = agent_of(request)
    record = find_service(agent, request.match_info["id"])
    query = parse_query(request, CreateBackupQuery if kind == "snapshot" else OperationQuery)
    argument = backup_id
    if backup_id is not None:
        await _existing(agent, record, backup_id)
    elif isinstance(query, CreateBackupQuery) and query.at is not None:
        argument = _point_in_time(agent, record, query.at)
    operation = agent.store.request_operation(
        record.name, kind, argument, principal_of(request).name
    )
    agent.enqueue(record.name)
    if query.wait:
        operation = await _until_finished(agent, record, operation)
    return await _operation_answer(agent, record, operation, created)


def _point_in_time(agent: AgentContext, record: ServiceRecord, at: datetime) -> str:
    """``at`` as the operation's argument (UTC, to the second), for a service that replicates."""
    policy = record.spec.backups or agent.config.backups
    if policy.replication is None:
        raise validation_failed(
            [
                Problem(
                    "at",
                    f"{record.name} does not replicate (backups.replication)",
                    ErrorCode.INVALID_VALUE,
                )
            ]
        )
    if at > utc_now():
        raise validation_failed(
            [Problem("at", "a point in time in the future", ErrorCode.INVALID_VALUE)]
        )
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def _until_finished(
    agent: AgentContext, record: ServiceRecord, operation: StoredOperation
) -> StoredOperation:
    """The operation once finished, or as it is after ``WAIT_SECONDS``."""
    deadline = asyncio.get_running_loop().time() + WAIT_SECONDS
    while operation.pending and asyncio.get_running_loop().time() < deadline:
        remaining = deadline - asyncio.get_running_loop().time()
        await agent.wait_reconciled(record.name, remaining)
        operation = agent.store.get_operation(operation.id) or operation
    return operation


async def _operation_answer(
    agent: AgentContext, record: ServiceRecord, operation: StoredOperation, created: int = 200
) -> web.StreamResponse:
    view = operation_view(operation)
    backup = None
    if operation.kind == "snapshot" and view.backup_id and operation.outcome == "done":
        info = await agent.host.backup(record.name, view.backup_id)
        backup = backup_view(info) if info is not None else None
    body = OperationAnswer(
        service_id=record.id, project_name=record.name, operation=view, backup=backup
    )
    if view.state == "failed":
        raise ApiError(
            502,
            ErrorCode.OPERATION_FAILED,
            f"{operation.kind} of {record.name} failed (operation {operation.id}): {view.error}",
            service_id=record.id,
        )
    return answer(body, created if view.state == "done" else 202)


async def create_backup(request: web.Request) -> web.StreamResponse:
    return await _operate(request, "snapshot", None, created=201)


async def verify_backup(request: web.Request) -> web.StreamResponse:
    return await _operate(request, "verify", _backup_id(request))


async def restore_backup(request: web.Request) -> web.StreamResponse:
    return await _operate(request, "restore", _backup_id(request))


async def delete_backup(request: web.Request) -> web.StreamResponse:
    return await _operate(request, "delete", _backup_id(request))


async def get_operation(request: web.Request) -> web.StreamResponse:
    agent = agent_of(request)
    record = find_service(agent, request.match_info["id"])
    text = request.match_info["operation_id"]
    # isdigit() alone takes "²", which int() refuses: ASCII digits only, as the path says.
    known = text.isascii() and text.isdigit() and len(text) < 19
    operation = agent.store.get_operation(int(text)) if known else None
    if operation is None or operation.service != record.name:
        raise ApiError(
            404,
            ErrorCode.OPERATION_NOT_FOUND,
            f"{record.name} has no operation {text[:40]}",
            service_id=record.id,
        )
    if parse_query(request, OperationFollowQuery).wait:
        operation = await _until_finished(agent, record, operation)
    return await _operation_answer(agent, record, operation)


async def download_backup(request: web.Request) -> web.StreamResponse:
    """The snapshot as an uncompressed tar, streamed: its manifest and every file."""
    agent = agent_of(request)
    record = find_service(agent, request.match_info["id"])
    info = await _existing(agent, record, _backup_id(request))
    if info.path is None:
        raise ApiError(
            404,
            ErrorCode.BACKUP_NOT_FOUND,
            f"backup {info.backup_id} of {record.name} is only on {', '.join(info.locations)}: "
            "verifying or restoring it brings it back here first",
            service_id=record.id,
        )
    top = f"{record.name}-{info.backup_id}"
    response = web.StreamResponse(
        headers={
            "Content-Type": "application/x-tar",
            "Content-Disposition": f'attachment; filename="{top}.tar"',
        }
    )
    await response.prepare(request)
    with _tar_chunks(info.path, top) as chunks:
        while (chunk := await asyncio.to_thread(chunks.get)) is not None:
            await response.write(chunk)
    await response.write_eof()
    return response


class _ChunkWriter:
    """A file object for ``tarfile`` that hands what is written to a bounded queue."""

    def __init__(self, chunks: queue.Queue[bytes | None], stop: threading.Event) -> None:
        self.chunks = chunks
        self.stop = stop
        self.buffer = bytearray()

    def write(self, data: bytes) -> int:
        if self.stop.is_set():
            raise BrokenPipeError("the client went away")
        self.buffer += data
        if len(self.buffer) >= _CHUNK:
            self.chunks.put(bytes(self.buffer))
            self.buffer.clear()
        return len(data)

    def flush(self) -> None:
        if self.buffer:
            self.chunks.put(bytes(self.buffer))
            self.buffer.clear()


@contextlib.contextmanager
def _tar_chunks(folder: Path, top: str) -> Iterator[queue.Queue[bytes | None]]:
    chunks: queue.Queue[bytes | None] = queue.Queue(maxsize=8)
    stop = threading.Event()

    def produce() -> None:
        writer = _ChunkWriter(chunks, stop)
        try:
            with tarfile.open(fileobj=writer, mode="w|", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
                for path in sorted(folder.rglob("*")):
                    if path.is_file() and not path.is_symlink():
                        tar.add(path, arcname=f"{top}/{path.relative_to(folder).as_posix()}")
            writer.flush()
        except BrokenPipeError:
            pass
        finally:
            chunks.put(None)

    thread = threading.Thread(target=produce, name="backup download", daemon=True)
    thread.start()
    try:
        yield chunks
    finally:
        stop.set()
        while thread.is_alive():  # let it see the stop, never leave it blocked on put
            with contextlib.suppress(queue.Empty):
                chunks.get_nowait()
            thread.join(0.05)


def _on_a_backup(
    method: str, suffix: str, handler: Handler, operation_id: str, summary: str, **extra: Any
) -> Operation:
    """An operation one backup is asked for (delete, verify, restore): the reconcile that
    does it answers, or 202 with the operation while it runs."""
    return Operation(
        method,
        f"/services/{{id}}/backups/{{backup_id}}{suffix}",
        handler,
        operation_id,
        summary,
        operation_answers(200),
        "backups",
        errors=(502,),
        query=OperationQuery,
        **extra,
    )


OPERATIONS = [
    Operation(
        "GET",
        "/services/{id}/backups",
        list_backups,
        "listBackups",
        "A service's backups, newest first, and the policy in force",
        {200: BackupList},
        "backups",
        query=WholePageQuery,
    ),
    starting_an_operation(
        "/services/{id}/backups",
        create_backup,
        "createBackup",
        "Take a backup now (an online snapshot; writers are not held back)",
        "backups",
        errors=(400, 502),
        query=CreateBackupQuery,
    ),
    Operation(
        "GET",
        "/services/{id}/backups/{backup_id}",
        get_backup,
        "getBackup",
        "One backup with every file's size and SHA-256",
        {200: BackupDetail},
        "backups",
    ),
    _on_a_backup("DELETE", "", delete_backup, "deleteBackup", "Delete a backup"),
    _on_a_backup(
        "POST",
        "/verify",
        verify_backup,
        "verifyBackup",
        "Verify a backup: its files, SQLite's integrity_check and a boot of it",
    ),
    _on_a_backup(
        "POST",
        "/restore",
        restore_backup,
        "restoreBackup",
        "Restore a backup in place (a safety backup first; the data replaced is kept)",
        description="Takes a safety backup, stops the instance, swaps the backup's data and"
        " app folders in, starts it and waits for its health; when it does not come up"
        " healthy the safety backup goes back and the answer is 502 with the reason.",
    ),
    Operation(
        "GET",
        "/services/{id}/backups/{backup_id}/download",
        download_backup,
        "downloadBackup",
        "A backup as a tar archive (its manifest and every file)",
        {},
        "backups",
        binary={200: "application/x-tar"},
    ),
    Operation(
        "GET",
        "/services/{id}/operations/{operation_id}",
        get_operation,
        "getOperation",
        "An operation asked of a service, and how it ended",
        operation_answers(200),
        "backups",
        errors=(502,),
        query=OperationFollowQuery,
    ),
]
