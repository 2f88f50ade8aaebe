"""New services from existing data: clones, imports, and deleted services' archives.

Each creates a service like ``POST /services`` does, whose desired state also names the
data it starts from (a seed, ``specs.store.seeds``): its first reconcile puts that data in
its folder before the first start (``agent.seeding``). So nothing here touches the host
but one thing: an import's upload is streamed, bounded, to a root-only staging file and
checked as hostile input (``archives.check_zip``) before any service exists; a refused
archive is 400 ``IMPORT_INVALID`` naming the problem, and nothing is left behind.

- ``POST /services/{id}/clone``: from one of its backups, or live (a backup taken now
  while it keeps serving: the clone's seed waits for that operation of the source);
- ``POST /imports``: a PocketBase backup ZIP (its own ``POST /api/backups`` format) or a
  zipped ``pb_data`` folder; the CLI zips a local ``pb_data`` for an adoption;
- ``GET /archives``, ``POST /archives/{archive_id}/restore``: deleted services' folders
  (kept ``archive_keep_days``), back as a service.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web

from pockestrator.api.backup_routes import _existing
from pockestrator.api.context import AgentContext
from pockestrator.api.errors import ApiError, Problem, field_error, validation_failed
from pockestrator.api.idempotency import CALL, claim_upload
from pockestrator.api.inputs import (
    parse_query,
    read_json_object,
    receive_upload,
    too_large,
    validate_model,
)
from pockestrator.api.models.requests import CreateQuery, WholePageQuery
from pockestrator.api.models.seeds import (
    ArchiveList,
    ArchiveRestoreBody,
    ArchiveView,
    CloneBody,
    ImportQuery,
)
from pockestrator.api.paging import page_of, with_next
from pockestrator.api.routing import Operation, agent_of, answer, creating_a_service, principal_of
from pockestrator.api.service_routes.checks import checked_spec, find_service
from pockestrator.api.service_routes.writes import (
    WAIT_SECONDS,
    caller_label,
    store_refusals,
    writable_warnings,
    written_answer,
)
from pockestrator.archives import ArchiveRefused, Limits, check_zip
from pockestrator.clock import utc_now
from pockestrator.specs.errors import ErrorCode
from pockestrator.specs.grammar import GrammarError, check_archive_id, check_snapshot_id
from pockestrator.specs.model import ServiceSpec
from pockestrator.specs.store import API_OWNER, SeedSource

log = structlog.get_logger("pockestrator.api")

ZIP_TYPES = ("application/zip", "application/x-zip-compressed", "application/octet-stream")
# What a clone does not take from its source: its identity and its first-superuser set-up
# (the data already holds the source's superusers).
_NOT_CLONED = ("superuser_email", "superuser_password_file", "created_by", "domain")


def _new_spec(
    request: web.Request, data: dict[str, Any], shape: type[Any], body: Any
) -> ServiceSpec:
    agent = agent_of(request)
    data = {key: value for key, value in data.items() if value is not None}
    data["created_by"] = caller_label(request)
    return checked_spec(data, agent.config.default_domain, shape, body)


async def _create(
    request: web.Request,
    spec: ServiceSpec,
    seed: SeedSource,
    *,
    message: str,
    wait: bool,
    before_answer: Callable[[], Awaitable[None]] | None = None,
) -> web.Response:
    """Store the service with its seed and queue it; ``before_answer`` runs before the
    answer waits for the first reconcile (a live clone waits for its source's backup)."""
    agent = agent_of(request)
    warnings = await writable_warnings(agent, spec, replacing=None)
    with store_refusals(spec.project_name):
        record = agent.store.create_service(
            spec, owner=API_OWNER, seed=seed, by=principal_of(request).name
        )
    agent.enqueue(spec.project_name)
    log.info("service created from data", service=spec.project_name, seed=seed.describe())
    if wait and before_answer is not None:
        await before_answer()
    return await written_answer(
        request, record, message=message, status=201, warnings=warnings, wait=wait, password=None
    )


# -- clone ---------------------------------------------------------------------------------


async def clone_service(request: web.Request) -> web.StreamResponse:
    agent = agent_of(request)
    source = find_service(agent, request.match_info["id"])
    query = parse_query(request, CreateQuery)
    raw = await read_json_object(request, limit=agent.config.max_body_bytes)
    body = validate_model(CloneBody, raw)
    data = {k: v for k, v in source.spec.model_dump(mode="json").items() if k not in _NOT_CLONED}
    data.update(project_name=body.project_name, port=body.port, domain=body.domain)
    if body.description is not None:
        data["description"] = body.description
    spec = _new_spec(request, data, CloneBody, raw)
    if body.backup_id is not None:
        try:
            backup_id = check_snapshot_id(body.backup_id)
        except GrammarError as exc:
            raise validation_failed([Problem("backup_id", exc.message, exc.code)]) from None
        info = await _existing(agent, source, backup_id)
        if info.pocketbase_version and info.pocketbase_version != spec.pocketbase_version:
            spec = spec.model_copy(update={"pocketbase_version": info.pocketbase_version})
        seed = SeedSource("snapshot", service=source.name, snapshot=backup_id)
        return await _create(
            request,
            spec,
            seed,
            message=f"Service cloned from backup {backup_id} of {source.name}",
            wait=query.wait,
        )
    await writable_warnings(agent, spec, replacing=None)  # refuse before asking the source
    operation = agent.store.request_operation(
        source.name, "snapshot", None, principal_of(request).name
    )
    agent.enqueue(source.name)
    seed = SeedSource("live", service=source.name, operation=operation.id)
    return await _create(
        request,
        spec,
        seed,
        message=f"Service cloned live from {source.name}",
        wait=query.wait,
        before_answer=lambda: _wait_operation(agent, source.name, operation.id),
    )


async def _wait_operation(agent: AgentContext, service: str, operation_id: int) -> None:
    """Until the source's snapshot has been taken (bounded by ``WAIT_SECONDS``)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_SECONDS
    operation = agent.store.get_operation(operation_id)
    while operation is not None and operation.pending and loop.time() < deadline:
        await agent.wait_reconciled(service, deadline - loop.time())
        operation = agent.store.get_operation(operation_id)


# -- import --------------------------------------------------------------------------------


async def import_service(request: web.Request) -> web.StreamResponse:
    agent = agent_of(request)
    query = parse_query(request, ImportQuery)
    fields = ("project_name", "port", "pocketbase_version", "domain", "description")
    data = {name: getattr(query, name) for name in fields}
    spec = _new_spec(request, data, ImportQuery, {**data, "wait": query.wait})
    # With an Idempotency-Key, a retry must get the first answer, not "the name is taken":
    # the archive is received (and hashed) first, then the key claimed, then the checks.
    keyed = request.get(CALL) is not None
    if not keyed:
        await writable_warnings(agent, spec, replacing=None)  # refuse before the upload
    if request.content_type not in ZIP_TYPES:
        raise field_error(
            415,
            ErrorCode.UNSUPPORTED_MEDIA_TYPE,
            "Content-Type",
            "Send the archive itself as the body, as application/zip",
        )
    limit = agent.config.import_max_bytes
    if request.content_length is not None and request.content_length > limit:
        raise too_large(limit)
    staged, digest = await _stage_upload(request, agent.config.imports_path, limit)
    try:
        if keyed:
            replayed = claim_upload(request, digest)
            if replayed is not None:  # a retry of an import already made: its first answer
                staged.unlink(missing_ok=True)
                return replayed
            await writable_warnings(agent, spec, replacing=None)
        try:
            members = await asyncio.to_thread(check_zip, staged, Limits(max_bytes=limit))
        except ArchiveRefused as exc:
            raise field_error(
                400,
                ErrorCode.IMPORT_INVALID,
                "body",
                f"The archive is refused: {exc}",
                summary="The archive is refused",
            ) from None
        log.info(
            "import staged",
            service=spec.project_name,
            members=len(members),
            bytes=sum(m.size for m in members),
        )
        return await _create(
            request,
            spec,
            SeedSource("import", path=str(staged)),
            message="Service created from an imported archive",
            wait=query.wait,
        )
    except BaseException:
        staged.unlink(missing_ok=True)
        raise


async def _stage_upload(request: web.Request, folder: Path, limit: int) -> tuple[Path, str]:
    """The import's archive in a new file of the root-only ``folder``, and its SHA-256
    (``receive_upload``)."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    folder.chmod(0o700)
    path = folder / f"{secrets.token_hex(8)}.zip"
    _size, digest = await receive_upload(request, path, limit)
    return path, digest


# -- archives ------------------------------------------------------------------------------


async def list_archives(request: web.Request) -> web.StreamResponse:
    agent = agent_of(request)
    query = parse_query(request, WholePageQuery)
    keep = agent.config.archive_keep_days
    now = utc_now()
    views = [
        ArchiveView(
            id=info.archive_id,
            project_name=info.service,
            archived_at=info.archived_at,
            age_seconds=max(0, int((now - info.archived_at).total_seconds())),
            size_bytes=info.size_bytes,
            expires_at=info.archived_at + timedelta(days=keep) if keep > 0 else None,
        )
        for info in await agent.host.archives()
    ]
    shown, cursor = page_of(views, query.limit, query.cursor)
    body = ArchiveList(
        archives=shown,
        total=len(views),
        total_bytes=sum(v.size_bytes for v in views),
        keep_days=keep,
        next=cursor,
    )
    return with_next(answer(body), request, cursor)


async def restore_archive(request: web.Request) -> web.StreamResponse:
    agent = agent_of(request)
    text = request.match_info["archive_id"]
    try:
        archive_id = check_archive_id(text)
    except GrammarError as exc:
        raise validation_failed([Problem("archive_id", exc.message, exc.code)]) from None
    query = parse_query(request, CreateQuery)
    raw = await read_json_object(request, limit=agent.config.max_body_bytes)
    body = validate_model(ArchiveRestoreBody, raw)
    found = {info.archive_id: info for info in await agent.host.archives()}
    info = found.get(archive_id)
    if info is None:
        raise ApiError(404, ErrorCode.ARCHIVE_NOT_FOUND, f"There is no archive {archive_id}")
    data = body.model_dump()
    data["project_name"] = body.project_name or info.service
    spec = _new_spec(request, data, ArchiveRestoreBody, raw)
    return await _create(
        request,
        spec,
        SeedSource("archive", archive=archive_id),
        message=f"Service restored from archive {archive_id}",
        wait=query.wait,
    )


OPERATIONS = [
    creating_a_service(
        "/services/{id}/clone",
        clone_service,
        "cloneService",
        "A new service (its own name, port and domain) from this one's data",
        "backups",
        errors=(409,),
        query=CreateQuery,
        body=CloneBody,
        description="From one of its backups (backup_id), or live: a backup is taken now,"
        " while the source keeps serving, and the clone starts from it. The clone's first"
        " start waits until its data is in place; if that fails it is not started, and its"
        " status says why.",
    ),
    creating_a_service(
        "/imports",
        import_service,
        "importService",
        "A new service from a PocketBase backup ZIP or a zipped pb_data folder",
        "backups",
        errors=(409, 413, 415),
        query=ImportQuery,
        body_types=ZIP_TYPES,
        description="The body is the archive (PocketBase's own backup format: pb_data's"
        " contents at the top, or everything under pb_data/). It is checked before any"
        " service is made: a size bound (import_max_bytes), no path escapes, no links or"
        " special files, no encrypted members, a data.db; a refused archive is 400"
        " IMPORT_INVALID naming the problem.",
    ),
    Operation(
        "GET",
        "/archives",
        list_archives,
        "listArchives",
        "Deleted services' archived folders, with their disk use and expiry",
        {200: ArchiveList},
        "backups",
        query=WholePageQuery,
    ),
    creating_a_service(
        "/archives/{archive_id}/restore",
        restore_archive,
        "restoreArchive",
        "A deleted service's archived folder back as a service",
        "backups",
        errors=(409,),
        query=CreateQuery,
        body=ArchiveRestoreBody,
    ),
]
