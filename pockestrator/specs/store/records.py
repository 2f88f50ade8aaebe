"""What the store hands out: plain frozen records, owners, and the store's errors.

Callers never see a database row: every read returns one of these, so a second backend
(PostgreSQL) can stand behind the same interface.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from pockestrator.specs.errors import FieldIssue
from pockestrator.specs.model import ServiceSpec

API_OWNER = "api"
FILE_OWNER_PREFIX = "file:"
STATUS_STATES = ("deploying", "active", "inactive", "error")


def file_owner(path: Path | str) -> str:
    return f"{FILE_OWNER_PREFIX}{path}"


def owner_file(owner: str) -> str | None:
    """The spec file that owns a service, or None for API-owned ones."""
    return owner[len(FILE_OWNER_PREFIX) :] if owner.startswith(FILE_OWNER_PREFIX) else None


class StoreError(Exception):
    """Base of the store's own errors."""


class Conflict(StoreError):
    """The change collides with existing state; ``issues`` carry field and code."""

    def __init__(self, issues: list[FieldIssue]) -> None:
        self.issues = issues
        super().__init__("; ".join(str(issue) for issue in issues))


class NotFound(StoreError):
    pass


@dataclass(frozen=True)
class ServiceRecord:
    """One desired service as stored."""

    id: str
    spec: ServiceSpec
    owner: str
    run_override: str | None
    created_at: datetime
    updated_at: datetime
    generation: int
    # The node of the fleet it runs on ('' until an agent adopts it).
    node: str = ""

    @property
    def name(self) -> str:
        return self.spec.project_name

    @property
    def desired_state(self) -> str:
        """What the reconciler enforces: an API start/stop override wins over the spec."""
        return self.run_override or self.spec.desired_state

    @property
    def source_file(self) -> str | None:
        return owner_file(self.owner)


@dataclass(frozen=True)
class ServiceSummary:
    """A service in a few words, read without its spec (``Store.service_summaries``)."""

    name: str
    domain: str
    desired_state: str


@dataclass(frozen=True)
class Deletion:
    name: str
    service_id: str
    purge: bool
    requested_at: datetime
    # The node whose agent removes it from its host.
    node: str = ""


@dataclass(frozen=True)
class ServiceStatus:
    """What the reconciler last observed and concluded about one service."""

    name: str
    state: str = "deploying"
    systemd_config_hash: str | None = None
    caddy_config_hash: str | None = None
    config_match: bool | None = None
    caddy_status: str | None = None
    active_state: str | None = None
    sub_state: str | None = None
    pid: int | None = None
    memory_bytes: int | None = None
    cpu_usage_nsec: int | None = None
    restarts: int | None = None
    deployed_version: str | None = None
    failed_version: str | None = None
    cpu_percent: float | None = None
    # The spec generation the last finished reconcile acted on (compare with the record's).
    observed_generation: int | None = None
    last_health_check: datetime | None = None
    health_ok: bool | None = None
    health_failures: int = 0
    last_error: str | None = None
    # E-mails of the first superusers the agent has created in the instance.
    superusers: tuple[str, ...] = ()
    # PocketBase's settings: the keyed hash of the last applied (and verified) desired
    # settings, when the agent last read them, and the process it read them from.
    settings_hash: str | None = None
    settings_checked_at: datetime | None = None
    settings_pid: int | None = None
    # The certificate Caddy serves for the domain (TLS services): its validity, its
    # issuer's name, and when Caddy was last asked (controllers.caddy.certificates).
    certificate_not_before: datetime | None = None
    certificate_not_after: datetime | None = None
    certificate_issuer: str | None = None
    certificate_checked_at: datetime | None = None
    updated_at: datetime | None = None


STATUS_FIELDS = tuple(f for f in ServiceStatus.__dataclass_fields__ if f != "name")


@dataclass(frozen=True)
class Event:
    id: int
    service: str
    at: datetime
    kind: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)
