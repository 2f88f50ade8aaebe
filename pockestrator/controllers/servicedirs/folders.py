"""Where a service's folder is, and how one is opened: ``ServiceFolders``.

Every instance's folder is a systemd state directory of its own dynamic user
(``StateDirectory=``): systemd keeps it at ``<state root>/private/<base_dir part>/<name>``
(a 0700 tree only root can enter) and links ``<base_dir>/<name>`` to it, which is the path
the instance itself sees. A folder made by an earlier agent is a plain directory at
``<base_dir>/<name>`` until the instance's first start under its new unit, when systemd
moves it into ``private/`` and gives it to the dynamic user; ``place`` tells the three
cases apart (``private``, ``legacy``, none).

``open_service(name)`` opens the folder where the data is, as a directory descriptor:
the parents are root's own, and the folder itself is opened with ``O_NOFOLLOW``, so a
symlink planted in its place is refused, never followed. The archive folder
(``archive_path``) and the root-only backups (``<base_dir>/.backups/<name>/``) are found
here too.

Neighbours: ``fds`` (the descriptor primitives); ``dirs``, ``archive`` and ``backups``
reach a service folder through this.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path

from pockestrator.config import AgentConfig
from pockestrator.controllers.servicedirs.errors import UnsafePath
from pockestrator.controllers.servicedirs.fds import DIR_FLAGS, DirFd, lstat_at, open_dir_at
from pockestrator.specs.grammar import GrammarError, check_project_name

BACKUPS_DIR = ".backups"


class Place(StrEnum):
    """Where a service's data is."""

    PRIVATE = "private"  # systemd's state directory of the instance's dynamic user
    LEGACY = "legacy"  # a plain folder made by an earlier agent, not yet moved by systemd
    NONE = "none"


class ServiceFolders:
    """The folders of services under ``base_dir``, their archive and their backups."""

    def __init__(self, config: AgentConfig) -> None:
        self.base_dir = config.base_dir
        self.state_root = config.state_directory_root
        self.private_dir = (
            config.state_directory_root
            / "private"
            / config.base_dir.relative_to(config.state_directory_root)
        )
        self.archive_dir = config.archive_path
        self.backups_dir = self.base_dir / BACKUPS_DIR

    def path_for(self, name: str) -> Path:
        """``<base_dir>/<name>``: where the instance sees its folder (a name of the grammar)."""
        return self.base_dir / _checked(name)

    def private_path(self, name: str) -> Path:
        """Where systemd keeps the folder of ``name``'s dynamic user."""
        return self.private_dir / _checked(name)

    def prepare_private_tree(self) -> None:
        """The folders down to ``private_dir``, for a state directory made here."""
        make_private_tree(self.state_root, self.private_dir)

    def place(self, name: str) -> Place:
        """Where the data of ``name`` is now (nothing is followed to find out)."""
        if _is_dir(self.private_path(name)):
            return Place.PRIVATE
        if _is_dir(self.path_for(name)):
            return Place.LEGACY
        return Place.NONE

    @contextlib.contextmanager
    def open_service(self, name: str) -> Iterator[int | None]:
        """The descriptor of the folder where ``name``'s data is (None: it has none)."""
        place = self.place(name)
        if place is Place.NONE:
            yield None
            return
        parent = self.private_dir if place is Place.PRIVATE else self.base_dir
        with DirFd(os.open(parent, DIR_FLAGS)) as parent_fd:
            if lstat_at(parent_fd, name) is None:
                yield None  # gone since we looked
                return
            with open_dir_at(parent_fd, name, parent / name) as service_fd:
                yield service_fd


def make_private_tree(state_root: Path, folder: Path) -> None:
    """systemd's ``private/`` (0700) and the folders from it down to ``folder``, as systemd
    makes them, for a state directory made before its first start (a seed, a copy)."""
    top = state_root / "private"
    top.mkdir(mode=0o700, exist_ok=True)
    top.chmod(0o700)
    folder.mkdir(mode=0o755, parents=True, exist_ok=True)


def _checked(name: str) -> str:
    try:
        return check_project_name(name)
    except GrammarError as exc:
        raise UnsafePath(f"{name[:60]!r} is not a service name: {exc.message}") from None


def _is_dir(path: Path) -> bool:
    """A real directory at ``path`` (a symlink, even to one, is not)."""
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except FileNotFoundError:
        return False
