"""The unit file of a PocketBase service, rendered from its spec: pure and deterministic.

``render_unit`` follows PocketBase's production guidance (``serve
--http=127.0.0.1:<port> --dir=<dir>/pb_data``, ``Restart=always``) and runs the instance in
its own box (``sandbox``): a dynamic user of its own, its folder a state directory only that
user can enter, and the hardening PocketBase tolerates. It runs the release cache's binary
itself (root-owned, read-only to every instance). The environment does not appear in the
unit text, which every local user can read: it goes to a root-only file
(``render_environment``, ``EnvironmentFile=``) whose hash the unit carries, so a change of
the environment is a change of the unit.

The unit marks itself as ours (``X-Pockestrator-Managed=yes`` and a header comment; systemd
ignores ``X-`` keys) and carries the hash of its own body (``unit_body_hash``), so drift is
visible in the file itself. Every value that reaches the file is checked again here (a spec
built with ``model_construct`` skips validation), so no spec can add a line, a specifier or
a second argument to it.

Neighbours: ``units`` writes what this renders and observes the result; ``sandbox`` is the
box; ``bus`` speaks to systemd.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pockestrator.apparchive import is_release_id
from pockestrator.config import RENDERABLE_PATH, AgentConfig
from pockestrator.controllers.service_layout import BINARY_NAME, DATA_DIR, RELEASES_DIR
from pockestrator.controllers.systemd.sandbox import (
    Directive,
    sandbox,
    scratch_sandbox,
    state_directory,
)
from pockestrator.files import sha256_text
from pockestrator.specs.grammar import (
    GrammarError,
    check_cpu_quota,
    check_env_name,
    check_env_value,
    check_project_name,
    check_version,
    memory_limit_bytes,
)
from pockestrator.specs.model import ServiceSpec

MARKER = "X-Pockestrator-Managed=yes"
HASH_KEY = "X-Pockestrator-Hash="
VERSION_KEY = "X-Pockestrator-Version="
# systemd stops restarting an instance after this many starts in a minute: a crash loop
# (agent.plan.gave_up reads it back from NRestarts).
START_LIMIT_BURST = 5
ENVIRONMENT_KEY = "X-Pockestrator-Environment="
# What systemd's parser unescapes inside a double-quoted value of an environment file.
_ENV_ESCAPED = frozenset('\\"`$')

# Paths that reach a unit file: no whitespace, quotes, '%' (specifiers) or control chars.
_SAFE_SOURCE = re.compile(r"[A-Za-z0-9._-]{1,128}", re.ASCII)


class UnsafeValue(ValueError):
    """A value would change the structure of a unit file; nothing is rendered."""


@dataclass(frozen=True)
class UnitSettings:
    """Host-wide choices that shape every unit (from ``AgentConfig``)."""

    base_dir: Path
    state_root: Path
    release_dir: Path
    environment_dir: Path
    wanted_by: str
    hardening_disabled: frozenset[str] = frozenset()

    @classmethod
    def from_config(cls, config: AgentConfig) -> UnitSettings:
        return cls(
            base_dir=config.base_dir,
            state_root=config.state_directory_root,
            release_dir=config.release_cache_dir,
            environment_dir=config.environment_path,
            wanted_by="multi-user.target"
            if config.systemd_manager == "system"
            else "default.target",
            hardening_disabled=frozenset(config.hardening_disabled),
        )

    def service_dir(self, name: str) -> Path:
        """Where the instance sees its folder (systemd links it to the private copy)."""
        return self.base_dir / check_project_name(name)

    def state_directories(self, spec: ServiceSpec) -> list[str]:
        """``StateDirectory=``: the service's folder and its optional app folders."""
        folder = state_directory(self.base_dir, self.state_root, spec.project_name)
        return [folder, *(f"{folder}/{extra}" for extra in spec.extra_dirs)]

    def box(self, spec: ServiceSpec) -> tuple[Directive, ...]:
        """Everything ``spec``'s processes run under: its identity, hardening and egress."""
        return sandbox(
            spec.project_name,
            self.state_directories(spec),
            self.hardening_disabled,
            spec.egress,
        )

    def scratch_box(self, token: str) -> tuple[str, tuple[Directive, ...]]:
        """A throwaway folder's ``StateDirectory=`` (``<base_dir>/.scratch-<token>``) and
        the box it is used in (``sandbox.scratch_sandbox``)."""
        relative = str(self.base_dir.relative_to(self.state_root) / f".scratch-{token}")
        return relative, scratch_sandbox(token, relative, self.hardening_disabled)

    def environment_file(self, name: str) -> Path:
        return self.environment_dir / f"{check_project_name(name)}.env"

    def binary(self, version: str) -> Path:
        return self.release_dir / check_version(version) / BINARY_NAME


def _safe_path(path: Path) -> str:
    text = str(path)
    if not RENDERABLE_PATH.fullmatch(text) or "/../" in f"{text}/" or "/./" in f"{text}/":
        raise UnsafeValue(f"path {text!r} cannot be written into a unit file")
    return text


def render_environment(spec: ServiceSpec) -> str | None:
    """The instance's ``EnvironmentFile=``: every variable, quoted; None when it has none.

    Names and values pass their grammar again (no control character, no line break can
    reach the file). Values are double-quoted with ``\\``, ``"``, `` ` `` and ``$``
    escaped, the characters systemd's parser unescapes there, so the instance gets exactly
    the text of the spec; systemd expands no specifier in an environment file.
    """
    variables = {**spec.env, **spec.secret_env}
    if not variables:
        return None
    lines = ["# Written by Pockestrator; the unit carries this file's hash."]
    for key in sorted(variables):
        lines.append(f"{check_env_name(key)}={quote_environment_value(variables[key])}")
    return "\n".join(lines) + "\n"


def quote_environment_value(value: str) -> str:
    """A value as an environment file takes it: double-quoted, its specials escaped."""
    escaped = "".join(
        "\\" + char if char in _ENV_ESCAPED else char for char in check_env_value(value)
    )
    return f'"{escaped}"'


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


FLAG_FOR_DIR = {
    "pb_hooks": "--hooksDir",
    "pb_migrations": "--migrationsDir",
    "pb_public": "--publicDir",
}


def app_arguments(folder: str, *, watch: bool = False) -> list[str]:
    """PocketBase's three app flags at a release's ``folder``, its hooks not watched:
    a deployed release changes only by a deploy, and with watching off a hook that does
    not load stops PocketBase instead of being skipped with a line in the log. ``watch``
    is the dev mode a spec asks for with ``flags.hooks_watch: true``."""
    return [f"{flag}={folder}/{extra}" for extra, flag in FLAG_FOR_DIR.items()] + [
        f"--hooksWatch={'true' if watch else 'false'}"
    ]


def render_unit(
    spec: ServiceSpec, settings: UnitSettings, owner: str = "api", release: str | None = None
) -> str:
    """The unit file text for ``spec``: deterministic, boxed, marked and self-hashed.

    With ``release`` (the live app release's id) PocketBase's app folders are that
    release's (``<dir>/.releases/<id>``) instead of the spec's ``extra_dirs``.
    """
    name = check_project_name(spec.project_name)
    directory = _safe_path(settings.service_dir(name))
    arguments = [
        _safe_path(settings.binary(spec.pocketbase_version)),
        "serve",
        f"--http=127.0.0.1:{_port(spec.port)}",
        f"--dir={directory}/{DATA_DIR}",
    ]
    flags = spec.flags.as_arguments()
    if release is None:
        arguments += [f"{FLAG_FOR_DIR[extra]}={directory}/{extra}" for extra in spec.extra_dirs]
    else:
        if not is_release_id(release):
            raise UnsafeValue(f"release {release[:40]!r} cannot be written into a unit file")
        watch = spec.flags.hooks_watch is True
        arguments += app_arguments(f"{directory}/{RELEASES_DIR}/{release}", watch=watch)
        flags = [flag for flag in flags if not flag.startswith("--hooksWatch=")]
    arguments += flags
    for argument in arguments:
        if any(c.isspace() or c in "\"'\\%;" for c in argument):
            raise UnsafeValue(f"argument {argument!r} cannot be written into a unit file")
    source = describe_source(owner)
    environment = render_environment(spec)

    unit = [
        f"# Managed by Pockestrator for service '{name}' (source: {source}).",
        "# Hand edits are detected and overwritten; change the service's spec instead.",
        "[Unit]",
        f"Description=PocketBase {name}",
        "Documentation=https://pocketbase.io/docs/going-to-production/",
        "After=network-online.target",
        "Wants=network-online.target",
        "StartLimitIntervalSec=60",
        f"StartLimitBurst={START_LIMIT_BURST}",
        MARKER,
        f"X-Pockestrator-Service={name}",
        f"{VERSION_KEY}{spec.pocketbase_version}",
        f"X-Pockestrator-Source={source}",
    ]
    if environment is not None:
        unit.append(f"{ENVIRONMENT_KEY}{sha256_text(environment)}")
    unit += [
        "",
        "[Service]",
        "Type=simple",
        f"ExecStart={' '.join(arguments)}",
        f"WorkingDirectory={directory}",
        f"SyslogIdentifier={name}-pocketbase",
        "Restart=always",
        "RestartSec=2s",
        "TimeoutStopSec=20s",
        "LimitNOFILE=4096",
    ]
    if environment is not None:
        unit.append(f"EnvironmentFile={_safe_path(settings.environment_file(name))}")
    if spec.resources.memory_max:
        unit.append(f"MemoryMax={_checked(check_memory_limit, spec.resources.memory_max)}")
    if spec.resources.cpu_quota:
        unit.append(f"CPUQuota={_checked(check_cpu_quota, spec.resources.cpu_quota)}")
    unit += [directive.line for directive in settings.box(spec)]
    unit += ["", "[Install]", f"WantedBy={settings.wanted_by}", ""]
    body = "\n".join(unit)
    digest = sha256_text(body)
    return body.replace(MARKER + "\n", f"{MARKER}\n{HASH_KEY}{digest}\n", 1)


def _port(port: object) -> int:
    if isinstance(port, bool) or not isinstance(port, int) or not 1024 <= port <= 65535:
        raise UnsafeValue(f"port {port!r} cannot be written into a unit file")
    return port


def check_memory_limit(value: str) -> str:
    memory_limit_bytes(value)
    return value


def _checked(check: Callable[[str], object], value: str) -> str:
    """``value`` once its grammar accepts it (a spec may have skipped validation)."""
    try:
        check(value)
    except GrammarError as exc:
        raise UnsafeValue(f"{value!r} cannot be written into a unit file: {exc.message}") from None
    return value


def is_managed(text: str) -> bool:
    return any(line.strip() == MARKER for line in text.splitlines())


def unit_version(text: str) -> str | None:
    """The PocketBase version a unit file says it runs (``X-Pockestrator-Version=``)."""
    for line in text.splitlines():
        if line.startswith(VERSION_KEY):
            return line[len(VERSION_KEY) :].strip() or None
    return None


def unit_environment_hash(text: str) -> str | None:
    """The hash of the environment file a unit file was rendered with (None: it has none)."""
    for line in text.splitlines():
        if line.startswith(ENVIRONMENT_KEY):
            return line[len(ENVIRONMENT_KEY) :].strip() or None
    return None
