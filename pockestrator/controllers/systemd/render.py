"""The unit file of a PocketBase service, rendered from its spec: pure and deterministic.

``render_unit`` follows PocketBase's production guidance (``serve
--http=127.0.0.1:<port> --dir=<dir>/pb_data``, ``Restart=always``) with hardening that
PocketBase tolerates. The unit marks itself as ours (``X-Pockestrator-Managed=yes`` and a
header comment; systemd ignores ``X-`` keys) and carries the hash of its own body
(``unit_body_hash``), so drift is visible in the file itself. Every value that reaches the
file is checked again here (a spec built with ``model_construct`` skips validation), so
no spec can add a line, a specifier or a second argument to it.

Neighbours: ``units`` writes what this renders and observes the result; ``bus`` speaks
to systemd.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from pockestrator.config import RENDERABLE_PATH, AgentConfig
from pockestrator.controllers.files import sha256_text
from pockestrator.controllers.service_layout import BINARY_NAME, DATA_DIR
from pockestrator.specs.grammar import check_project_name
from pockestrator.specs.model import ServiceSpec

MARKER = "X-Pockestrator-Managed=yes"
HASH_KEY = "X-Pockestrator-Hash="
VERSION_KEY = "X-Pockestrator-Version="

# Hardening that PocketBase runs under. Some of these fail inside a private user manager
# without its own user namespace (see config.SANDBOX_UNSUPPORTED_HARDENING); the agent's
# `hardening_disabled` setting leaves those out there.
HARDENING: tuple[tuple[str, str], ...] = (
    ("NoNewPrivileges", "yes"),
    ("PrivateTmp", "yes"),
    ("PrivateDevices", "yes"),
    ("ProtectSystem", "strict"),
    ("ProtectHome", "yes"),
    ("ProtectKernelTunables", "yes"),
    ("ProtectKernelModules", "yes"),
    ("ProtectKernelLogs", "yes"),
    ("ProtectControlGroups", "yes"),
    ("ProtectClock", "yes"),
    ("ProtectHostname", "yes"),
    ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
    ("RestrictNamespaces", "yes"),
    ("RestrictRealtime", "yes"),
    ("RestrictSUIDSGID", "yes"),
    ("LockPersonality", "yes"),
    ("MemoryDenyWriteExecute", "yes"),
    ("SystemCallFilter", "@system-service"),
    ("SystemCallArchitectures", "native"),
    ("CapabilityBoundingSet", ""),
)
HARDENING_NAMES = frozenset(name for name, _value in HARDENING)

# Paths that reach a unit file: no whitespace, quotes, '%' (specifiers) or control chars.
_SAFE_SOURCE = re.compile(r"[A-Za-z0-9._-]{1,128}", re.ASCII)


class UnsafeValue(ValueError):
    """A value would change the structure of a unit file; nothing is rendered."""


@dataclass(frozen=True)
class UnitSettings:
    """Host-wide choices that shape every unit (from ``AgentConfig``)."""

    base_dir: Path
    user: str
    group: str | None
    wanted_by: str
    hardening_disabled: frozenset[str] = frozenset()

    @classmethod
    def from_config(cls, config: AgentConfig) -> UnitSettings:
        return cls(
            base_dir=config.base_dir,
            user=config.instance_user,
            group=config.instance_group,
            wanted_by="multi-user.target"
            if config.systemd_manager == "system"
            else "default.target",
            hardening_disabled=frozenset(config.hardening_disabled),
        )

    def service_dir(self, name: str) -> Path:
        return self.base_dir / check_project_name(name)


def _safe_path(path: Path) -> str:
    text = str(path)
    if not RENDERABLE_PATH.fullmatch(text) or "/../" in f"{text}/" or "/./" in f"{text}/":
        raise UnsafeValue(f"path {text!r} cannot be written into a unit file")
    return text


def _quote_environment(name: str, value: str) -> str:
    """``Environment="NAME=value"`` with systemd's C-style quoting and '%' escaped."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
    return f'Environment="{name}={escaped}"'


def describe_source(owner: str) -> str:
    """``api`` or ``file:<basename>``; a file name that is not plain is shown as ``file``."""
    if not owner.startswith("file:"):
        return "api"
    base = Path(owner[len("file:") :]).name
    return f"file:{base}" if _SAFE_SOURCE.fullmatch(base) else "file"


def unit_body_hash(text: str) -> str:
    """The hash a unit carries: SHA-256 of its text without the hash line itself."""
    body = "".join(line for line in text.splitlines(keepends=True) if not line.startswith(HASH_KEY))
    return sha256_text(body)


def render_unit(spec: ServiceSpec, settings: UnitSettings, owner: str = "api") -> str:
    """The unit file text for ``spec``: deterministic, hardened, marked and self-hashed."""
    name = check_project_name(spec.project_name)
    service_dir = settings.service_dir(name)
    directory = _safe_path(service_dir)
    arguments = [
        f"{directory}/{BINARY_NAME}",
        "serve",
        f"--http=127.0.0.1:{int(spec.port)}",
        f"--dir={directory}/{DATA_DIR}",
    ]
    flag_for_dir = {
        "pb_hooks": "--hooksDir",
        "pb_migrations": "--migrationsDir",
        "pb_public": "--publicDir",
    }
    arguments += [f"{flag_for_dir[extra]}={directory}/{extra}" for extra in spec.extra_dirs]
    arguments += spec.flags.as_arguments()
    for argument in arguments:
        if any(c.isspace() or c in "\"'\\%;" for c in argument):
            raise UnsafeValue(f"argument {argument!r} cannot be written into a unit file")
    source = describe_source(owner)

    unit = [
        f"# Managed by Pockestrator for service '{name}' (source: {source}).",
        "# Hand edits are detected and overwritten; change the service's spec instead.",
        "[Unit]",
        f"Description=PocketBase {name}",
        "Documentation=https://pocketbase.io/docs/going-to-production/",
        "After=network-online.target",
        "Wants=network-online.target",
        "StartLimitIntervalSec=60",
        "StartLimitBurst=5",
        MARKER,
        f"X-Pockestrator-Service={name}",
        f"{VERSION_KEY}{spec.pocketbase_version}",
        f"X-Pockestrator-Source={source}",
        "",
        "[Service]",
        "Type=simple",
        f"User={settings.user}",
    ]
    if settings.group:
        unit.append(f"Group={settings.group}")
    unit += [
        f"WorkingDirectory={directory}",
        f"ExecStart={' '.join(arguments)}",
        f"SyslogIdentifier={name}-pocketbase",
        "Restart=always",
        "RestartSec=2s",
        "TimeoutStopSec=20s",
        "LimitNOFILE=4096",
    ]
    unit += [_quote_environment(key, spec.env[key]) for key in sorted(spec.env)]
    if spec.resources.memory_max:
        unit.append(f"MemoryMax={spec.resources.memory_max}")
    if spec.resources.cpu_quota:
        unit.append(f"CPUQuota={spec.resources.cpu_quota}")
    for directive, value in HARDENING:
        if directive in settings.hardening_disabled:
            continue
        unit.append(f"{directive}={value}")
        if directive == "ProtectSystem":
            unit.append(f"ReadWritePaths={directory}")
    unit += ["", "[Install]", f"WantedBy={settings.wanted_by}", ""]
    body = "\n".join(unit)
    digest = sha256_text(body)
    return body.replace(MARKER + "\n", f"{MARKER}\n{HASH_KEY}{digest}\n", 1)


def is_managed(text: str) -> bool:
    return any(line.strip() == MARKER for line in text.splitlines())


def unit_version(text: str) -> str | None:
    """The PocketBase version a unit file says it runs (``X-Pockestrator-Version=``)."""
    for line in text.splitlines():
        if line.startswith(VERSION_KEY):
            return line[len(VERSION_KEY) :].strip() or None
    return None
