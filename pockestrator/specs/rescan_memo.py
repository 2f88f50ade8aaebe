"""What the spec folder's periodic rescan may skip: a file unchanged on both sides.

The rescan (every ``resync_interval``) brought every file into the store again: with 500
files that was four store transactions each, every round, finding nothing. A file whose
last sync left no problem is now skipped while its ``stat`` (inode, size, mtime) and its
services' rows in the store (name, generation, node, last update) are the ones that sync
left. A file with problems is always synced again (a name, port or domain it waits for
may be free now), and an inotify event always re-reads its file (``SpecDirectory``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from pockestrator.specs.store.records import file_owner

StatKey = tuple[int, int, int]
OwnedRows = frozenset[tuple[str, int, str, str]]


def stat_key(path: Path) -> StatKey | None:
    """A file's inode, size and mtime (None: gone or unreadable)."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return (info.st_ino, info.st_size, info.st_mtime_ns)


class CleanFiles:
    """The files whose last sync left no problem, with what that sync saw."""

    def __init__(self) -> None:
        self._seen: dict[str, tuple[StatKey, OwnedRows]] = {}

    def stale(self, paths: Iterable[str], rows: Mapping[str, OwnedRows]) -> list[str]:
        """The ``paths`` to sync again: all but those whose file and services' ``rows``
        are as their last clean sync left them."""
        return sorted(
            path
            for path in paths
            if self._seen.get(path) != (stat_key(Path(path)), rows.get(file_owner(path), _NONE))
        )

    def synced(self, keys: Mapping[str, StatKey | None], rows: Mapping[str, OwnedRows]) -> None:
        """Files just synced, each read at its ``keys`` entry (None: it has problems or is
        gone, and is synced again at the next rescan), the store at ``rows`` after."""
        for path, key in keys.items():
            if key is None:
                self._seen.pop(path, None)
            else:
                self._seen[path] = (key, rows.get(file_owner(path), _NONE))

    def forget(self, path: str) -> None:
        self._seen.pop(path, None)


_NONE: OwnedRows = frozenset()
