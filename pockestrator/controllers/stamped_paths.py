"""Unique timestamped paths: where an archived folder or a backup goes.

An archive of a deleted service (``<archive>/<name>-<stamp>``), a backup of ``pb_data``
before an upgrade (``<backups>/<name>/pb_data-<stamp>``) and the data a rollback displaced
(``pb_data-replaced-<stamp>``) are named by the UTC second they were made, so that ``ls``
lists them in order and an operator can tell them apart. Two in the same second get
``-1``, ``-2``, ... after the stamp; nothing is ever overwritten.

The check-then-use is safe because the folders are root-only and each service's
directory work is serialised by the work queue (one worker per name).
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path


def utc_stamp(now: datetime | None = None) -> str:
    """A sortable, path-safe UTC timestamp: ``20250102T030405Z``."""
    return (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def unique_stamped_path(folder: Path, stem: str, now: datetime | None = None) -> Path:
    """``<folder>/<stem>-<stamp>``, or the first free ``<stem>-<stamp>-<n>`` when taken.

    Anything at the name counts as taken, a dangling symlink too.
    """
    stamp = utc_stamp(now)
    candidate = folder / f"{stem}-{stamp}"
    counter = 1
    while os.path.lexists(candidate):
        candidate = folder / f"{stem}-{stamp}-{counter}"
        counter += 1
    return candidate
