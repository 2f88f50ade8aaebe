"""Where service folders are, and how one is opened: ``ServiceFolders``.

``path_for(name)`` is ``<base_dir>/<name>`` only for a name of the grammar that resolves
to exactly that path directly under ``base_dir``; ``open_service(name)`` opens it as a
directory descriptor without following a symlink (creating it, mode 0750, when asked).
The archive folder (``archive_path``) and the root-only backups
(``<base_dir>/.backups/<name>/``) are found here too.

Neighbours: ``fds`` (the descriptor primitives); ``dirs``, ``archive``, ``backups`` and
``superuser`` all reach a service folder through this.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from pockestrator.config import AgentConfig
from pockestrator.controllers.servicedirs.errors import UnsafePath
from pockestrator.controllers.servicedirs.fds import (
    DIR_FLAGS,
    DirFd,
    lstat_at,
    mkdir_at,
    open_dir_at,
)
from pockestrator.specs.grammar import GrammarError, check_project_name

DIR_MODE = 0o750
BACKUPS_DIR = ".backups"


class ServiceFolders:
    """The folders of services under ``base_dir``, their archive and their backups."""

    def __init__(self, config: AgentConfig) -> None:
        self.base_dir = config.base_dir.resolve()
        self.archive_dir = config.archive_path.resolve()
        self.backups_dir = self.base_dir / BACKUPS_DIR

    def path_for(self, name: str) -> Path:
        """``<base_dir>/<name>`` after checking the name and that it resolves to itself."""
        try:
            check_project_name(name)
        except GrammarError as exc:
            raise UnsafePath(f"{name[:60]!r} is not a service name: {exc.message}") from None
        path = self.base_dir / name
        resolved = path.resolve()
        if resolved != path or resolved.parent != self.base_dir:
            raise UnsafePath(f"{path} resolves to {resolved}, not a folder of {self.base_dir}")
        return path

    def _open_base(self, create: bool) -> DirFd | None:
        if create:
            self.base_dir.mkdir(parents=True, exist_ok=True, mode=0o755)
        try:
            return DirFd(os.open(self.base_dir, DIR_FLAGS))
        except FileNotFoundError:
            return None

    @contextlib.contextmanager
    def open_service(self, name: str, *, create: bool = False) -> Iterator[tuple[int, bool] | None]:
        """The service folder's descriptor and whether it was just created (None: absent)."""
        path = self.path_for(name)
        base = self._open_base(create)
        if base is None:
            yield None
            return
        with base as base_fd:
            created = create and mkdir_at(base_fd, name, DIR_MODE)
            if not create and lstat_at(base_fd, name) is None:
                yield None
                return
            with open_dir_at(base_fd, name, path) as service_fd:
                yield service_fd, created
