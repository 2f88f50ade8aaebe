"""From the store's records and systemd's answers to the API's response models.

``service_view`` is pure. ``observe_runtime`` asks systemd about the unit now (one D-Bus
call, with a timeout) and compares the unit file and site snippet on disk with the hashes
the reconciler last rendered, so "config_match" is what the host holds at this moment.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime

from pockestrator.api.context import AgentContext
from pockestrator.api.errors import Problem
from pockestrator.api.formatting import short_hash
from pockestrator.api.models import (
    EventView,
    Issue,
    LogEntryView,
    RuntimeStatus,
    Service,
    TokenView,
)
from pockestrator.config import AgentConfig
from pockestrator.controllers.journal import LogEntry
from pockestrator.controllers.systemd import unit_body_hash
from pockestrator.controllers.systemd_bus import UnitStatus
from pockestrator.specs.errors import FieldIssue
from pockestrator.specs.model import unit_name
from pockestrator.specs.store import (
    Event,
    ServiceRecord,
    ServiceStatus,
    TokenRecord,
    utc_now,
)

UNIT_QUERY_TIMEOUT = 5.0


def issue_view(problem: Problem | FieldIssue) -> Issue:
    return Issue(field=problem.field, message=problem.message, code=str(problem.code))


def service_view(
    record: ServiceRecord, status: ServiceStatus | None, config: AgentConfig
) -> Service:
    """The spec's fields as they are (the view takes those the API shows), then the
    record's and the status's."""
    spec = record.spec
    scheme = "https" if config.caddy_tls else "http"
    return Service.model_validate(
        {
            **spec.model_dump(mode="json"),
            "id": record.id,
            "desired_state": record.desired_state,
            "status": status.state if status is not None else "deploying",
            "created_at": record.created_at,
            "updated_at": record.updated_at,
            "systemd_config_hash": short_hash(status.systemd_config_hash if status else None),
            "caddy_config_hash": short_hash(status.caddy_config_hash if status else None),
            "last_health_check": status.last_health_check if status else None,
            "url": f"{scheme}://{spec.domain}",
            "service_name": unit_name(spec.project_name),
            "source": "file" if record.source_file else "api",
            "source_file": record.source_file,
            "deployed_version": status.deployed_version if status else None,
            "health_ok": status.health_ok if status else None,
            "last_error": status.last_error if status else None,
            "generation": record.generation,
            "observed_generation": status.observed_generation if status else None,
        }
    )


@dataclass(frozen=True)
class Runtime:
    """What the host shows for one service right now."""

    unit: UnitStatus | None
    unit_error: str | None
    caddy_status: str
    config_match: bool | None
    checked_at: datetime

    @property
    def is_running(self) -> bool:
        return self.unit is not None and self.unit.is_running

    @property
    def systemd_status(self) -> str:
        if self.unit is None:
            return "unknown"
        if not self.unit.exists:
            return "not-found"
        return self.unit.active_state or "unknown"

    @property
    def active_since(self) -> datetime | None:
        unit = self.unit
        if unit is None or not unit.is_running or unit.active_enter_timestamp_usec is None:
            return None
        return datetime.fromtimestamp(unit.active_enter_timestamp_usec / 1_000_000, UTC)

    def error_message(self, status: ServiceStatus | None) -> str | None:
        if status is not None and status.last_error:
            return status.last_error
        return self.unit_error


def _caddy_status(status: ServiceStatus | None, on_disk: str | None) -> str:
    if status is not None and status.caddy_status == "error":
        return "error"
    if status is None or status.caddy_config_hash is None:
        return "pending" if on_disk is None else "configured"
    if on_disk is None:
        return "missing"
    return "configured" if on_disk == status.caddy_config_hash else "drifted"


def _unit_file_hash(config: AgentConfig, name: str) -> str | None:
    try:
        text = (config.systemd_dir / unit_name(name)).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    return unit_body_hash(text)


def _snippet_hash(agent: AgentContext, name: str) -> str | None:
    try:
        return agent.sites.snippet_hash(name)
    except (OSError, ValueError):
        return None


async def observe_runtime(agent: AgentContext, name: str, status: ServiceStatus | None) -> Runtime:
    unit: UnitStatus | None = None
    unit_error: str | None = None
    try:
        unit = await asyncio.wait_for(agent.bus.unit_status(unit_name(name)), UNIT_QUERY_TIMEOUT)
    except Exception as exc:  # systemd's answer is unknown; say why instead of failing
        unit_error = f"systemd did not answer: {exc}"
    snippet = _snippet_hash(agent, name)
    unit_hash = _unit_file_hash(agent.config, name)
    config_match: bool | None = None
    if status is not None and status.systemd_config_hash and status.caddy_config_hash:
        config_match = (
            unit_hash == status.systemd_config_hash
            and snippet == status.caddy_config_hash
            and not (unit is not None and unit.need_daemon_reload)
        )
    return Runtime(
        unit=unit,
        unit_error=unit_error,
        caddy_status=_caddy_status(status, snippet),
        config_match=config_match,
        checked_at=utc_now(),
    )


def runtime_view(runtime: Runtime, status: ServiceStatus | None) -> RuntimeStatus:
    return RuntimeStatus(
        is_running=runtime.is_running,
        systemd_status=runtime.systemd_status,
        sub_state=runtime.unit.sub_state if runtime.unit else None,
        caddy_status=runtime.caddy_status,
        config_match=runtime.config_match,
        last_checked=runtime.checked_at,
        error_message=runtime.error_message(status),
    )


def event_view(event: Event) -> EventView:
    return EventView(
        id=event.id, at=event.at, kind=event.kind, message=event.message, details=event.details
    )


def token_view(token: TokenRecord) -> TokenView:
    return TokenView(
        id=token.id,
        name=token.name,
        created_at=token.created_at,
        last_used_at=token.last_used_at,
        revoked_at=token.revoked_at,
        revoked=token.revoked_at is not None,
    )


def log_entry_view(entry: LogEntry) -> LogEntryView:
    return LogEntryView(
        timestamp=entry.timestamp,
        level=entry.level,
        message=entry.message,
        source=entry.source,
        line=entry.as_line(),
        cursor=entry.cursor,
        pid=entry.pid,
    )
