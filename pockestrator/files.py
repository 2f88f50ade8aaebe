"""Atomic writes and content hashes for every file the agent renders.

A half-written unit or Caddy file must never be visible: each write goes to a temporary
file in the same directory, is fsynced, renamed over the target and the directory is
fsynced; a writer killed before the rename leaves the temporary file, which
``remove_temporary_files`` clears when the agent starts. The hash of a rendered text is
the identity used for drift detection (``systemd_config_hash``, ``caddy_config_hash``);
the API shows a 12-hex prefix.

A base module: the controllers, the agent and the CLI (its token file) write through it;
``read_private_file`` reads the secrets an operator keeps in root-only files.
Neighbours in ``controllers``: ``hashed_copy`` (copying a binary while hashing it),
``stamped_paths`` (unique timestamped names for archives and backups).
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

HASH_CHUNK = 1024 * 1024
# write_atomic's temporary names: mkstemp's eight random characters between the two.
TEMPORARY_NAME = re.compile(r"\.(?P<target>.+)\.[a-z0-9_]{8}\.tmp")


@dataclass(frozen=True)
class HashedFile:
    """A file by its path, size and SHA-256: one record for an app release's, a snapshot's
    and the API's list of either."""

    path: str
    size: int
    sha256: str


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def sha256_file(path: Path) -> str | None:
    """The file's SHA-256, or None when it does not exist or cannot be read."""
    try:
        with path.open("rb") as handle:
            return sha256_stream(handle)
    except OSError:
        return None


def sha256_stream(reader: IO[bytes]) -> str:
    """The SHA-256 of everything left in ``reader``, read in chunks (binaries are ~35 MB)."""
    return sized_sha256(read_chunks(reader))[1]


def read_chunks(reader: IO[bytes]) -> Iterator[bytes]:
    """Everything left in ``reader``, a chunk at a time (never the whole file in memory)."""
    while chunk := reader.read(HASH_CHUNK):
        yield chunk


def sized_sha256(chunks: Iterable[bytes]) -> tuple[int, str]:
    """The byte count and SHA-256 of ``chunks``, in one pass: what a manifest's entry
    records of a file and what a copy read back must match."""
    hasher = hashlib.sha256()
    size = 0
    for chunk in chunks:
        hasher.update(chunk)
        size += len(chunk)
    return size, hasher.hexdigest()


def write_atomic(
    path: Path, data: str | bytes, mode: int = 0o644, *, sync_directory: bool = True
) -> None:
    """Replace ``path`` with ``data`` so that readers see the old or the new file, never half.

    ``sync_directory=False`` leaves the rename's durability to the caller (a later
    ``fsync_directory``): the data is on disk before the rename either way, so a crash
    shows the old file or the new one, both complete."""
    payload = data.encode("utf-8") if isinstance(data, str) else data
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fchmod(handle.fileno(), mode)
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    if sync_directory:
        fsync_directory(path.parent)


def remove_temporary_files(folder: Path, targets: str) -> list[Path]:
    """Remove what ``write_atomic`` left in ``folder`` for names matching the glob
    ``targets`` (its writer killed before the rename); the files removed.

    Only names of the caller's own are touched (``folder`` may be shared, as
    /etc/systemd/system is), and only while nothing writes them: when the agent starts.
    """
    try:
        entries = sorted(folder.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return []
    removed = []
    for path in entries:
        match = TEMPORARY_NAME.fullmatch(path.name)
        if match is None or not fnmatch.fnmatchcase(match["target"], targets):
            continue
        if path.is_symlink() or not path.is_file():
            continue
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        removed.append(path)
    return removed


def fsync_directory(directory: Path) -> None:
    """Make a rename or unlink in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_file(path: Path) -> bool:
    """Delete ``path`` durably; False when it was already gone."""
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    fsync_directory(path.parent)
    return True


SECRET_READ_MAX = 4096


class SecretUnreadable(Exception):
    """A secret's file cannot be opened; the message is the system's reason."""


class SecretNotPrivate(Exception):
    """A secret's file is not the agent's user's own with mode 0600 or stricter."""


def read_private_file(path: Path) -> bytes:
    """The first 4 KiB of a secret's file, which must be the agent's user's own and readable
    or writable by nobody else (a link is not followed): another user who could read it
    has the secret, one who could write it chooses it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise SecretUnreadable(str(exc.strerror)) from None
    try:
        info = os.fstat(fd)
        if info.st_uid != os.geteuid() or info.st_mode & 0o077:
            raise SecretNotPrivate(str(path))
        with os.fdopen(fd, "rb", closefd=False) as reader:
            return reader.read(SECRET_READ_MAX)
    finally:
        os.close(fd)
