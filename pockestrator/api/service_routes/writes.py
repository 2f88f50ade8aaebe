"""Writing services: create, change (a JSON merge patch of the spec) and delete.

Each checks the spec (``checks``), writes it to the store and queues the reconcile
(``agent.enqueue``); with ``wait`` the answer waits for that reconcile (``WAIT_SECONDS``
at most) and says what the host then shows, else it answers at once, ``pending``.
Services owned by a spec file are read-only here (409 ``OWNED_BY_FILE``, naming the
file): they are changed and deleted in their file.

Creating a service with ``superuser_email`` (or changing it): the password is generated
here and put in the store before the spec, so the reconciler uses it; the answer shows it
once. It is never logged, and taken back if the write fails.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator, Mapping, Sequence
from typing import Literal

import structlog
from aiohttp import web

from pockestrator.api.context import AgentContext
from pockestrator.api.errors import ApiError, Problem, field_error, validation_failed
from pockestrator.api.inputs import parse_query, read_json_object
from pockestrator.api.merge_patch import merge_patch
from pockestrator.api.models.requests import (
    CreateQuery,
    DeleteQuery,
    PatchQuery,
    ServiceCreateBody,
    ServicePatchBody,
)
from pockestrator.api.models.services import (
    DeletedService,
    ServiceDeleted,
    ServiceWritten,
    SiteRef,
    UnitRef,
)
from pockestrator.api.owner_calls import OWNER_CALLS
from pockestrator.api.owner_wait import owner_reconciled
from pockestrator.api.routing import (
    Link,
    Operation,
    agent_of,
    answer,
    creating_a_service,
    etag_of,
    if_match_holds,
    principal_of,
)
from pockestrator.api.service_routes.checks import (
    checked_spec,
    context_problems,
    current_view,
    find_service,
    service_not_found,
)
from pockestrator.api.views import issue_view
from pockestrator.specs.errors import ErrorCode, FieldIssue
from pockestrator.specs.grammar import has_control_characters
from pockestrator.specs.model import ServiceSpec, unit_name
from pockestrator.specs.store import API_OWNER, Conflict, NotFound, ServiceRecord, Store

log = structlog.get_logger("pockestrator.api")

WAIT_SECONDS = 60.0
SUPERUSER_PASSWORD_BYTES = 18
_CONFLICT_CODES = {
    ErrorCode.DELETION_PENDING,
    ErrorCode.OWNED_BY_FILE,
    ErrorCode.OWNED_BY_OTHER_SOURCE,
}


def refuse_file_owned(record: ServiceRecord) -> None:
    if record.source_file is not None:
        raise field_error(
            409,
            ErrorCode.OWNED_BY_FILE,
            "project_name",
            f"Service '{record.name}' is defined in spec file {record.source_file}; "
            "change or delete it there",
            service_id=record.id,
        )


def refuse_stale(request: web.Request, record: ServiceRecord) -> None:
    """412 when If-Match names another generation than the stored one (absent: no check)."""
    if not if_match_holds(request.headers.get("If-Match"), record.generation):
        raise field_error(
            412,
            ErrorCode.PRECONDITION_FAILED,
            "If-Match",
            f"Service '{record.name}' changed: it is at generation {record.generation}"
            f" (ETag {etag_of(record.generation)}); read it again and retry",
            service_id=record.id,
        )


def conflict_error(exc: Conflict) -> ApiError:
    problems = [Problem.of(issue) for issue in exc.issues]
    if any(issue.code in _CONFLICT_CODES for issue in exc.issues):
        return ApiError(409, problems[0].code, problems[0].message, problems)
    return validation_failed(problems)


@contextlib.contextmanager
def store_refusals(name: str) -> Iterator[None]:
    """The store's refusals of a write to ``name`` as the API's answers: 404 when the
    service went meanwhile, 409 or 400 for a ``Conflict`` (``conflict_error``)."""
    try:
        yield
    except NotFound:
        raise service_not_found(name) from None
    except Conflict as exc:
        raise conflict_error(exc) from None


async def writable_warnings(
    agent: AgentContext, spec: ServiceSpec, *, replacing: ServiceRecord | None
) -> list[FieldIssue]:
    """The warnings of writing ``spec`` (in place of ``replacing``); 400 with every error
    when it cannot be written."""
    errors, warnings, _checks = await context_problems(
        agent, spec, replacing=replacing, name_code=ErrorCode.DUPLICATE_PROJECT_NAME
    )
    if errors:
        raise validation_failed([Problem.of(issue) for issue in errors])
    return warnings


def caller_label(request: web.Request) -> str:
    name = principal_of(request).name
    return "".join(c for c in name if not has_control_characters(c))[:254]


def new_password() -> str:
    return secrets.token_urlsafe(SUPERUSER_PASSWORD_BYTES)


@contextlib.contextmanager
def handed_password(store: Store, name: str, wanted: bool) -> Iterator[str | None]:
    """A new superuser password left in the store for the reconciler, while a spec write
    runs; taken back if the write fails (no service, no password left behind)."""
    password = new_password() if wanted else None
    if password is not None:
        store.put_superuser_password(name, password)
    try:
        yield password
    except BaseException:
        if password is not None:
            store.take_superuser_password(name)
        raise


@contextlib.contextmanager
def spec_write(agent: AgentContext, name: str, *, wants_password: bool) -> Iterator[str | None]:
    """Around one write of ``name``'s spec: a new superuser password handed over first when
    wanted (``handed_password``), the store's refusals as the API's (``store_refusals``),
    and once the write succeeded, its reconcile queued."""
    with store_refusals(name), handed_password(agent.store, name, wants_password) as password:
        yield password
    agent.enqueue(name)


def changeable_service(request: web.Request) -> ServiceRecord:
    """The service the path names, if the API may change it now: 404 when there is none,
    409 when a spec file owns it, 412 when If-Match names another generation."""
    record = find_service(agent_of(request), request.match_info["id"])
    refuse_file_owned(record)
    refuse_stale(request, record)
    return record


async def written_answer(
    request: web.Request,
    record: ServiceRecord,
    *,
    message: str,
    status: int,
    warnings: Sequence[FieldIssue],
    wait: bool,
    password: str | None,
) -> web.Response:
    agent = agent_of(request)
    name = record.name
    here = agent.store.runs_here(record.node)
    if not wait:
        reconciled = False
    elif here:
        reconciled = await agent.wait_reconciled(name, WAIT_SECONDS)
    else:  # another node runs it: its reconcile, as its status in the store tells
        reconciled = await owner_reconciled(agent.store, record, WAIT_SECONDS)
    current = agent.store.get_service(name) or record
    service_status = agent.store.get_status(name)
    view = current_view(agent, current, service_status)
    if reconciled and here:
        runtime = await agent.host.runtime(name, service_status)
        unit_state, site_state = runtime.systemd_status, runtime.caddy_status
    elif reconciled:
        unit_state, site_state = await request.app[OWNER_CALLS].unit_and_site(current)
    else:
        unit_state, site_state = "pending", "pending"
    body = ServiceWritten(
        id=record.id,
        message=message,
        data=view,
        service=view,
        systemd=UnitRef(service_name=unit_name(name), status=unit_state),
        caddy=SiteRef(domain=current.spec.domain, status=site_state),
        warnings=[issue_view(warning) for warning in warnings],
        reconciled=reconciled,
        superuser_password=password,
    )
    response = answer(body, status, drop_none=("superuser_password",))
    response.headers["ETag"] = etag_of(current.generation)
    return response


async def spec_written(
    request: web.Request,
    record: ServiceRecord,
    done: Literal["created", "updated"],
    warnings: Sequence[FieldIssue],
    wait: bool,
    password: str | None,
    facts: Mapping[str, object],
) -> web.Response:
    """A create's end (201) or an update's (200): logged with who asked and ``facts``,
    answered "Service <done> successfully"."""
    log.info(f"service {done}", service=record.name, by=principal_of(request).name, **facts)
    return await written_answer(
        request,
        record,
        message=f"Service {done} successfully",
        status=201 if done == "created" else 200,
        warnings=warnings,
        wait=wait,
        password=password,
    )


async def create_service(request: web.Request) -> web.StreamResponse:
    agent = agent_of(request)
    query = parse_query(request, CreateQuery)
    body = await read_json_object(request, limit=agent.config.max_body_bytes)
    data = dict(body)
    if not data.get("created_by"):
        data["created_by"] = caller_label(request)
    spec = checked_spec(data, agent.config.default_domain, ServiceCreateBody, body)
    warnings = await writable_warnings(agent, spec, replacing=None)
    name = spec.project_name
    with spec_write(agent, name, wants_password=bool(spec.superuser_email)) as password:
        record = agent.store.create_service(spec, owner=API_OWNER)
    facts = {"version": spec.pocketbase_version, "port": spec.port}
    return await spec_written(request, record, "created", warnings, query.wait, password, facts)


async def update_service(request: web.Request) -> web.StreamResponse:
    agent = agent_of(request)
    record = changeable_service(request)
    query = parse_query(request, PatchQuery)
    body = await read_json_object(request, limit=agent.config.max_body_bytes)
    if "project_name" in body and body["project_name"] != record.name:
        raise validation_failed(
            [Problem("project_name", "project_name cannot be changed", ErrorCode.INVALID_VALUE)]
        )
    merged = merge_patch(record.spec.model_dump(mode="json"), body)
    merged["project_name"] = record.name
    spec = checked_spec(merged, agent.config.default_domain, ServicePatchBody, body)
    warnings = await writable_warnings(agent, spec, replacing=record)
    # Again after the last await: another write may have come in meanwhile, and from here
    # to the store's write nothing yields, so the check and the write are one step.
    refuse_stale(request, find_service(agent, record.id))
    new_email = spec.superuser_email not in (None, record.spec.superuser_email)
    with spec_write(agent, record.name, wants_password=new_email) as password:
        updated = agent.store.replace_spec(record.name, spec, owner=API_OWNER)
    facts = {"fields": sorted(str(key) for key in body)}
    return await spec_written(request, updated, "updated", warnings, query.wait, password, facts)


async def delete_service(request: web.Request) -> web.StreamResponse:
    agent = agent_of(request)
    record = changeable_service(request)
    query = parse_query(request, DeleteQuery)
    name = record.name
    with store_refusals(name):
        agent.store.delete_service(name, purge=query.purge, owner=API_OWNER)
    log.info("service deleted", service=name, purge=query.purge, by=principal_of(request).name)
    removed = False
    archived_to: str | None = None
    if query.wait:
        finished = await agent.wait_reconciled(name, WAIT_SECONDS)
        removed = finished and agent.store.pending_deletion(name) is None
        if removed:
            for event in agent.store.list_events(name, limit=10):
                if event.kind == "deleted":
                    archived_to = str(event.details.get("archived_to") or "") or None
                    break
    else:
        agent.enqueue(name)
    state = "removed" if removed else "pending"
    return answer(
        ServiceDeleted(
            id=record.id,
            message="Service deleted successfully"
            if removed
            else "Service deletion accepted; the host is being cleaned up",
            service=DeletedService(
                id=record.id, project_name=name, status="deleted" if removed else "deleting"
            ),
            systemd=UnitRef(service_name=unit_name(name), status=state),
            caddy=SiteRef(domain=record.spec.domain, status=state),
            purge=query.purge,
            removed=removed,
            archived_to=archived_to,
        )
    )


def service_links(status: int) -> tuple[Link, ...]:
    """What a client can do with the service a write answers with, by its ``id``."""
    follow = [
        ("GetTheService", "getService"),
        ("ChangeTheService", "updateService"),
        ("ReadItsStatus", "getServiceStatus"),
        ("ReadItsEvents", "listServiceEvents"),
        ("ReadItsLogs", "getServiceLogs"),
        ("ControlTheService", "controlService"),
        ("DeleteTheService", "deleteService"),
    ]
    return tuple(Link(name, target, {"id": "id"}, status=status) for name, target in follow)


OPERATIONS = [
    creating_a_service(
        "/services",
        create_service,
        "createService",
        "Create and deploy a PocketBase service",
        "services",
        errors=(409,),
        description="Validates the spec against the other services and the host (400 with"
        " every problem), stores it and queues its reconcile. With superuser_email, the"
        " generated password is in this answer only.",
        query=CreateQuery,
        body=ServiceCreateBody,
        links=service_links(201),
    ),
    Operation(
        "PATCH",
        "/services/{id}",
        update_service,
        "updateService",
        "Change a service's spec (JSON merge patch)",
        {200: ServiceWritten},
        "services",
        errors=(409,),
        description="Version upgrades, domain, env, limits, flags, desired state. Services"
        " owned by a spec file answer 409 OWNED_BY_FILE.",
        query=PatchQuery,
        body=ServicePatchBody,
        body_types=("application/json", "application/merge-patch+json"),
        links=service_links(200),
        conditional=True,
        response_headers={200: {"ETag": "The service's generation after the change."}},
    ),
    Operation(
        "DELETE",
        "/services/{id}",
        delete_service,
        "deleteService",
        "Delete a service (data archived unless purge=true)",
        {200: ServiceDeleted},
        "services",
        errors=(409,),
        query=DeleteQuery,
        conditional=True,
    ),
]
