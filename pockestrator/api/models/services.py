"""What the service operations answer (``api.service_routes``): the ``Service`` view and
the answers that carry it, control, status, events and the pre-flight validation.

The answers about one service share the reference's envelope ``{id, status: "success",
message}`` (``ServiceAnswer``); those that show the service show it once per variant, as
``data`` and as ``service`` (``ServiceViewAnswer``).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field

from pockestrator.api.models import ClosedModel, NextCursor, OlderCursor, ServiceState
from pockestrator.api.models.problems import Issue
from pockestrator.api.spec_shapes import VIEW, spec_view
from pockestrator.specs.model import ServiceSpec
from pockestrator.specs.values.service import DesiredState


class _ServiceId(BaseModel):
    model_config = VIEW

    id: str


# mypy cannot follow a class made at run time; to it the spec's part is the id alone.
if TYPE_CHECKING:
    _ServiceSpecView = _ServiceId
else:
    _ServiceSpecView = spec_view(ServiceSpec, _ServiceId, "ServiceSpecView")


class CertificateView(ClosedModel):
    """The certificate Caddy serves for the service's domain, as last asked of Caddy."""

    not_before: datetime | None = Field(description="Valid from; null: Caddy serves none yet.")
    not_after: datetime | None = Field(description="Expires at; Caddy renews it before.")
    renews_after: datetime | None = Field(
        description="When Caddy starts renewing it: a third of its lifetime before expiry."
    )
    issuer: str | None = Field(description="The issuer's name (its CA's certificate).")
    checked_at: datetime = Field(description="When Caddy was last asked.")


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
    secret_env_names: list[str] = Field(
        description="The names of the secret_env variables; their values are never shown."
    )
    certificate: CertificateView | None = Field(
        description="With TLS: the certificate Caddy serves for the domain; null without TLS "
        "or before Caddy was first asked."
    )


class RuntimeStatus(ClosedModel):
    is_running: bool
    systemd_status: str = Field(description="systemd's ActiveState, or 'unknown'.")
    sub_state: str | None
    caddy_status: str = Field(
        description="configured, missing, drifted or error; unknown when the node that runs "
        "the service could not be asked (error_message says why)."
    )
    config_match: bool | None = Field(description="Unit and site on disk are what was rendered.")
    last_checked: datetime
    error_message: str | None


class UnitRef(ClosedModel):
    service_name: str
    status: str


class SiteRef(ClosedModel):
    domain: str
    status: str


class ServiceAnswer(ClosedModel):
    """The envelope of a successful answer about one service (its fields come first)."""

    id: str
    status: Literal["success"] = "success"
    message: str


class ServiceViewAnswer(ServiceAnswer):
    """An answer that shows the service, once per reference variant."""

    data: Service
    service: Service


class ServiceDetail(ServiceViewAnswer):
    runtime_status: RuntimeStatus


class ServiceWritten(ServiceViewAnswer):
    """Answer to a create or an update."""

    systemd: UnitRef
    caddy: SiteRef
    warnings: list[Issue]
    reconciled: bool = Field(description="A reconcile finished before the answer (wait=true).")
    superuser_password: str | None = Field(
        default=None,
        description="The generated first superuser's password. Shown once, never again.",
    )


class ServiceList(ClosedModel):
    services: list[Service]
    total: int
    limit: int
    offset: int
    next: NextCursor


class WatchSynced(ClosedModel):
    """The end of a watch's full state: every service it covers has been sent."""

    resource_version: str = Field(description="The version the state was read at (the id).")
    ids: list[str] = Field(description="The ids of every service covered now; drop others.")


class WatchGone(ClosedModel):
    """A watched service was deleted, or no longer matches the list's filter."""

    id: str
    project_name: str


class DeletedService(ClosedModel):
    id: str
    project_name: str
    status: Literal["deleted", "deleting"]


class ServiceDeleted(ServiceAnswer):
    service: DeletedService
    systemd: UnitRef
    caddy: SiteRef
    purge: bool
    removed: bool = Field(description="The host no longer has the service's unit and site.")
    archived_to: str | None = Field(description="Where the data went (not when purged).")


class ControlledService(ClosedModel):
    id: str
    project_name: str
    status: ServiceState


class ControlSystemd(ClosedModel):
    status: str
    sub_state: str | None
    message: str


class ControlResult(ServiceAnswer):
    action: Literal["start", "stop", "restart"]
    service: ControlledService
    systemd: ControlSystemd
    desired_state: DesiredState
    reconciled: bool


class ServiceStatusResponse(ClosedModel):
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
    desired_state: DesiredState
    health_ok: bool | None
    last_health_check: datetime | None
    deployed_version: str | None
    certificate: CertificateView | None


class EventView(ClosedModel):
    id: int
    at: datetime
    kind: str
    message: str
    details: dict[str, Any]


class EventList(ClosedModel):
    service_id: str
    project_name: str
    events: list[EventView]
    total: int
    next_before: int | None = Field(description="Pass as `before` for the next, older page.")
    next: OlderCursor


class ValidationChecks(ClosedModel):
    project_name_available: bool
    port_available: bool
    domain_valid: bool
    version_exists: bool
    domain_reachable: bool | None = Field(
        description="The domain resolves to this host (None: not checked)."
    )


class ServiceValidation(ClosedModel):
    """200 when valid, 400 when not; the 400 also carries the error union's fields."""

    valid: bool
    errors: list[Issue]
    warnings: list[Issue]
    checks: ValidationChecks
    status: Literal["success", "error"]
    message: str
    error: str | None = None
    code: str | None = None
    details: dict[str, list[str]] | None = None
