"""Releases in GitHub's layout, from GitHub itself or a mirror: ``GitHubLayoutSource``.

``v{V}/pocketbase_{V}_linux_{arch}.zip`` under ``release_base_url`` is checked against
``v{V}/checksums.txt`` beside it; the index is a GitHub-API-shaped ``/releases`` answer
at ``release_index_url``, every page of it (links followed only on the same host). Every
download is streamed with its size limit enforced as it arrives, and bounded in time.

Neighbours: ``names`` (URLs), ``listings`` (parsing), ``archives`` (unzipping),
``sources`` (the protocol it implements).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp

from pockestrator import __version__
from pockestrator.controllers.releases.archives import UnsafeArchive, extract_release_binary
from pockestrator.controllers.releases.listings import (
    ReleaseInfo,
    parse_checksums,
    parse_github_index,
    sort_releases,
)
from pockestrator.controllers.releases.names import release_urls, zip_name
from pockestrator.controllers.releases.sources import INDEX_TIMEOUT_MAX, ReleaseError
from pockestrator.controllers.releases.store import FetchedBinary
from pockestrator.controllers.service_layout import BINARY_NAME

CHECKSUMS_MAX_BYTES = 1024 * 1024
INDEX_PAGE_MAX_BYTES = 8 * 1024 * 1024

INDEX_MAX_PAGES = 10
CHUNK_BYTES = 256 * 1024


def _status_reason(status: int) -> str:
    if status == 404:
        return "not found (HTTP 404)"
    if status in (403, 429):
        return f"refused (HTTP {status}; rate limited?)"
    return f"unexpected answer HTTP {status}"


@dataclass(eq=False)
class GitHubLayoutSource:
    """Releases in GitHub's layout (GitHub itself or a mirror); index in the REST API's shape."""

    kind: str
    base_url: str
    index_url: str
    arch: str
    _: KW_ONLY
    timeout: float
    max_bytes: int
    _session: aiohttp.ClientSession | None = field(default=None, init=False, repr=False)

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                headers={"User-Agent": f"pockestrator/{__version__}"}
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def fetch(self, version: str, staging: Path) -> FetchedBinary:
        zip_url, checksums_url = release_urls(self.base_url, version, self.arch)
        name = zip_name(version, self.arch)
        checksums = await self._read(checksums_url, CHECKSUMS_MAX_BYTES, self.timeout)
        try:
            expected = parse_checksums(checksums.decode("utf-8"))[name]
        except UnicodeDecodeError:
            raise ReleaseError(checksums_url, "checksums.txt is not text") from None
        except ValueError as exc:
            raise ReleaseError(checksums_url, f"checksums.txt is malformed: {exc}") from None
        except KeyError:
            raise ReleaseError(checksums_url, f"checksums.txt lists no {name}") from None
        archive = staging / name
        digest = await self._download(zip_url, archive)
        if not hmac.compare_digest(digest, expected):
            raise ReleaseError(
                zip_url,
                f"checksum mismatch: checksums.txt says {expected}, the download is {digest}",
            )
        binary = staging / BINARY_NAME
        try:
            digests = await asyncio.to_thread(extract_release_binary, archive, binary)
        except UnsafeArchive as exc:
            raise ReleaseError(zip_url, f"unusable release archive: {exc}") from None
        archive.unlink()
        return FetchedBinary(binary, digests["sha256"].hex(), zip_url)

    async def _download(self, url: str, destination: Path) -> str:
        """Stream ``url`` into a new file; the size limit aborts the transfer as it happens."""
        limit = self.max_bytes
        hasher = hashlib.sha256()
        received = 0
        try:
            async with self._client().get(
                url, timeout=aiohttp.ClientTimeout(total=self.timeout)
            ) as response:
                if response.status != 200:
                    raise ReleaseError(url, _status_reason(response.status))
                declared = response.content_length
                if declared is not None and declared > limit:
                    response.close()
                    raise ReleaseError(
                        url, f"the archive is {declared} bytes, over the limit of {limit} bytes"
                    )
                with destination.open("xb") as handle:
                    async for chunk in response.content.iter_chunked(CHUNK_BYTES):
                        received += len(chunk)
                        if received > limit:
                            response.close()
                            raise ReleaseError(
                                url, f"download aborted past the limit of {limit} bytes"
                            )
                        hasher.update(chunk)
                        handle.write(chunk)
                if declared is not None and received != declared:
                    raise ReleaseError(
                        url, f"download truncated: {received} of {declared} bytes arrived"
                    )
        except TimeoutError:
            raise ReleaseError(url, f"download timed out after {self.timeout:g} s") from None
        except aiohttp.ClientPayloadError as exc:
            raise ReleaseError(url, f"download interrupted after {received} bytes: {exc}") from None
        except aiohttp.ClientError as exc:
            raise ReleaseError(url, f"download failed: {exc}") from None
        return hasher.hexdigest()

    async def _read(
        self, url: str, limit: int, timeout: float, headers: Mapping[str, str] | None = None
    ) -> bytes:
        body, _ = await self._read_with_links(url, limit, timeout, headers)
        return body

    async def _read_with_links(
        self, url: str, limit: int, timeout: float, headers: Mapping[str, str] | None = None
    ) -> tuple[bytes, str | None]:
        """A small document, bounded; also the ``rel="next"`` link of paginated answers."""
        try:
            async with self._client().get(
                url, timeout=aiohttp.ClientTimeout(total=timeout), headers=headers
            ) as response:
                if response.status != 200:
                    raise ReleaseError(url, _status_reason(response.status))
                if response.content_length is not None and response.content_length > limit:
                    response.close()
                    raise ReleaseError(url, f"answer larger than {limit} bytes")
                body = bytearray()
                async for chunk in response.content.iter_chunked(CHUNK_BYTES):
                    body += chunk
                    if len(body) > limit:
                        response.close()
                        raise ReleaseError(url, f"answer larger than {limit} bytes")
                link = response.links.get("next")
                following = link.get("url") if link is not None else None
                return bytes(body), str(following) if following is not None else None
        except TimeoutError:
            raise ReleaseError(url, f"timed out after {timeout:g} s") from None
        except aiohttp.ClientError as exc:
            raise ReleaseError(url, f"request failed: {exc}") from None

    async def index(self) -> list[ReleaseInfo]:
        """Every page of the index (GitHub paginates), following links on the same host."""
        url: str | None = self.index_url
        if "?" not in self.index_url:
            url = f"{self.index_url}?per_page=100"
        origin = urlsplit(self.index_url)[:2]
        timeout = min(self.timeout, INDEX_TIMEOUT_MAX)
        headers = {"Accept": "application/vnd.github+json"}
        releases: list[ReleaseInfo] = []
        pages = 0
        while url is not None and pages < INDEX_MAX_PAGES:
            body, following = await self._read_with_links(
                url, INDEX_PAGE_MAX_BYTES, timeout, headers
            )
            try:
                releases.extend(parse_github_index(json.loads(body)))
            except ValueError as exc:
                raise ReleaseError(url, f"unreadable release index: {exc}") from None
            pages += 1
            url = following if following and urlsplit(following)[:2] == origin else None
        return sort_releases(releases)
