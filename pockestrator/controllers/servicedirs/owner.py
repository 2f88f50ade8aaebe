"""The account instances run as: ``InstanceOwner``, resolved from the configured names.

Resolved on each use (``ServiceDirs.owner``), not at start-up, so that a user created
after the agent started is picked up; a missing user or group is a ``ServiceDirError``.
"""

from __future__ import annotations

import grp
import pwd
from dataclasses import dataclass

from pockestrator.controllers.servicedirs.errors import ServiceDirError


@dataclass(frozen=True)
class InstanceOwner:
    """The account instances run as, resolved from the configured names."""

    user: str
    group: str
    uid: int
    gid: int


def resolve_instance_owner(user: str, group: str | None = None) -> InstanceOwner:
    """uid/gid of ``user`` and ``group`` (default: the user's primary group)."""
    try:
        account = pwd.getpwnam(user)
    except KeyError:
        raise ServiceDirError(f"instance user '{user}' does not exist on this host") from None
    if group is None:
        gid = account.pw_gid
        try:
            group = grp.getgrgid(gid).gr_name
        except KeyError:
            group = str(gid)
    else:
        try:
            gid = grp.getgrnam(group).gr_gid
        except KeyError:
            raise ServiceDirError(f"instance group '{group}' does not exist on this host") from None
    return InstanceOwner(user, group, account.pw_uid, gid)
