"""Checks of a spec against the world: other services, the host's ports, the release index.

``parse_spec`` (in ``specs.model``) answers "is this a well-formed spec"; this module
answers "can it be deployed here, now": the name, port and domain are not taken by another
service, the port is not the agent's own and nothing on the host listens on it, the
version exists (with a warning when it is not the latest), and it is no downgrade that
cannot be done (``downgrade_issue``). Which claims other services
hold is the store's to say (``Store.claims_taken``, the one place uniqueness is decided);
this module folds its answer into the report next to the host's and the index's. The
release index is a protocol so that ``specs`` does not depend on ``controllers``.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from pockestrator.specs.errors import ErrorCode, FieldIssue
from pockestrator.specs.grammar import LOCAL_TARGET, GrammarError, is_prerelease, version_key
from pockestrator.specs.model import ServiceSpec


class ReleaseIndexUnavailable(Exception):
    """The release index could not be reached and nothing is cached."""


class ReleaseIndex(Protocol):
    """Which PocketBase versions exist, and which is the latest (implemented by controllers)."""

    async def versions(self) -> Sequence[str]: ...


def latest_stable(versions: Iterable[str]) -> str | None:
    """The highest version that is not a pre-release (compared as versions)."""
    stable = [version for version in versions if not is_prerelease(version)]
    return max(stable, key=version_key) if stable else None


@dataclass
class ValidationReport:
    """The reference API's validation answer: errors, warnings and named checks."""

    errors: list[FieldIssue] = field(default_factory=list)
    warnings: list[FieldIssue] = field(default_factory=list)
    checks: dict[str, bool] = field(default_factory=dict)

    @property
    def valid(self) -> bool:
        return not self.errors


def port_is_bound(port: int, host: str = "127.0.0.1") -> bool:
    """True when some process on this host listens on ``port`` (a real bind attempt)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # SO_REUSEADDR: a port in TIME_WAIT is free for a listener; only a listener blocks.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return True
            raise
    return False


def validate_port_on_host(spec: ServiceSpec, agent_port: int | None) -> FieldIssue | None:
    """The port problem of a new or moved service, from the host's point of view."""
    if agent_port is not None and spec.port == agent_port:
        return FieldIssue(
            "port", f"Port {spec.port} is the agent's own API port", ErrorCode.PORT_RESERVED
        )
    if port_is_bound(spec.port):
        return FieldIssue(
            "port",
            f"Port {spec.port} is already in use by another process on this host",
            ErrorCode.PORT_IN_USE,
        )
    return None


def downgrade_issue(
    spec: ServiceSpec, deployed: str | None, backups: Mapping[str, datetime]
) -> FieldIssue | None:
    """``VERSION_DOWNGRADE`` when ``spec`` asks for a version below the ``deployed`` one
    and may not have it: without ``allow_downgrade``, or without a backup of that version's
    data to restore (``backups``: version -> when its newest backup was taken).

    PocketBase's migrations only go forward, so older code on data a newer version has
    migrated can break it; a downgrade goes back to the data as it was before the upgrade.
    The reconciler states the same refusal in the service's status.
    """
    wanted = spec.pocketbase_version
    try:
        lower = deployed is not None and version_key(wanted) < version_key(deployed)
    except GrammarError:
        return None
    if not lower:
        return None
    taken = backups.get(wanted)
    if taken is None:
        return FieldIssue(
            "pocketbase_version",
            f"Version {wanted} is lower than the deployed {deployed}, and no backup of the "
            f"data {wanted} ran on exists: running {wanted} on data {deployed} has migrated "
            "could break it",
            ErrorCode.VERSION_DOWNGRADE,
        )
    if not spec.allow_downgrade:
        return FieldIssue(
            "pocketbase_version",
            f"Version {wanted} is lower than the deployed {deployed} (PocketBase's "
            f"migrations only go forward); set allow_downgrade to restore the backup taken "
            f"before the upgrade from {wanted} ({taken:%Y-%m-%d %H:%M:%S} UTC): the data "
            "written since is set aside, not deleted",
            ErrorCode.VERSION_DOWNGRADE,
        )
    return None


async def validate_in_context(
    spec: ServiceSpec,
    *,
    taken: Sequence[FieldIssue],
    agent_port: int | None,
    release_index: ReleaseIndex | None,
    own_port: int | None = None,
    check_host_port: bool = True,
    backup_targets: Collection[str] | None = None,
) -> ValidationReport:
    """Errors and warnings for deploying ``spec``, given the claims other services hold.

    ``taken`` is the store's list of those claims (``Store.claims_taken``), reported as
    they are, except that the agent's own port outranks another service's (one port
    problem, ``PORT_RESERVED``). ``own_port`` is the port of the service this spec
    replaces: its own instance listens there, so keeping it is not probed on the host.
    ``backup_targets`` are the agent's off-site targets, which the policy may name.
    """
    report = ValidationReport()
    held = {issue.field: issue for issue in taken}

    port_issue = held.get("port")
    if agent_port is not None and spec.port == agent_port:
        port_issue = validate_port_on_host(spec, agent_port)  # PORT_RESERVED, no probe
    elif port_issue is None and check_host_port and spec.port != own_port:
        port_issue = validate_port_on_host(spec, None)
    for issue in (held.get("project_name"), port_issue, held.get("domain")):
        if issue is not None:
            report.errors.append(issue)
    report.errors += [issue for issue in taken if issue.field.startswith("proxy.aliases.")]

    report.checks.update(
        project_name_available="project_name" not in held,
        port_available=port_issue is None,
        domain_valid=True,
    )
    report.checks["version_exists"] = await _check_version(spec, release_index, report)
    if backup_targets is not None:
        report.errors += unknown_targets(spec, backup_targets)
    return report


def unknown_targets(spec: ServiceSpec, known: Collection[str]) -> list[FieldIssue]:
    """The policy's targets that are neither "local" nor one of the agent's."""
    if spec.backups is None:
        return []
    offered = ", ".join(sorted([LOCAL_TARGET, *known]))
    replication = spec.backups.replication
    unknown_replica = (
        [
            FieldIssue(
                "backups.replication.target",
                f"No backup target {replication.target!r} on this agent to replicate to "
                f"(its backup_targets: {', '.join(sorted(known)) or 'none'})",
                ErrorCode.UNKNOWN_TARGET,
            )
        ]
        if replication is not None and replication.target not in known
        else []
    )
    return unknown_replica + [
        FieldIssue(
            f"backups.targets.{index}",
            f"No backup target {name!r} on this agent (its backup_targets: {offered})",
            ErrorCode.UNKNOWN_TARGET,
        )
        for index, name in enumerate(spec.backups.targets)
        if name != LOCAL_TARGET and name not in known
    ]


async def _check_version(
    spec: ServiceSpec, release_index: ReleaseIndex | None, report: ValidationReport
) -> bool:
    if release_index is None:
        return True
    try:
        versions = list(await release_index.versions())
    except ReleaseIndexUnavailable as exc:
        report.warnings.append(
            FieldIssue(
                "pocketbase_version",
                f"Cannot check the version now: {exc}",
                ErrorCode.VERSION_CHECK_UNAVAILABLE,
            )
        )
        return True
    if spec.pocketbase_version not in versions:
        report.errors.append(
            FieldIssue(
                "pocketbase_version",
                f"Version {spec.pocketbase_version} does not exist",
                ErrorCode.VERSION_NOT_FOUND,
            )
        )
        return False
    latest = latest_stable(versions)
    if latest is not None and version_key(spec.pocketbase_version) < version_key(latest):
        report.warnings.append(
            FieldIssue(
                "pocketbase_version",
                f"Version {spec.pocketbase_version} is not the latest ({latest})",
                ErrorCode.VERSION_NOT_LATEST,
            )
        )
    return True
