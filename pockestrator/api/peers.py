"""Who is on the other end of the local socket: the peer's credentials, and whether it
may operate the agent without a token.

The agent also serves its API on a Unix socket (``api_socket``), as docker does: the kernel
says which process connected (``SO_PEERCRED``), so a caller there needs no token. Root is an
operator, and so is a member of ``api_socket_group``: the peer's uid is looked up afresh on
every request (its primary group and the supplementary groups ``/etc/group`` gives it now),
so removing someone from the group takes effect at their next request. Everyone else is
refused, whatever the socket file's mode lets through.

A PocketBase instance is hostile (docs/security.md) and must never pass: instances run as
dynamic users, whose uids systemd takes from ``DYNAMIC_UIDS`` and which belong to no group
in ``/etc/group``. A uid in that range is refused before any group is looked at, so that not
even a mistaken group entry lets an instance in.
"""

from __future__ import annotations

import grp
import os
import pwd
import socket
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass

# systemd's range for DynamicUser= (systemd.exec(5), "DynamicUser=").
DYNAMIC_UIDS = range(61184, 65520)
_UCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


@dataclass(frozen=True)
class Peer:
    pid: int
    uid: int
    gid: int


def peer_credentials(sock: socket.socket | None) -> Peer | None:
    """The process at the other end of a connected Unix socket (None on any other)."""
    if sock is None or sock.family != socket.AF_UNIX:
        return None
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    pid, uid, gid = _UCRED.unpack(raw)
    return Peer(pid, uid, gid)


@dataclass(frozen=True)
class Verdict:
    """Whether a peer operates the agent, with its user name (for the log) or the reason."""

    allowed: bool
    name: str
    reason: str = ""


def _groups_of(name: str, gid: int) -> Sequence[int]:
    return os.getgrouplist(name, gid)


def judge_peer(
    uid: int,
    group: str,
    *,
    user_of: Callable[[int], tuple[str, int]] | None = None,
    group_id: Callable[[str], int] | None = None,
    groups_of: Callable[[str, int], Sequence[int]] = _groups_of,
) -> Verdict:
    """Root, or a non-dynamic user whose groups include ``group``; the lookups are the
    system's unless given (the table test gives its own)."""
    if uid == 0:
        return Verdict(True, "root")
    if uid in DYNAMIC_UIDS:
        return Verdict(False, f"uid {uid}", "a dynamic user (a service's) is never an operator")
    lookup_user = user_of or _user_of
    lookup_group = group_id or _group_id
    try:
        name, primary = lookup_user(uid)
    except KeyError:
        return Verdict(False, f"uid {uid}", f"uid {uid} has no account on this host")
    try:
        wanted = lookup_group(group)
    except KeyError:
        return Verdict(False, name, f"there is no group {group!r} on this host")
    if wanted == primary or wanted in groups_of(name, primary):
        return Verdict(True, name)
    return Verdict(False, name, f"user {name!r} is neither root nor a member of group {group!r}")


def _user_of(uid: int) -> tuple[str, int]:
    entry = pwd.getpwuid(uid)
    return entry.pw_name, entry.pw_gid


def _group_id(name: str) -> int:
    return grp.getgrnam(name).gr_gid
