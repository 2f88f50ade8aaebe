"""The app folders of spec files (``app.path``), watched: a change enqueues the service.

Like the spec folder (``dirwatch``: inotify on the event loop, no polling), level-triggered:
a batch only says that something in the folder changed, and the service's reconcile packs
the folder again and deploys it when its content, hence its release id, is new. A watch
covers the app folder and every folder of its ``pb_hooks/``, ``pb_migrations/`` and
``pb_public/`` (inotify is not recursive); new folders are added as they appear. A folder
that is missing is not watched; the periodic resync looks at it again.

Neighbours: ``agent.deploys`` (which calls ``follow`` at each reconcile), ``dirwatch``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import structlog

from pockestrator.apparchive import app_folders
from pockestrator.dirwatch import DirectoryWatcher

log = structlog.get_logger("pockestrator.appwatch")

QUIET = 0.2  # an editor's save, a `git pull`: one deploy for the burst
MAX_DELAY = 2.0


@dataclass
class _Watch:
    folder: Path
    watcher: DirectoryWatcher
    task: asyncio.Task[None]


class AppWatch:
    def __init__(self, enqueue: Callable[[str], None]) -> None:
        self.enqueue = enqueue
        self._watches: dict[str, _Watch] = {}

    def follow(self, name: str, folder: Path | None) -> None:
        """Watch ``folder`` for ``name`` (None: stop watching it)."""
        current = self._watches.get(name)
        if current is not None and current.folder == folder:
            return
        self.stop(name)
        if folder is None or not folder.is_dir():
            return
        watcher = DirectoryWatcher(app_folders(folder), lambda _: True, QUIET, MAX_DELAY)
        try:
            watcher.start()
        except OSError as exc:
            log.warning("app folder not watched", service=name, folder=str(folder), error=str(exc))
            return
        task = asyncio.create_task(self._run(name, folder, watcher), name=f"app watch {name}")
        self._watches[name] = _Watch(folder, watcher, task)

    async def _run(self, name: str, folder: Path, watcher: DirectoryWatcher) -> None:
        async for _batch in watcher.batches():
            if folder.is_dir():
                watcher.directories = app_folders(folder)
                watcher.ensure_watches()
            self.enqueue(name)

    def stop(self, name: str) -> None:
        watch = self._watches.pop(name, None)
        if watch is not None:
            watch.task.cancel()
            watch.watcher.close()

    async def close(self) -> None:
        tasks = [watch.task for watch in self._watches.values()]
        for name in list(self._watches):
            self.stop(name)
        with contextlib.suppress(Exception):
            await asyncio.gather(*tasks, return_exceptions=True)
