"""The API's request and response bodies as pydantic models; the OpenAPI document is built
from these same classes (``api.openapi``), so what is documented is what is sent.

Responses answer with the union of the reference's two variants of each endpoint, so that
a client written against either works: e.g. a service comes back both as ``data`` (variant
one) and as ``service`` (variant two). Every response model forbids extra fields, so the
document is exact and a handler cannot send an undocumented field by accident.

The service bodies (create, patch) and the spec's part of the ``Service`` view are not
written here: they are derived from ``ServiceSpec``'s fields (``api.spec_shapes``), so a
new spec field reaches them, and the document, without an edit here. Request bodies are
checked twice: the spec's own parser (``specs.model.parse_spec``) gives the precise codes
(``NAME_MUST_START_WITH_LETTER``, ``INVALID_DOMAIN``, ...); the strict derived bodies add
what the API promises beyond YAML: JSON types as documented (a port is a number, not the
string "8080"), no unknown fields.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from pydantic_core import PydanticCustomError

from pockestrator.api.spec_shapes import STRICT, VIEW, request_body, spec_view
from pockestrator.specs.errors import ErrorCode
from pockestrator.specs.grammar import NO_ASCII_CONTROLS
from pockestrator.specs.model import ServiceSpec
from pockestrator.specs.values import DesiredState

LIST_LIMIT_MAX = 500
LOG_LINES_MAX = 10_000

ServiceState = Literal["deploying", "active", "inactive", "error"]
RunState = DesiredState

_CLOSED = ConfigDict(extra="forbid")


# -- query parameters: strings on the wire, parsed strictly ------------------------------


def _query_int(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 10:
        return int(value)
    raise PydanticCustomError(str(ErrorCode.INVALID_TYPE), "must be a whole number")


def _query_bool(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise PydanticCustomError(str(ErrorCode.INVALID_TYPE), "must be true or false")


QueryInt = Annotated[int, BeforeValidator(_query_int)]
QueryBool = Annotated[bool, BeforeValidator(_query_bool)]


class ServiceListQuery(BaseModel):
    model_config = _CLOSED

    status: ServiceState | None = Field(default=None, description="Only services in this state.")
    domain: str | None = Field(default=None, description="Only the service with this domain.")
    limit: QueryInt = Field(
        default=50, ge=1, description=f"Page size; values above {LIST_LIMIT_MAX} count as that."
    )
    offset: QueryInt = Field(default=0, ge=0, description="Services to skip (pagination).")


class CreateQuery(BaseModel):
    model_config = _CLOSED

    wait: QueryBool = Field(
        default=False,
        description="Answer after the first reconcile of the new service (bounded).",
    )


class PatchQuery(CreateQuery):
    pass


class DeleteQuery(BaseModel):
    model_config = _CLOSED

    purge: QueryBool = Field(
        default=False, description="Remove the data instead of archiving it (the default)."
    )
    wait: QueryBool = Field(
        default=True, description="Answer after the host has been cleaned up (bounded)."
    )


class LogsQuery(BaseModel):
    model_config = _CLOSED

    lines: QueryInt = Field(
        default=100,
        ge=1,
        description=f"How many of the latest entries; values above {LOG_LINES_MAX} count as that.",
    )
    since: str | None = Field(
        default=None,
        description="Only entries at or after this moment (ISO 8601, e.g. 2025-07-31T19:30:00Z;"
        " without a zone, UTC).",
        examples=["2025-07-31T19:30:00Z"],
    )
    follow: QueryBool = Field(
        default=False,
        description="Keep the response open and stream new entries as server-sent events"
        " (text/event-stream); each event's id is a journal cursor, honoured in Last-Event-ID.",
    )


class EventsQuery(BaseModel):
    model_config = _CLOSED

    limit: QueryInt = Field(
        default=50, ge=1, description=f"Page size; values above {LIST_LIMIT_MAX} count as that."
    )
    before: QueryInt | None = Field(
        default=None, ge=1, description="Only events older than this event id (paging back)."
    )


# -- request bodies ----------------------------------------------------------------------

ServiceCreateBody = request_body(
    ServiceSpec,
    "create",
    "ServiceCreateBody",
    "A new service. ``domain`` defaults to ``<project_name>.<default_domain>``; "
    "``created_by`` to the caller (token name or admin e-mail).",
)
ServicePatchBody = request_body(
    ServiceSpec,
    "patch",
    "ServicePatchBody",
    "A JSON merge patch (RFC 7396) of a service: only the fields given change, ``null``"
    " resets a field to its default (and removes an ``env`` entry). ``project_name`` may be"
    " given, but must not change; ``created_by`` cannot be changed.",
)


class ControlBody(BaseModel):
    model_config = STRICT

    action: Literal["start", "stop", "restart"]


class TokenCreateBody(BaseModel):
    model_config = STRICT

    name: str = Field(min_length=1, max_length=100, pattern=NO_ASCII_CONTROLS.json, examples=["ci"])


class LoginBody(BaseModel):
    model_config = STRICT

    email: str = Field(min_length=1, max_length=254)
    password: str = Field(min_length=1, max_length=1024)


# -- responses ---------------------------------------------------------------------------


class Issue(BaseModel):
    model_config = _CLOSED

    field: str
    message: str
    code: str


class ErrorResponse(BaseModel):
    """Both reference variants of an error: ``errors`` (list) and ``error`` + ``details``."""

    model_config = _CLOSED

    id: str = ""
    status: Literal["error"] = "error"
    message: str
    error: str
    code: str
    errors: list[Issue]
    details: dict[str, list[str]]


class _ServiceId(BaseModel):
    model_config = VIEW

    id: str


# mypy cannot follow a class made at run time; to it the spec's part is the id alone.
if TYPE_CHECKING:
    _ServiceSpecView = _ServiceId
else:
    _ServiceSpecView = spec_view(ServiceSpec, _ServiceId, "ServiceSpecView")


class Service(_ServiceSpecView):
    """A service: its id and its spec's fields (``desired_state`` with any start/stop
    override), then what this agent knows besides."""

    model_config = VIEW

    status: ServiceState
    created_at: datetime
    updated_at: datetime
    systemd_config_hash: str | None = Field(description="12-hex prefix of the unit's SHA-256.")
    caddy_config_hash: str | None = Field(description="12-hex prefix of the site's SHA-256.")
    last_health_check: datetime | None
    url: str
    service_name: str = Field(description="The systemd unit.")
    source: Literal["api", "file"]
    source_file: str | None = Field(description="The spec file that owns the service.")
    deployed_version: str | None
    health_ok: bool | None
    last_error: str | None
    generation: int = Field(description="Counts changes to the spec.")
    observed_generation: int | None = Field(
        description="The generation the last finished reconcile acted on; when it equals "
        "generation, status describes the current spec."
    )


class RuntimeStatus(BaseModel):
    model_config = _CLOSED

    is_running: bool
    systemd_status: str = Field(description="systemd's ActiveState, or 'unknown'.")
    sub_state: str | None
    caddy_status: str = Field(description="configured, missing, drifted or error.")
    config_match: bool | None = Field(description="Unit and site on disk are what was rendered.")
    last_checked: datetime
    error_message: str | None


class UnitRef(BaseModel):
    model_config = _CLOSED

    service_name: str
    status: str


class SiteRef(BaseModel):
    model_config = _CLOSED

    domain: str
    status: str


class ServiceDetail(BaseModel):
    model_config = _CLOSED

    id: str
    status: Literal["success"] = "success"
    message: str
    data: Service
    service: Service
    runtime_status: RuntimeStatus


class ServiceWritten(BaseModel):
    """Answer to a create or an update."""

    model_config = _CLOSED

    id: str
    status: Literal["success"] = "success"
    message: str
    data: Service
    service: Service
    systemd: UnitRef
    caddy: SiteRef
    warnings: list[Issue]
    reconciled: bool = Field(description="A reconcile finished before the answer (wait=true).")
    superuser_password: str | None = Field(
        default=None,
        description="The generated first superuser's password. Shown once, never again.",
    )


class ServiceList(BaseModel):
    model_config = _CLOSED

    services: list[Service]
    total: int
    limit: int
    offset: int


class DeletedService(BaseModel):
    model_config = _CLOSED

    id: str
    project_name: str
    status: Literal["deleted", "deleting"]


class ServiceDeleted(BaseModel):
    model_config = _CLOSED

    id: str
    status: Literal["success"] = "success"
    message: str
    service: DeletedService
    systemd: UnitRef
    caddy: SiteRef
    purge: bool
    removed: bool = Field(description="The host no longer has the service's unit and site.")
    archived_to: str | None = Field(description="Where the data went (not when purged).")


class ControlledService(BaseModel):
    model_config = _CLOSED

    id: str
    project_name: str
    status: ServiceState


class ControlSystemd(BaseModel):
    model_config = _CLOSED

    status: str
    sub_state: str | None
    message: str


class ControlResult(BaseModel):
    model_config = _CLOSED

    id: str
    status: Literal["success"] = "success"
    message: str
    action: Literal["start", "stop", "restart"]
    service: ControlledService
    systemd: ControlSystemd
    desired_state: RunState
    reconciled: bool


class ServiceStatusResponse(BaseModel):
    model_config = _CLOSED

    service_id: str
    project_name: str
    is_running: bool
    systemd_status: str
    sub_state: str | None
    caddy_status: str
    config_match: bool | None
    last_checked: datetime
    error_message: str | None
    pid: int | None
    memory_usage: str | None = Field(examples=["45.2MB"])
    memory_bytes: int | None
    cpu_usage: str | None = Field(examples=["2.1%"])
    cpu_percent: float | None
    restarts: int | None
    active_since: datetime | None
    state: ServiceState
    desired_state: RunState
    health_ok: bool | None
    last_health_check: datetime | None
    deployed_version: str | None


class LogEntryView(BaseModel):
    model_config = _CLOSED

    timestamp: datetime
    level: str
    message: str
    source: str
    line: str = Field(description="The entry as one plain line (the first variant's form).")
    cursor: str | None
    pid: int | None


class LogsResponse(BaseModel):
    """Variant two's entries in ``logs``, variant one's plain lines in ``log_lines``."""

    model_config = _CLOSED

    service_id: str
    project_name: str
    lines: int = Field(description="How many entries were asked for.")
    logs: list[LogEntryView]
    log_lines: list[str]
    total_lines: int
    timestamp: datetime
    retrieved_at: datetime


class EventView(BaseModel):
    model_config = _CLOSED

    id: int
    at: datetime
    kind: str
    message: str
    details: dict[str, Any]


class EventList(BaseModel):
    model_config = _CLOSED

    service_id: str
    project_name: str
    events: list[EventView]
    total: int
    next_before: int | None = Field(description="Pass as `before` for the next, older page.")


class ValidationChecks(BaseModel):
    model_config = _CLOSED

    project_name_available: bool
    port_available: bool
    domain_valid: bool
    version_exists: bool
    domain_reachable: bool | None = Field(
        description="The domain resolves to this host (None: not checked)."
    )


class ServiceValidation(BaseModel):
    """200 when valid, 400 when not; the 400 also carries the error union's fields."""

    model_config = _CLOSED

    valid: bool
    errors: list[Issue]
    warnings: list[Issue]
    checks: ValidationChecks
    status: Literal["success", "error"]
    message: str
    error: str | None = None
    code: str | None = None
    details: dict[str, list[str]] | None = None


class ConfigView(BaseModel):
    model_config = _CLOSED

    base_dir: str
    systemd_dir: str
    caddy_config: str
    default_domain: str
    caddy_sites_dir: str
    spec_dir: str
    systemd_manager: Literal["system", "user"]
    release_source: str
    listen: str


class ReleaseList(BaseModel):
    model_config = _CLOSED

    versions: list[str] = Field(
        description="PocketBase versions that can be deployed, newest first (the release "
        "index's, plus any in the local cache)."
    )
    latest: str | None = Field(description="The newest version that is not a pre-release.")
    source: str = Field(description="Where versions come from: github, mirror or pypi.")
    available: bool = Field(description="False when the release index could not be read.")
    error: str | None = Field(description="Why the index could not be read, when it could not.")


class SystemInfo(BaseModel):
    model_config = _CLOSED

    version: str
    uptime: str = Field(examples=["2h30m15s"])
    uptime_seconds: float
    started_at: datetime
    config: ConfigView
    services: int
    queue_depth: int
    public_port: int | None = Field(
        description="The port Caddy serves the instances' domains on (the Caddyfile's"
        " http_port, or https_port with TLS); null when it is the scheme's default.",
    )


class HealthChecks(BaseModel):
    model_config = _CLOSED

    systemd: bool
    caddy: bool
    permissions: bool
    dbus: bool
    systemd_dir_writable: bool
    base_dir_writable: bool
    caddy_sites_dir_writable: bool
    caddyfile_writable: bool
    database_writable: bool
    caddy_binary: bool
    caddy_running: bool
    journalctl: bool


class HealthReport(BaseModel):
    model_config = _CLOSED

    healthy: bool
    checks: HealthChecks
    errors: list[Issue]
    warnings: list[Issue]


class RequiredTools(BaseModel):
    model_config = _CLOSED

    systemctl: bool
    journalctl: bool
    caddy: bool


class SystemChecks(BaseModel):
    model_config = _CLOSED

    systemd_available: bool
    systemd_writable: bool
    caddy_available: bool
    caddy_writable: bool
    base_directory_writable: bool
    caddy_running: bool
    required_tools: RequiredTools


class SystemValidation(BaseModel):
    model_config = _CLOSED

    is_valid: bool
    errors: list[Issue]
    warnings: list[Issue]
    checks: SystemChecks


class TokenView(BaseModel):
    model_config = _CLOSED

    id: str
    name: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
    revoked: bool


class TokenList(BaseModel):
    model_config = _CLOSED

    tokens: list[TokenView]
    total: int


class TokenCreated(BaseModel):
    model_config = _CLOSED

    id: str
    name: str
    token: str = Field(description="The token itself: shown once, stored only as a hash.")
    created_at: datetime
    message: str


class TokenRevoked(BaseModel):
    model_config = _CLOSED

    id: str
    revoked: bool
    message: str


class AdminView(BaseModel):
    model_config = _CLOSED

    id: str
    email: str


class LoginResponse(BaseModel):
    model_config = _CLOSED

    token: str
    token_type: Literal["Bearer"] = "Bearer"  # noqa: S105 (the scheme name)
    expires_at: datetime
    expires_in: int
    admin: AdminView


class LogoutResponse(BaseModel):
    model_config = _CLOSED

    revoked: bool
    message: str


class Liveness(BaseModel):
    model_config = _CLOSED

    status: Literal["ok"] = "ok"
