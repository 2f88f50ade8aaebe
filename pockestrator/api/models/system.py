"""What the system operations answer (``api.system_routes``): the agent's version, uptime
and configuration, the deployable releases, the host's health and prerequisites (from
``api.hostcheck``), and the liveness probe."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from pockestrator.api.models import ClosedModel
from pockestrator.api.models.problems import Issue


class ConfigView(ClosedModel):
    base_dir: str
    systemd_dir: str
    caddy_config: str
    default_domain: str
    caddy_sites_dir: str
    spec_dir: str
    systemd_manager: Literal["system", "user"]
    release_source: str
    listen: str


class ReleaseList(ClosedModel):
    versions: list[str] = Field(
        description="PocketBase versions that can be deployed, newest first (the release "
        "index's, plus any in the local cache)."
    )
    latest: str | None = Field(description="The newest version that is not a pre-release.")
    source: str = Field(description="Where versions come from: github, mirror or pypi.")
    available: bool = Field(description="False when the release index could not be read.")
    error: str | None = Field(description="Why the index could not be read, when it could not.")


class SystemInfo(ClosedModel):
    version: str
    api_version: str = Field(
        description="The API contract this agent keeps (the OpenAPI document's info.version);"
        " a client compares its major number."
    )
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


class HealthChecks(ClosedModel):
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


class HealthReport(ClosedModel):
    healthy: bool
    checks: HealthChecks
    errors: list[Issue]
    warnings: list[Issue]


class RequiredTools(ClosedModel):
    systemctl: bool
    journalctl: bool
    caddy: bool


class SystemChecks(ClosedModel):
    systemd_available: bool
    systemd_writable: bool
    caddy_available: bool
    caddy_writable: bool
    base_directory_writable: bool
    caddy_running: bool
    required_tools: RequiredTools


class SystemValidation(ClosedModel):
    is_valid: bool
    errors: list[Issue]
    warnings: list[Issue]
    checks: SystemChecks


class Liveness(ClosedModel):
    status: Literal["ok"] = "ok"
