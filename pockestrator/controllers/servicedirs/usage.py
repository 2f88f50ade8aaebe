"""How much disk an instance's ``pb_data`` takes, measured without following anything in it.

The folder is the instance's (hostile): the walk goes through directory descriptors opened
with ``O_NOFOLLOW`` (``fds``), counts a symlink as itself, never crosses into another file
system, and stops after ``MAX_ENTRIES`` names, so that a planted tree of a million empty
files costs a bounded walk (the answer is then a lower bound, and says so).

Neighbours: ``folders`` (where the data is), ``agent.hostview`` (the ``/metrics`` answer).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass

from pockestrator.controllers.service_layout import DATA_DIR
from pockestrator.controllers.servicedirs.fds import DIR_FLAGS, lstat_at
from pockestrator.controllers.servicedirs.folders import ServiceFolders

MAX_ENTRIES = 200_000


@dataclass(frozen=True)
class DataUsage:
    bytes: int
    complete: bool  # False: the walk stopped at MAX_ENTRIES


def data_usage(folders: ServiceFolders, name: str) -> DataUsage | None:
    """Bytes allocated under ``name``'s ``pb_data``; None when it has none."""
    with folders.open_service(name) as service_fd:
        if service_fd is None:
            return None
        info = lstat_at(service_fd, DATA_DIR)
        if info is None or not stat.S_ISDIR(info.st_mode):
            return None
        budget = [MAX_ENTRIES]
        total = _walk(service_fd, DATA_DIR, info.st_dev, budget)
        return DataUsage(total, budget[0] > 0)


def _walk(parent_fd: int, name: str, device: int, budget: list[int]) -> int:
    try:
        fd = os.open(name, DIR_FLAGS, dir_fd=parent_fd)
    except OSError:
        return 0  # replaced by a symlink or gone since it was seen
    total = 0
    try:
        with os.scandir(fd) as entries:
            for entry in entries:
                budget[0] -= 1
                if budget[0] <= 0:
                    break
                try:
                    info = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                total += info.st_blocks * 512
                if stat.S_ISDIR(info.st_mode) and info.st_dev == device:
                    total += _walk(fd, entry.name, device, budget)
    finally:
        os.close(fd)
    return total
