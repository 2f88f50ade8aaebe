"""Which PocketBase version a service runs: the spec's, unless it was rolled back or is a
downgrade that may not be done; what runs now; the newest backup of each version's data.
"""

from __future__ import annotations

from collections.abc import Iterable

from pockestrator.agent.plan.model import Observed
from pockestrator.controllers.servicedirs import DataBackup
from pockestrator.specs.model import ServiceSpec
from pockestrator.specs.store import ServiceStatus
from pockestrator.specs.validation import downgrade_issue


def newest_backups(backups: Iterable[DataBackup]) -> dict[str, DataBackup]:
    """The newest backup of each version's data."""
    newest: dict[str, DataBackup] = {}
    for backup in backups:
        if backup.version not in newest or backup.taken_at > newest[backup.version].taken_at:
            newest[backup.version] = backup
    return newest


def downgrade_refusal(
    spec: ServiceSpec, status: ServiceStatus | None, backups: Iterable[DataBackup] = ()
) -> str | None:
    """Why the spec's version, lower than the deployed one, is not run (``VERSION_DOWNGRADE``:
    no ``allow_downgrade``, or no backup of that version's data); None when it is no
    downgrade or one that can be done."""
    deployed = status.deployed_version if status is not None else None
    taken = {version: backup.taken_at for version, backup in newest_backups(backups).items()}
    issue = downgrade_issue(spec, deployed, taken)
    return None if issue is None else f"{issue.message} [{issue.code}]"


def target_version(
    spec: ServiceSpec, status: ServiceStatus | None, backups: Iterable[DataBackup] = ()
) -> str:
    """The version to run: the spec's, unless that one was rolled back or is a downgrade
    that may not be done (then the deployed one).

    A version that failed its upgrade is not tried again until the spec names another.
    """
    deployed = status.deployed_version if status is not None else None
    if deployed and status is not None and status.failed_version == spec.pocketbase_version:
        return deployed
    if deployed and downgrade_refusal(spec, status, backups) is not None:
        return deployed
    return spec.pocketbase_version


def deployed_version(status: ServiceStatus | None, observed: Observed) -> str | None:
    """What runs now: as last recorded, else as the unit file on disk says."""
    if status is not None and status.deployed_version:
        return status.deployed_version
    return observed.unit.version
