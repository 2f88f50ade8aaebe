"""Is this host fit to run services: the host view's facts judged with the reference's codes.

``/system/health`` and ``/validate/system`` both read one ``HostReport``. The facts are
checked for real by the agent (``api.context.HostView.facts``: a file created in each folder,
systemd asked over D-Bus, Caddy asked whether it runs); this module only says what they
mean, with the reference's codes (``SYSTEMD_DIR_NOT_WRITABLE``, ``MISSING_CADDY``,
``CADDYFILE_NOT_WRITABLE``, ``BASE_DIR_NOT_WRITABLE``) plus a few of ours for what the
reference does not name.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pockestrator.api.context import AgentContext, HostFacts
from pockestrator.api.errors import Problem
from pockestrator.config import AgentConfig
from pockestrator.specs.errors import ErrorCode


@dataclass
class HostReport:
    dbus: bool = False
    systemd_version: str | None = None
    systemd_dir_writable: bool = False
    base_dir_writable: bool = False
    caddy_sites_dir_writable: bool = False
    caddyfile_writable: bool = False
    database_writable: bool = False
    caddy_binary: bool = False
    caddy_running: bool = False
    tools: dict[str, bool] = field(default_factory=dict)
    errors: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return not self.errors

    @property
    def permissions(self) -> bool:
        return (
            self.systemd_dir_writable
            and self.base_dir_writable
            and self.caddy_sites_dir_writable
            and self.database_writable
        )


async def check_host(agent: AgentContext) -> HostReport:
    """Every check, run now."""
    return judge(await agent.host.facts(), agent.config)


def judge(facts: HostFacts, config: AgentConfig) -> HostReport:
    """The report of ``facts``: what is an error (nothing can be deployed), what a warning."""
    files = facts.directory_problems
    report = HostReport(
        dbus=facts.systemd_version is not None,
        systemd_version=facts.systemd_version,
        systemd_dir_writable=files["systemd_dir"] is None,
        base_dir_writable=files["base_dir"] is None,
        caddy_sites_dir_writable=files["caddy_sites_dir"] is None,
        caddyfile_writable=facts.caddyfile_problem is None,
        database_writable=files["database"] is None,
        caddy_binary=facts.caddy_binary,
        caddy_running=facts.caddy_running,
        tools=dict(facts.tools),
    )
    if facts.systemd_problem:
        report.errors.append(
            Problem("system", facts.systemd_problem, ErrorCode.SYSTEMD_UNAVAILABLE)
        )
    for key, code in (
        ("systemd_dir", ErrorCode.SYSTEMD_DIR_NOT_WRITABLE),
        ("base_dir", ErrorCode.BASE_DIR_NOT_WRITABLE),
        ("caddy_sites_dir", ErrorCode.CADDY_SITES_DIR_NOT_WRITABLE),
        ("database", ErrorCode.DATABASE_NOT_WRITABLE),
    ):
        reason = files[key]
        if reason:
            report.errors.append(Problem("system", reason, code))
    if facts.database_full:
        report.database_writable = False
        report.errors.append(
            Problem(
                "system",
                f"{config.database.parent} is full: the agent cannot record specs, status or "
                "events (API writes answer 507); free space there, nothing else is needed",
                ErrorCode.DATABASE_FULL,
            )
        )
    if not report.caddy_binary:
        report.warnings.append(
            Problem(
                "system",
                f"Caddy is not installed or not in PATH ({config.caddy_binary})",
                ErrorCode.MISSING_CADDY,
            )
        )
    if facts.caddyfile_problem:
        report.warnings.append(
            Problem(
                "system",
                f"Cannot write to Caddyfile: {facts.caddyfile_problem}",
                ErrorCode.CADDYFILE_NOT_WRITABLE,
            )
        )
    if not facts.caddy_running:
        where = config.caddy_admin_url if config.caddy_reload == "admin" else config.caddy_unit
        report.errors.append(
            Problem("system", f"Caddy is not running ({where})", ErrorCode.CADDY_NOT_RUNNING)
        )
    if facts.caddy_admin_exposed is not None:
        report.warnings.append(
            Problem(
                "system",
                f"Caddy's admin API listens on {facts.caddy_admin_exposed}, which every "
                "instance can reach to replace Caddy's whole configuration; put it on a "
                'root-only socket: admin "unix//run/caddy/admin.sock|0600" in the global '
                "options of the Caddyfile",
                ErrorCode.CADDY_ADMIN_EXPOSED,
            )
        )
    if not report.tools.get("journalctl", False):
        report.warnings.append(
            Problem(
                "system",
                "journalctl is not installed; instance logs are unavailable",
                ErrorCode.MISSING_JOURNALCTL,
            )
        )
    return report
