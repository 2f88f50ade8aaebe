"""App releases of a service: deploy (upload a tar.gz), list, roll back.

A deploy's archive is streamed to a root-only upload folder, bounded by
``app_archive_max_bytes`` (413 past it), and checked whole (``apparchive``: 422
``UNSAFE_ARCHIVE`` naming the entry; nothing is recorded, the upload is removed) before it
becomes an operation of the service, like a backup's (``backup_routes``): the reconcile
that converges the service does the deploy in its own turn (``agent.deploys``), and with
``wait`` the answer comes when it has ended. A deploy or rollback that failed is 502
``OPERATION_FAILED``; its message names the failed step and carries PocketBase's own text.

The list reads the host view (the agent's record of the releases), never a controller.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from pathlib import Path

from aiohttp import web

from pockestrator.api.backup_routes import operation_view
from pockestrator.api.context import AgentContext, ReleaseInfo
from pockestrator.api.errors import ApiError, Problem, field_error, validation_failed
from pockestrator.api.idempotency import claim_upload
from pockestrator.api.inputs import parse_query, receive_upload
from pockestrator.api.models.backups import OperationAnswer
from pockestrator.api.models.releases import (
    DeployQuery,
    ReleaseDiff,
    ReleaseList,
    ReleaseView,
    RollbackQuery,
)
from pockestrator.api.models.requests import WholePageQuery
from pockestrator.api.paging import page_of, with_next
from pockestrator.api.routing import (
    Operation,
    agent_of,
    answer,
    operation_answers,
    principal_of,
    starting_an_operation,
)
from pockestrator.api.service_routes.checks import find_service
from pockestrator.api.service_routes.writes import WAIT_SECONDS
from pockestrator.apparchive import UnsafeAppArchive, is_release_id, read_app_archive
from pockestrator.specs.copying import copied
from pockestrator.specs.errors import ErrorCode
from pockestrator.specs.store import Operation as StoredOperation
from pockestrator.specs.store import ServiceRecord

ARCHIVE_TYPES = ("application/gzip", "application/x-gzip", "application/octet-stream")
UPLOADS_DIR = "uploads"  # agent.deploys.UPLOADS_DIR: where the deploy takes it from


def release_view(info: ReleaseInfo) -> ReleaseView:
    return copied(ReleaseView, info, id=info.release_id, diff=copied(ReleaseDiff, info))


async def list_releases(request: web.Request) -> web.StreamResponse:
    agent = agent_of(request)
    record = find_service(agent, request.match_info["id"])
    query = parse_query(request, WholePageQuery)
    releases = [release_view(info) for info in await agent.host.app_releases(record.name)]
    live = next((r.id for r in releases if r.live), None)
    shown, cursor = page_of(releases, query.limit, query.cursor)
    body = ReleaseList(
        service_id=record.id,
        project_name=record.name,
        live=live,
        releases=shown,
        total=len(releases),
        next=cursor,
    )
    return with_next(answer(body), request, cursor)


async def deploy(request: web.Request) -> web.StreamResponse:
    agent = agent_of(request)
    record = find_service(agent, request.match_info["id"])
    query = parse_query(request, DeployQuery)
    if request.content_type not in ARCHIVE_TYPES:
        raise field_error(
            415,
            ErrorCode.UNSUPPORTED_MEDIA_TYPE,
            "Content-Type",
            f"send the app as a tar.gz ({ARCHIVE_TYPES[0]}), not {request.content_type[:80]!r}",
        )
    limit = agent.config.app_archive_max_bytes
    if request.content_length is not None and request.content_length > limit:
        raise _too_large(limit)
    folder = agent.config.apps_path / UPLOADS_DIR
    upload = folder / f"{secrets.token_hex(12)}.tar.gz"
    try:
        digest = await _receive(request, folder, upload, limit)
        replayed = claim_upload(request, digest)
        if replayed is not None:  # a retry of a deploy already made: its first answer
            upload.unlink()
            return replayed
        await asyncio.to_thread(_check, agent, upload)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            upload.unlink()
        raise
    operation = agent.store.request_operation(
        record.name, "deploy", upload.name, principal_of(request).name
    )
    agent.enqueue(record.name)
    return await _answer(agent, record, operation, query.wait, created=201)


async def _receive(request: web.Request, folder: Path, upload: Path, limit: int) -> str:
    """The deploy's archive in ``upload`` and its SHA-256 (``receive_upload``); an empty
    body is refused."""
    await asyncio.to_thread(folder.mkdir, mode=0o700, parents=True, exist_ok=True)
    size, digest = await receive_upload(request, upload, limit, _too_large)
    if size == 0:
        raise field_error(422, ErrorCode.UNSAFE_ARCHIVE, "archive", "the body is empty")
    return digest


def _check(agent: AgentContext, upload: Path) -> None:
    config = agent.config
    try:
        with upload.open("rb") as source:
            read_app_archive(
                source, max_files=config.app_max_files, max_bytes=config.app_unpacked_max_bytes
            )
    except UnsafeAppArchive as exc:
        field = f"archive:{exc.entry}" if exc.entry else "archive"
        raise ApiError(
            422,
            ErrorCode.UNSAFE_ARCHIVE,
            f"The app archive is refused: {exc}",
            [Problem(field, str(exc), ErrorCode.UNSAFE_ARCHIVE)],
        ) from None


def _too_large(limit: int) -> ApiError:
    return field_error(
        413, ErrorCode.PAYLOAD_TOO_LARGE, "body", f"The archive is larger than {limit} bytes"
    )


async def rollback(request: web.Request) -> web.StreamResponse:
    agent = agent_of(request)
    record = find_service(agent, request.match_info["id"])
    query = parse_query(request, RollbackQuery)
    releases = list(await agent.host.app_releases(record.name))
    if query.release is not None:
        if not is_release_id(query.release):
            raise validation_failed(
                [Problem("release", "a release id is 16 hex digits", ErrorCode.INVALID_VALUE)]
            )
        if query.release not in [info.release_id for info in releases]:
            raise ApiError(
                404,
                ErrorCode.RELEASE_NOT_FOUND,
                f"{record.name} has no release {query.release}",
                service_id=record.id,
            )
    elif _previous(releases) is None:
        raise ApiError(
            404,
            ErrorCode.RELEASE_NOT_FOUND,
            f"{record.name} has no earlier release to roll back to",
            service_id=record.id,
        )
    operation = agent.store.request_operation(
        record.name, "rollback", query.release, principal_of(request).name
    )
    agent.enqueue(record.name)
    return await _answer(agent, record, operation, query.wait)


def _previous(releases: list[ReleaseInfo]) -> ReleaseInfo | None:
    """The release deployed before the live one (newest first), as the deploy picks it."""
    live = next((i for i, info in enumerate(releases) if info.live), None)
    if live is None:
        return releases[0] if releases else None
    return releases[live + 1] if live + 1 < len(releases) else None


async def _answer(
    agent: AgentContext,
    record: ServiceRecord,
    operation: StoredOperation,
    wait: bool,
    created: int = 200,
) -> web.StreamResponse:
    if wait:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT_SECONDS
        while operation.pending and loop.time() < deadline:
            await agent.wait_reconciled(record.name, deadline - loop.time())
            operation = agent.store.get_operation(operation.id) or operation
    view = operation_view(operation)
    if view.state == "failed":
        step = operation.result.get("step", "?")
        raise ApiError(
            502,
            ErrorCode.OPERATION_FAILED,
            f"{operation.kind} of {record.name} failed at step {step} "
            f"(operation {operation.id}): {view.error}",
            service_id=record.id,
        )
    body = OperationAnswer(service_id=record.id, project_name=record.name, operation=view)
    return answer(body, created if view.state == "done" else 202)


OPERATIONS = [
    Operation(
        "GET",
        "/services/{id}/releases",
        list_releases,
        "listAppReleases",
        "A service's app releases, newest first, which is live and each one's file diff",
        {200: ReleaseList},
        "releases",
        query=WholePageQuery,
    ),
    starting_an_operation(
        "/services/{id}/releases",
        deploy,
        "deployRelease",
        "Deploy an app: a tar.gz of pb_hooks/, pb_migrations/ and pb_public/",
        "releases",
        errors=(422, 502),
        query=DeployQuery,
        body_types=ARCHIVE_TYPES,
        description="The archive is checked (no absolute path, '..', link, device, other"
        " folder; file count and size bounded; 422 UNSAFE_ARCHIVE names the entry), then a"
        " snapshot is taken, the release is booted on a copy of it, the instance is stopped,"
        " its migrations run, it is switched to the release and started, and must answer"
        " its health check. A failure after the switch puts the previous release and the"
        " snapshot's data back; the 502 names the step and carries PocketBase's text.",
    ),
    Operation(
        "POST",
        "/services/{id}/rollback",
        rollback,
        "rollbackRelease",
        "Go back to an earlier app release (the one before the live one by default)",
        operation_answers(200),
        "releases",
        errors=(422, 502),
        query=RollbackQuery,
    ),
]
