"""The archive's retention: deleted services' folders go once ``archive_keep_days`` old.

One loop for the agent's life: it lists the archive, removes what
``servicedirs.expired_archives`` says is past the retention (an event-free, logged
removal: the service is gone), and sleeps until the next archive expires, or until woken:
a deletion that archives a folder (``wake``, from the reconciler) and a SIGHUP that changes
the retention wake it early. No polling: with no archives it sleeps until woken.

Neighbours: ``controllers.servicedirs`` (the archive itself), ``agent.daemon`` (runs it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import structlog

from pockestrator.clock import Clock
from pockestrator.config import AgentConfig
from pockestrator.controllers.servicedirs import ServiceDirs, expired_archives
from pockestrator.waits import woken

log = structlog.get_logger("pockestrator.archive")


class ArchiveKeeper:
    def __init__(self, config: Callable[[], AgentConfig], dirs: ServiceDirs, clock: Clock) -> None:
        self._config = config
        self.dirs = dirs
        self.clock = clock
        self._woken = asyncio.Event()

    def wake(self) -> None:
        """Look again now (a folder was archived, the retention changed)."""
        self._woken.set()

    async def run(self) -> None:
        while True:
            self._woken.clear()
            delay = await self.expire()
            await woken(self._woken, delay)

    async def expire(self) -> float | None:
        """Remove what is past the retention; seconds until the next one is (None: never)."""
        archived = await self.dirs.archives()
        now = self.clock.now()
        expired, next_at = expired_archives(
            [(a.archive_id, a.archived_at) for a in archived], now, self._config().archive_keep_days
        )
        for archive_id in expired:
            await self.dirs.remove_archive(archive_id)
            log.info("archived folder past the retention removed", archive=archive_id)
        if next_at is None:
            return None
        return max(0.0, (next_at - self.clock.now()).total_seconds())
