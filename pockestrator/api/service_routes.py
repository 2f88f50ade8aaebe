"""Services: create, list, read, change, delete, control, status, events, validation.

Writes go to the store and become reconciles (``agent.enqueue``); the API never drives
systemd itself except for the one-off restart the agent offers. Start and stop are intent:
the desired run state is recorded (``store.set_desired_state``), then the answer waits for
the reconcile that acts on it (bounded) and reports what systemd then shows.

A service is addressed by its id or its project name. Services owned by a spec file are
read-only here for spec changes and deletion (409 ``OWNED_BY_FILE``, naming the file);
start, stop and restart work for them too.

Creating a service with ``superuser_email``: the password is generated here and put in
the store before the spec, so the reconciler uses it; the 201 answer shows it once. It is
never logged.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import structlog
from aiohttp import web
from pydantic import BaseModel

from pockestrator.api.context import AgentContext, ControlFailed
from pockestrator.api.errors import ApiError, Problem, field_error, not_found, validation_failed
from pockestrator.api.formatting import human_bytes, human_percent
from pockestrator.api.inputs import (
    merge_patch,
    parse_query,
    read_json,
    shape_problems,
    validate_model,
)
from pockestrator.api.models.problems import ErrorResponse
from pockestrator.api.models.requests import (
    LIST_LIMIT_MAX,
    ControlBody,
    CreateQuery,
    DeleteQuery,
    EventsQuery,
    PatchQuery,
    ServiceCreateBody,
    ServiceListQuery,
    ServicePatchBody,
)
from pockestrator.api.models.services import (
    ControlledService,
    ControlResult,
    ControlSystemd,
    DeletedService,
    EventList,
    ServiceDeleted,
    ServiceDetail,
    ServiceList,
    ServiceStatusResponse,
    ServiceValidation,
    ServiceWritten,
    SiteRef,
    UnitRef,
    ValidationChecks,
)
from pockestrator.api.reachability import resolves_here
from pockestrator.api.routing import Operation, ResponseModels, agent_of, answer, principal_of
from pockestrator.api.views import (
    event_view,
    issue_view,
    runtime_view,
    service_view,
)
from pockestrator.specs.errors import ErrorCode, FieldIssue, SpecInvalid
from pockestrator.specs.grammar import GrammarError, has_control_characters, normalize_domain
from pockestrator.specs.model import ServiceSpec, parse_spec, unit_name
from pockestrator.specs.store import (
    API_OWNER,
    Conflict,
    NameTakenCode,
    NotFound,
    ServiceRecord,
    Store,
)
from pockestrator.specs.validation import ReleaseIndexUnavailable, validate_in_context

log = structlog.get_logger("pockestrator.api")

WAIT_SECONDS = 60.0
SUPERUSER_PASSWORD_BYTES = 18
_CONFLICT_CODES = {
    ErrorCode.DELETION_PENDING,
    ErrorCode.OWNED_BY_FILE,
    ErrorCode.OWNED_BY_OTHER_SOURCE,
}


class _ReleaseIndex:
    """The agent's release index, where any failure means "cannot check now" (a warning)."""

    def __init__(self, agent: AgentContext) -> None:
        self.agent = agent

    async def versions(self) -> Sequence[str]:
        try:
            return await self.agent.host.versions()
        except ReleaseIndexUnavailable:
            raise
        except Exception as exc:  # the index is best effort; its failure is not the caller's
            raise ReleaseIndexUnavailable(str(exc)) from exc


# -- helpers ---------------------------------------------------------------------------


def find_service(agent: AgentContext, key: str) -> ServiceRecord:
    record = agent.store.get_service(key)
    if record is None:
        raise not_found("Service", key, ErrorCode.SERVICE_NOT_FOUND)
    return record


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


def conflict_error(exc: Conflict) -> ApiError:
    problems = [Problem.of(issue) for issue in exc.issues]
    if any(issue.code in _CONFLICT_CODES for issue in exc.issues):
        return ApiError(409, problems[0].code, problems[0].message, problems)
    return validation_failed(problems)


def _overlaps(field: str, others: set[str]) -> bool:
    return any(
        field == other or field.startswith(other + ".") or other.startswith(field + ".")
        for other in others
    )


def checked_spec(
    data: Any, default_domain: str, shape: type[BaseModel], original: Any
) -> ServiceSpec:
    """``data`` as a spec, or 400 with every problem: grammar codes first, then JSON types.

    ``original`` is what the client sent (checked against ``shape``, the strict model).
    """
    problems: list[Problem] = []
    spec: ServiceSpec | None = None
    try:
        spec = parse_spec(data, default_domain)
    except SpecInvalid as exc:
        problems = [Problem.of(issue) for issue in exc.issues]
    seen = {problem.field for problem in problems}
    problems += [p for p in shape_problems(shape, original) if not _overlaps(p.field, seen)]
    if problems or spec is None:
        raise validation_failed(problems)
    return spec


async def context_problems(
    agent: AgentContext,
    spec: ServiceSpec,
    *,
    replacing: ServiceRecord | None,
    name_code: NameTakenCode,
) -> tuple[list[FieldIssue], list[FieldIssue], dict[str, bool]]:
    """Errors, warnings and checks of ``spec`` against the other services and the host.

    Which claims are taken is the store's answer, the same the write would get; the write
    itself still refuses them (``Conflict``) should another request take one meanwhile.
    """
    taken = agent.store.claims_taken(
        spec, replacing=replacing.name if replacing else None, name_code=name_code
    )
    report = await validate_in_context(
        spec,
        taken=taken,
        agent_port=agent.config.listen_port,
        release_index=_ReleaseIndex(agent),
        own_port=replacing.spec.port if replacing else None,
    )
    return report.errors, report.warnings, report.checks


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
    reconciled = await agent.wait_reconciled(name, WAIT_SECONDS) if wait else False
    current = agent.store.get_service(name) or record
    service_status = agent.store.get_status(name)
    view = service_view(current, service_status, agent.config)
    if reconciled:
        runtime = await agent.host.runtime(name, service_status)
        unit_state, site_state = runtime.systemd_status, runtime.caddy_status
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
    return answer(body, status, drop_none=("superuser_password",))


# -- handlers --------------------------------------------------------------------------


async def list_services(request: web.Request) -> web.StreamResponse:
    agent = agent_of(request)
    query = parse_query(request, ServiceListQuery)
    domain = None
    if query.domain is not None:
        try:
            domain = normalize_domain(query.domain)
        except GrammarError as exc:
            raise validation_failed([Problem("domain", exc.message, exc.code)]) from None
    limit = min(query.limit, LIST_LIMIT_MAX)
    records, total = agent.store.list_services(
        state=query.status, domain=domain, limit=limit, offset=query.offset
    )
    statuses = agent.store.all_statuses()
    services = [service_view(r, statuses.get(r.name), agent.config) for r in records]
    return answer(ServiceList(services=services, total=total, limit=limit, offset=query.offset))


async def create_service(request: web.Request) -> web.StreamResponse:
    agent = agent_of(request)
    query = parse_query(request, CreateQuery)
    body = await read_json(request, limit=agent.config.max_body_bytes)
    if not isinstance(body, Mapping):
        raise validation_failed([Problem("body", "must be a JSON object", ErrorCode.NOT_A_MAPPING)])
    data = dict(body)
    if not data.get("created_by"):
        data["created_by"] = caller_label(request)
    spec = checked_spec(data, agent.config.default_domain, ServiceCreateBody, body)
    errors, warnings, _checks = await context_problems(
        agent, spec, replacing=None, name_code=ErrorCode.DUPLICATE_PROJECT_NAME
    )
    if errors:
        raise validation_failed([Problem.of(issue) for issue in errors])
    name = spec.project_name
    try:
        with handed_password(agent.store, name, bool(spec.superuser_email)) as password:
            record = agent.store.create_service(spec, owner=API_OWNER)
    except Conflict as exc:
        raise conflict_error(exc) from None
    agent.enqueue(name)
    log.info(
        "service created",
        service=name,
        by=principal_of(request).name,
        version=spec.pocketbase_version,
        port=spec.port,
    )
    return await written_answer(
        request,
        record,
        message="Service created successfully",
        status=201,
        warnings=warnings,
        wait=query.wait,
        password=password,
    )


async def get_service(request: web.Request) -> web.StreamResponse:
    agent = agent_of(request)
    record = find_service(agent, request.match_info["id"])
    status = agent.store.get_status(record.name)
    view = service_view(record, status, agent.config)
    runtime = await agent.host.runtime(record.name, status)
    return answer(
        ServiceDetail(
            id=record.id,
            message="Service retrieved successfully",
            data=view,
            service=view,
            runtime_status=runtime_view(runtime, status),
        )
    )


async def update_service(request: web.Request) -> web.StreamResponse:
    agent = agent_of(request)
    record = find_service(agent, request.match_info["id"])
    refuse_file_owned(record)
    query = parse_query(request, PatchQuery)
    body = await read_json(request, limit=agent.config.max_body_bytes)
    if not isinstance(body, Mapping):
        raise validation_failed([Problem("body", "must be a JSON object", ErrorCode.NOT_A_MAPPING)])
    renamed = body.get("project_name")
    if renamed is not None and renamed != record.name:
        raise validation_failed(
            [Problem("project_name", "project_name cannot be changed", ErrorCode.INVALID_VALUE)]
        )
    merged = merge_patch(record.spec.model_dump(mode="json"), body)
    merged["project_name"] = record.name
    spec = checked_spec(merged, agent.config.default_domain, ServicePatchBody, body)
    errors, warnings, _checks = await context_problems(
        agent, spec, replacing=record, name_code=ErrorCode.DUPLICATE_PROJECT_NAME
    )
    if errors:
        raise validation_failed([Problem.of(issue) for issue in errors])
    new_email = spec.superuser_email not in (None, record.spec.superuser_email)
    try:
        with handed_password(agent.store, record.name, new_email) as password:
            updated = agent.store.replace_spec(record.name, spec, owner=API_OWNER)
    except NotFound:
        raise not_found("Service", record.name, ErrorCode.SERVICE_NOT_FOUND) from None
    except Conflict as exc:
        raise conflict_error(exc) from None
    agent.enqueue(record.name)
    log.info(
        "service updated",
        service=record.name,
        by=principal_of(request).name,
        fields=sorted(str(key) for key in body),
    )
    return await written_answer(
        request,
        updated,
        message="Service updated successfully",
        status=200,
        warnings=warnings,
        wait=query.wait,
        password=password,
    )


async def delete_service(request: web.Request) -> web.StreamResponse:
    agent = agent_of(request)
    record = find_service(agent, request.match_info["id"])
    refuse_file_owned(record)
    query = parse_query(request, DeleteQuery)
    name = record.name
    try:
        agent.store.delete_service(name, purge=query.purge, owner=API_OWNER)
    except NotFound:
        raise not_found("Service", name, ErrorCode.SERVICE_NOT_FOUND) from None
    except Conflict as exc:
        raise conflict_error(exc) from None
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


_DONE_MESSAGES = {
    "start": "Service started successfully",
    "stop": "Service stopped successfully",
    "restart": "Service restarted successfully",
}


async def control_service(request: web.Request) -> web.StreamResponse:
    agent = agent_of(request)
    record = find_service(agent, request.match_info["id"])
    body = await read_json(request, limit=agent.config.max_body_bytes)
    action = validate_model(ControlBody, body).action
    name = record.name
    try:
        if action == "restart" and record.desired_state == "running":
            await agent.restart_service(name)
        else:
            agent.store.set_desired_state(name, "stopped" if action == "stop" else "running")
    except NotFound:
        raise not_found("Service", name, ErrorCode.SERVICE_NOT_FOUND) from None
    except ControlFailed as exc:
        raise ApiError(
            502,
            ErrorCode.CONTROL_FAILED,
            f"systemd could not {action} {unit_name(name)}: {exc}",
            service_id=record.id,
        ) from None
    log.info("service control", service=name, action=action, by=principal_of(request).name)
    reconciled = await agent.wait_reconciled(name, WAIT_SECONDS)
    current = agent.store.get_service(name) or record
    status = agent.store.get_status(name)
    runtime = await agent.host.runtime(name, status)
    succeeded = runtime.is_running != (action == "stop")
    if reconciled and not succeeded:
        reason = runtime.error_message(status) or f"the unit is {runtime.systemd_status}"
        raise ApiError(
            502,
            ErrorCode.CONTROL_FAILED,
            f"Service did not {action}: {reason}",
            service_id=record.id,
        )
    message = _DONE_MESSAGES[action] if reconciled else f"Service {action} is still in progress"
    return answer(
        ControlResult(
            id=record.id,
            message=message,
            action=action,
            service=ControlledService(
                id=record.id,
                project_name=name,
                status=status.state if status else "deploying",
            ),
            systemd=ControlSystemd(
                status=runtime.systemd_status,
                sub_state=runtime.unit.sub_state if runtime.unit else None,
                message=message,
            ),
            desired_state=current.desired_state,
            reconciled=reconciled,
        ),
        200 if reconciled else 202,
    )


async def service_status(request: web.Request) -> web.StreamResponse:
    agent = agent_of(request)
    record = find_service(agent, request.match_info["id"])
    status = agent.store.get_status(record.name)
    runtime = await agent.host.runtime(record.name, status)
    unit = runtime.unit
    memory = unit.memory_bytes if unit is not None and unit.is_running else None
    cpu = status.cpu_percent if status is not None and runtime.is_running else None
    return answer(
        ServiceStatusResponse(
            service_id=record.id,
            project_name=record.name,
            is_running=runtime.is_running,
            systemd_status=runtime.systemd_status,
            sub_state=unit.sub_state if unit else None,
            caddy_status=runtime.caddy_status,
            config_match=runtime.config_match,
            last_checked=runtime.checked_at,
            error_message=runtime.error_message(status),
            pid=unit.main_pid if unit is not None and unit.is_running else None,
            memory_usage=human_bytes(memory),
            memory_bytes=memory,
            cpu_usage=human_percent(cpu),
            cpu_percent=cpu,
            restarts=unit.restarts if unit else None,
            active_since=runtime.active_since,
            state=status.state if status else "deploying",
            desired_state=record.desired_state,
            health_ok=status.health_ok if status else None,
            last_health_check=status.last_health_check if status else None,
            deployed_version=status.deployed_version if status else None,
        )
    )


async def service_events(request: web.Request) -> web.StreamResponse:
    agent = agent_of(request)
    record = find_service(agent, request.match_info["id"])
    query = parse_query(request, EventsQuery)
    limit = min(query.limit, LIST_LIMIT_MAX)
    events = agent.store.list_events(record.name, limit=limit, before=query.before)
    return answer(
        EventList(
            service_id=record.id,
            project_name=record.name,
            events=[event_view(event) for event in events],
            total=agent.store.count_events(record.name),
            next_before=events[-1].id if len(events) == limit else None,
        )
    )


def _checks_for(problems: Sequence[Problem]) -> ValidationChecks:
    fields = {problem.field.split(".")[0] for problem in problems}
    return ValidationChecks(
        project_name_available="project_name" not in fields,
        port_available="port" not in fields,
        domain_valid="domain" not in fields,
        version_exists="pocketbase_version" not in fields,
        domain_reachable=None,
    )


async def validate_service(request: web.Request) -> web.StreamResponse:
    """The reference's pre-flight check: errors make it 400, warnings alone do not."""
    agent = agent_of(request)
    try:
        body = await read_json(request, limit=agent.config.max_body_bytes)
        if not isinstance(body, Mapping):
            raise validation_failed(
                [Problem("body", "must be a JSON object", ErrorCode.NOT_A_MAPPING)]
            )
        spec = checked_spec(dict(body), agent.config.default_domain, ServiceCreateBody, body)
    except ApiError as exc:
        if exc.status != 400:
            raise
        return _validation_answer(exc.problems, [], _checks_for(exc.problems))
    errors, warnings, checks = await context_problems(
        agent, spec, replacing=None, name_code=ErrorCode.PROJECT_NAME_EXISTS
    )
    reachable = await resolves_here(spec.domain)
    if not reachable:
        warnings.append(
            FieldIssue(
                "domain",
                f"Domain {spec.domain} does not resolve to this server; it may not be reachable",
                ErrorCode.DOMAIN_UNREACHABLE,
            )
        )
    result = ValidationChecks(
        project_name_available=checks.get("project_name_available", True),
        port_available=checks.get("port_available", True),
        domain_valid=checks.get("domain_valid", True),
        version_exists=checks.get("version_exists", True),
        domain_reachable=reachable,
    )
    return _validation_answer(
        [Problem.of(issue) for issue in errors],
        [Problem.of(issue) for issue in warnings],
        result,
    )


def _validation_answer(
    errors: Sequence[Problem], warnings: Sequence[Problem], checks: ValidationChecks
) -> web.Response:
    if not errors:
        return answer(
            ServiceValidation(
                valid=True,
                errors=[],
                warnings=[issue_view(w) for w in warnings],
                checks=checks,
                status="success",
                message="The service configuration is valid",
            )
        )
    failure = validation_failed(errors).body()
    return answer(
        ServiceValidation(
            valid=False,
            errors=[issue_view(e) for e in errors],
            warnings=[issue_view(w) for w in warnings],
            checks=checks,
            status="error",
            message="Validation failed",
            error="Validation failed",
            code=str(failure["code"]),
            details=failure["details"],
        ),
        400,
    )


# -- the table -------------------------------------------------------------------------

_COMMON: dict[int, ResponseModels] = {
    400: ErrorResponse,
    401: ErrorResponse,
    403: ErrorResponse,
}
_ONE: dict[int, ResponseModels] = {**_COMMON, 404: ErrorResponse}
_BODY: dict[int, ResponseModels] = {413: ErrorResponse, 415: ErrorResponse}

OPERATIONS = [
    Operation(
        "GET",
        "/services",
        list_services,
        "listServices",
        "List managed services",
        {200: ServiceList, **_COMMON},
        "services",
        query=ServiceListQuery,
    ),
    Operation(
        "POST",
        "/services",
        create_service,
        "createService",
        "Create and deploy a PocketBase service",
        {201: ServiceWritten, **_COMMON, 409: ErrorResponse, **_BODY},
        "services",
        description="Validates the spec against the other services and the host (400 with"
        " every problem), stores it and queues its reconcile. With superuser_email, the"
        " generated password is in this answer only.",
        query=CreateQuery,
        body=ServiceCreateBody,
    ),
    Operation(
        "GET",
        "/services/{id}",
        get_service,
        "getService",
        "A service, by id or project name, with its runtime status",
        {200: ServiceDetail, **_ONE},
        "services",
    ),
    Operation(
        "PATCH",
        "/services/{id}",
        update_service,
        "updateService",
        "Change a service's spec (JSON merge patch)",
        {200: ServiceWritten, **_ONE, 409: ErrorResponse, **_BODY},
        "services",
        description="Version upgrades, domain, env, limits, flags, desired state. Services"
        " owned by a spec file answer 409 OWNED_BY_FILE.",
        query=PatchQuery,
        body=ServicePatchBody,
        body_types=("application/json", "application/merge-patch+json"),
    ),
    Operation(
        "DELETE",
        "/services/{id}",
        delete_service,
        "deleteService",
        "Delete a service (data archived unless purge=true)",
        {200: ServiceDeleted, **_ONE, 409: ErrorResponse},
        "services",
        query=DeleteQuery,
    ),
    Operation(
        "POST",
        "/services/{id}/control",
        control_service,
        "controlService",
        "Start, stop or restart a service",
        {200: ControlResult, 202: ControlResult, **_ONE, 502: ErrorResponse, **_BODY},
        "services",
        description="start and stop record the desired run state and answer after the"
        " reconcile that applies it (202 if it takes longer than a minute); restart is a"
        " one-off restart. Works for file-owned services too.",
        body=ControlBody,
    ),
    Operation(
        "GET",
        "/services/{id}/status",
        service_status,
        "getServiceStatus",
        "Real-time status: systemd state, PID, memory, CPU, config match, Caddy",
        {200: ServiceStatusResponse, **_ONE},
        "services",
    ),
    Operation(
        "GET",
        "/services/{id}/events",
        service_events,
        "listServiceEvents",
        "The service's event log, newest first",
        {200: EventList, **_ONE},
        "services",
        query=EventsQuery,
    ),
    Operation(
        "POST",
        "/validate/service",
        validate_service,
        "validateService",
        "Validate a service configuration before creating it",
        {
            200: ServiceValidation,
            400: (ServiceValidation, ErrorResponse),
            401: ErrorResponse,
            403: ErrorResponse,
            **_BODY,
        },
        "validation",
        body=ServiceCreateBody,
    ),
]
