"""Is this host fit to run services: checked for real, not inferred from configuration.

Writability is proven by creating (and removing) a file in each directory the agent writes,
which also catches read-only mounts and ``ProtectSystem=`` on the agent's own unit, where
``os.access`` answers yes to root. systemd is asked over D-Bus for its version; Caddy's
binary is looked up as the agent runs it, and its unit (or admin API) asked whether it runs.

``/system/health`` and ``/validate/system`` both read one ``HostReport``; the codes are the
reference's (``SYSTEMD_DIR_NOT_WRITABLE``, ``MISSING_CADDY``, ``CADDYFILE_NOT_WRITABLE``,
``BASE_DIR_NOT_WRITABLE``) plus a few of ours for what the reference does not name.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from pockestrator.api.context import AgentContext
from pockestrator.api.errors import Problem
from pockestrator.controllers.systemd_bus import (
    MANAGER_INTERFACE,
    MANAGER_PATH,
    PROPERTIES_INTERFACE,
)
from pockestrator.specs.errors import ErrorCode

CHECK_TIMEOUT = 5.0


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


def _existing_ancestor(path: Path) -> Path:
    current = path
    while not current.exists() and current != current.parent:
        current = current.parent
    return current


def probe_directory(path: Path) -> str | None:
    """None when a file can be created in ``path`` (or where it would be created)."""
    target = path if path.is_dir() else _existing_ancestor(path)
    if not target.is_dir():
        return f"{target} is not a directory"
    try:
        handle, name = tempfile.mkstemp(prefix=".pockestrator-probe-", dir=target)
    except OSError as exc:
        return f"cannot write to {target}: {exc.strerror or exc}"
    os.close(handle)
    os.unlink(name)
    return None


def probe_file(path: Path) -> str | None:
    """None when ``path`` exists and opens for writing (nothing is written)."""
    if not path.is_file():
        return f"{path} does not exist"
    try:
        with path.open("ab"):
            pass
    except OSError as exc:
        return f"cannot write to {path}: {exc.strerror or exc}"
    return None


def find_executable(name: str) -> bool:
    """An absolute (or relative) path must be an executable file; a bare name is on PATH."""
    if "/" in name:
        candidate = Path(name)
        return candidate.is_file() and os.access(candidate, os.X_OK)
    return shutil.which(name) is not None


def _files_report(agent: AgentContext) -> dict[str, str | None]:
    config = agent.config
    return {
        "systemd_dir": probe_directory(config.systemd_dir),
        "base_dir": probe_directory(config.base_dir),
        "caddy_sites_dir": probe_directory(config.caddy_sites_dir),
        "caddyfile": probe_file(config.caddy_config),
        "database": probe_directory(config.database.parent),
    }


async def _systemd_version(agent: AgentContext) -> tuple[str | None, str | None]:
    """(version, None) when systemd answers over D-Bus, else (None, why not)."""
    if not agent.bus.connected:
        return None, "the D-Bus connection to systemd is closed"
    try:
        reply = await asyncio.wait_for(
            agent.bus.call(
                "Get",
                "ss",
                [MANAGER_INTERFACE, "Version"],
                path=MANAGER_PATH,
                interface=PROPERTIES_INTERFACE,
            ),
            CHECK_TIMEOUT,
        )
    except Exception as exc:  # any failure means "not reachable"; the text says why
        return None, f"systemd does not answer over D-Bus: {exc}"
    value = getattr(reply[0], "value", reply[0]) if reply else None
    return str(value) if value is not None else "unknown", None


async def _caddy_running(agent: AgentContext) -> bool:
    try:
        return await asyncio.wait_for(agent.sites.caddy_running(), CHECK_TIMEOUT)
    except Exception:  # not running, not reachable or timed out all mean "no"
        return False


async def check_host(agent: AgentContext) -> HostReport:
    """Every check, run now."""
    config = agent.config
    files_task = asyncio.create_task(asyncio.to_thread(_files_report, agent))
    version, dbus_problem = await _systemd_version(agent)
    caddy_running = await _caddy_running(agent)
    files = await files_task
    report = HostReport(
        dbus=version is not None,
        systemd_version=version,
        systemd_dir_writable=files["systemd_dir"] is None,
        base_dir_writable=files["base_dir"] is None,
        caddy_sites_dir_writable=files["caddy_sites_dir"] is None,
        caddyfile_writable=files["caddyfile"] is None,
        database_writable=files["database"] is None,
        caddy_binary=find_executable(config.caddy_binary),
        caddy_running=caddy_running,
        tools={
            "systemctl": find_executable("systemctl"),
            "journalctl": find_executable("journalctl"),
            "caddy": find_executable(config.caddy_binary),
        },
    )
    if dbus_problem:
        report.errors.append(Problem("system", dbus_problem, ErrorCode.SYSTEMD_UNAVAILABLE))
    for key, code in (
        ("systemd_dir", ErrorCode.SYSTEMD_DIR_NOT_WRITABLE),
        ("base_dir", ErrorCode.BASE_DIR_NOT_WRITABLE),
        ("caddy_sites_dir", ErrorCode.CADDY_SITES_DIR_NOT_WRITABLE),
        ("database", ErrorCode.DATABASE_NOT_WRITABLE),
    ):
        reason = files[key]
        if reason:
            report.errors.append(Problem("system", reason, code))
    if not report.caddy_binary:
        report.warnings.append(
            Problem(
                "system",
                f"Caddy is not installed or not in PATH ({config.caddy_binary})",
                ErrorCode.MISSING_CADDY,
            )
        )
    if files["caddyfile"]:
        report.warnings.append(
            Problem(
                "system",
                f"Cannot write to Caddyfile: {files['caddyfile']}",
                ErrorCode.CADDYFILE_NOT_WRITABLE,
            )
        )
    if not caddy_running:
        where = config.caddy_admin_url if config.caddy_reload == "admin" else config.caddy_unit
        report.errors.append(
            Problem("system", f"Caddy is not running ({where})", ErrorCode.CADDY_NOT_RUNNING)
        )
    if not report.tools["journalctl"]:
        report.warnings.append(
            Problem(
                "system",
                "journalctl is not installed; instance logs are unavailable",
                ErrorCode.MISSING_JOURNALCTL,
            )
        )
    return report
