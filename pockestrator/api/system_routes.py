"""The agent and its host: version and uptime, health (200 or 503), system validation,
an unauthenticated liveness probe that reveals nothing, and the OpenAPI document.

``/system/info`` also says on which port Caddy serves the instances (``public_port``, from the
host view, which reads the main Caddyfile's global options): the dashboard needs it to link
to an instance when Caddy does not listen on the scheme's default port (the sandbox's HTTP
port).
"""

from __future__ import annotations

from aiohttp import web

from pockestrator import __version__
from pockestrator.api.formatting import go_duration
from pockestrator.api.hostcheck import check_host
from pockestrator.api.models.system import (
    ConfigView,
    HealthChecks,
    HealthReport,
    Liveness,
    ReleaseList,
    RequiredTools,
    SystemChecks,
    SystemInfo,
    SystemValidation,
)
from pockestrator.api.openapi import DOCUMENT_VERSION
from pockestrator.api.routing import Operation, agent_of, answer
from pockestrator.api.views import issue_view
from pockestrator.clock import utc_now
from pockestrator.specs.validation import ReleaseIndexUnavailable, latest_stable

OPENAPI = web.AppKey("openapi", dict)


async def system_info(request: web.Request) -> web.StreamResponse:
    agent = agent_of(request)
    config = agent.config
    uptime = max(0.0, (utc_now() - agent.started_at).total_seconds())
    return answer(
        SystemInfo(
            version=__version__,
            api_version=DOCUMENT_VERSION,
            uptime=go_duration(uptime),
            uptime_seconds=round(uptime, 3),
            started_at=agent.started_at,
            config=ConfigView(
                base_dir=str(config.base_dir),
                systemd_dir=str(config.systemd_dir),
                caddy_config=str(config.caddy_config),
                default_domain=config.default_domain,
                caddy_sites_dir=str(config.caddy_sites_dir),
                spec_dir=str(config.spec_dir),
                systemd_manager=config.systemd_manager,
                release_source=config.release_source,
                listen=f"{config.listen_host}:{config.listen_port}",
            ),
            services=len(agent.store.service_names()),
            queue_depth=agent.queue_depth(),
            public_port=agent.host.public_port(),
        )
    )


async def releases(request: web.Request) -> web.StreamResponse:
    """What the version field of a new service can offer (cached by the index's TTL)."""
    agent = agent_of(request)
    error: str | None = None
    try:
        versions = list(await agent.host.versions())
    except ReleaseIndexUnavailable as exc:
        versions, error = [], str(exc)
    return answer(
        ReleaseList(
            versions=versions,
            latest=latest_stable(versions),
            source=agent.config.release_source,
            available=error is None,
            error=error,
        )
    )


async def system_health(request: web.Request) -> web.StreamResponse:
    report = await check_host(agent_of(request))
    body = HealthReport(
        healthy=report.healthy,
        checks=HealthChecks(
            systemd=report.dbus and report.systemd_dir_writable,
            caddy=report.caddy_binary and report.caddy_running and report.caddy_sites_dir_writable,
            permissions=report.permissions,
            dbus=report.dbus,
            systemd_dir_writable=report.systemd_dir_writable,
            base_dir_writable=report.base_dir_writable,
            caddy_sites_dir_writable=report.caddy_sites_dir_writable,
            caddyfile_writable=report.caddyfile_writable,
            database_writable=report.database_writable,
            caddy_binary=report.caddy_binary,
            caddy_running=report.caddy_running,
            journalctl=report.tools.get("journalctl", False),
        ),
        errors=[issue_view(p) for p in report.errors],
        warnings=[issue_view(p) for p in report.warnings],
    )
    return answer(body, 200 if report.healthy else 503)


async def validate_system(request: web.Request) -> web.StreamResponse:
    report = await check_host(agent_of(request))
    return answer(
        SystemValidation(
            is_valid=report.healthy,
            errors=[issue_view(p) for p in report.errors],
            warnings=[issue_view(p) for p in report.warnings],
            checks=SystemChecks(
                systemd_available=report.dbus,
                systemd_writable=report.systemd_dir_writable,
                caddy_available=report.caddy_binary,
                caddy_writable=report.caddy_sites_dir_writable and report.caddyfile_writable,
                base_directory_writable=report.base_dir_writable,
                caddy_running=report.caddy_running,
                required_tools=RequiredTools(
                    systemctl=report.tools.get("systemctl", False),
                    journalctl=report.tools.get("journalctl", False),
                    caddy=report.tools.get("caddy", False),
                ),
            ),
        )
    )


async def liveness(request: web.Request) -> web.StreamResponse:
    """The event loop answers; nothing about the host, version or services."""
    return answer(Liveness())


async def openapi_document(request: web.Request) -> web.StreamResponse:
    return web.json_response(request.app[OPENAPI])


OPERATIONS = [
    Operation(
        "GET",
        "/system/info",
        system_info,
        "getSystemInfo",
        "Version, uptime and configuration of the agent",
        {200: SystemInfo},
        "system",
    ),
    Operation(
        "GET",
        "/releases",
        releases,
        "listReleases",
        "PocketBase versions that can be deployed, newest first, and the latest",
        {200: ReleaseList},
        "system",
        description="From the configured release index (cached for release_index_ttl), "
        "merged with the versions in the local cache; when the index cannot be read, "
        "available is false and versions lists the cache.",
    ),
    Operation(
        "GET",
        "/system/health",
        system_health,
        "getSystemHealth",
        "Host health: 200 when healthy, 503 with the reasons when not",
        {200: HealthReport, 503: HealthReport},
        "system",
        description="Checked for real: systemd answers over D-Bus, the unit, service, site and"
        " database directories accept a new file, the Caddy binary is there and Caddy runs.",
    ),
    Operation(
        "GET",
        "/validate/system",
        validate_system,
        "validateSystem",
        "System prerequisites and permissions",
        {200: SystemValidation},
        "validation",
    ),
    Operation(
        "GET",
        "/healthz",
        liveness,
        "liveness",
        "Liveness probe (no authentication; reveals nothing)",
        {200: Liveness},
        "system",
        public=True,
    ),
]
