"""Service folders: each instance's state directory, as the agent reaches into it.

systemd makes and owns every instance's folder (its dynamic user's state directory, kept in
a 0700 ``private/`` tree); the instance owns what is inside, so the agent (root) treats all
of it as hostile: names are checked against the grammar, and work inside a folder goes
through directory descriptors opened with ``O_NOFOLLOW``, so nothing planted there is ever
followed. Nothing outside the service folders, the backups and the archive is touched.

- ``folders``: where a folder is (private, legacy or none), opening it;
- ``fds``: directory descriptors, ``copy_tree_at``;
- ``dirs``: ``ServiceDirs``, the one object the agent holds (``observe``, legacy clean-up);
- ``archive``: deleting (archived as ``<archive>/<name>-<UTC stamp>``, or purged);
- ``backups``: ``pb_data`` backed up before an upgrade (named by its version), restored on
  rollback or a downgrade;
- ``superuser``: a superuser created by the instance's binary in the instance's own box;
- ``errors``: ``ServiceDirError`` and ``UnsafePath``.

Neighbours: ``controllers.systemd`` (the box and the transient units). The names below are
re-exported so that callers can import from the package.
"""

from pockestrator.controllers.servicedirs.archive import (
    ArchivedFolder,
    DeleteResult,
    expired_archives,
)
from pockestrator.controllers.servicedirs.backups import DataBackup
from pockestrator.controllers.servicedirs.dirs import ServiceDirs, ServiceDirState
from pockestrator.controllers.servicedirs.errors import ServiceDirError, UnsafePath
from pockestrator.controllers.servicedirs.folders import Place, ServiceFolders
from pockestrator.controllers.servicedirs.superuser import (
    SuperuserCreated,
    SuperuserError,
    read_password_file,
    redact,
)

__all__ = [
    "ArchivedFolder",
    "DataBackup",
    "DeleteResult",
    "Place",
    "ServiceDirError",
    "ServiceDirState",
    "ServiceDirs",
    "ServiceFolders",
    "SuperuserCreated",
    "SuperuserError",
    "UnsafePath",
    "expired_archives",
    "read_password_file",
    "redact",
]
