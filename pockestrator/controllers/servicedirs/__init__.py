"""Service directories: ``<base_dir>/<name>/`` with its data, its binary and its first superuser.

Each service gets a folder owned by the instance user (mode 0750) holding ``pb_data``, the
optional ``pb_hooks``, ``pb_migrations`` and ``pb_public``, and ``pocketbase``, the cached
binary of the spec's version. The instance user owns these folders, so the agent (root)
treats everything inside them as hostile: names are checked against the grammar, every
path is resolved and must stay directly under ``base_dir``, and work inside a service
folder goes through directory file descriptors opened with ``O_NOFOLLOW``, so a symlink
planted as the folder, as ``pb_data`` or as the binary is refused or replaced, never
followed. Nothing outside ``base_dir`` and the archive folder is touched.

- ``fds``: directory descriptors, ``copy_tree``; ``folders``: where a folder is, opening it;
- ``dirs``: ``ServiceDirs``, ``observe`` and ``apply`` (the one object the agent holds);
- ``archive``: deleting (archived as ``<archive>/<name>-<UTC stamp>``, or purged);
- ``backups``: ``pb_data`` backed up before an upgrade, restored on rollback;
- ``superuser``: the first superuser, created once with ``pocketbase superuser upsert``;
- ``owner``: the instance account; ``errors``: ``ServiceDirError`` and ``UnsafePath``.

Neighbours: ``releases`` fills the cache the binary is linked from; the systemd controller
renders units whose ``ExecStart`` runs ``<dir>/pocketbase``. The names below are
re-exported so that callers can import from the package.
"""

from pockestrator.controllers.servicedirs.archive import DeleteResult
from pockestrator.controllers.servicedirs.dirs import DirChanges, ServiceDirs, ServiceDirState
from pockestrator.controllers.servicedirs.errors import ServiceDirError, UnsafePath
from pockestrator.controllers.servicedirs.owner import InstanceOwner, resolve_instance_owner
from pockestrator.controllers.servicedirs.superuser import (
    SuperuserCreated,
    SuperuserError,
    read_password_file,
    redact,
    superuser_command,
)

__all__ = [
    "DeleteResult",
    "DirChanges",
    "InstanceOwner",
    "ServiceDirError",
    "ServiceDirState",
    "ServiceDirs",
    "SuperuserCreated",
    "SuperuserError",
    "UnsafePath",
    "read_password_file",
    "redact",
    "resolve_instance_owner",
    "superuser_command",
]
