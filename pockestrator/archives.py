"""Archives from outside (a PocketBase backup ZIP, a zipped ``pb_data``), checked and unpacked.

An uploaded archive is hostile input. ``check_zip`` reads only its central directory and
refuses, naming the member and the problem: more members or more bytes than the limits,
a name that is absolute, has ``..``, a backslash, a control character or an empty part,
two members with one name, a symlink or any other special file, an encrypted member, a
compression other than stored or deflate, and an archive without ``data.db``. A ZIP of a
``pb_data`` folder (every member under ``pb_data/``) is the same as PocketBase's own
backup format (the folder's contents at the top). ``unpack_zip`` unpacks what
``check_zip`` accepted into a new folder that only root can reach, counting the bytes it
actually writes (a member that inflates past its declared size is refused as it happens),
and removes everything it wrote when anything fails: nothing half-made is left.

Neighbours: the API checks an upload before it creates the service; ``agent.seeding``
unpacks it when it seeds the service's folder.
"""

from __future__ import annotations

import os
import shutil
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path

DATA_DB = "data.db"
PB_DATA_PREFIX = "pb_data/"
SQLITE_HEADER = b"SQLite format 3\x00"
NAME_MAX = 255
PATH_MAX = 1024
ENCRYPTED_FLAG = 0x1
_CHUNK = 1024 * 1024


class ArchiveRefused(ValueError):
    """The archive is not one we unpack; the message names the member and the problem."""


@dataclass(frozen=True)
class Limits:
    max_bytes: int  # the unpacked total (and the archive itself)
    max_members: int = 100_000


@dataclass(frozen=True)
class Member:
    name: str  # inside the archive
    path: str  # where it goes, relative to pb_data
    is_dir: bool
    size: int


def _member_path(name: str) -> str:
    """The checked relative path of a member's name (``ArchiveRefused`` when unsafe)."""
    shown = repr(name[:80])
    if not name:
        raise ArchiveRefused("a member has an empty name")
    if len(name) > PATH_MAX:
        raise ArchiveRefused(f"member {shown}: the name is longer than {PATH_MAX} characters")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        raise ArchiveRefused(f"member {shown}: the name has a control character")
    if "\\" in name:
        raise ArchiveRefused(f"member {shown}: the name has a backslash")
    if name.startswith("/"):
        raise ArchiveRefused(f"member {shown}: an absolute path")
    parts = name.rstrip("/").split("/")
    for part in parts:
        if part in ("", ".", ".."):
            raise ArchiveRefused(f"member {shown}: '{part}' parts are not allowed (path escape)")
        if len(part.encode()) > NAME_MAX:
            raise ArchiveRefused(f"member {shown}: a part is longer than {NAME_MAX} bytes")
    if ":" in parts[0]:
        raise ArchiveRefused(f"member {shown}: a drive letter")
    return "/".join(parts)


def _kind(info: zipfile.ZipInfo) -> str:
    """'dir', 'file' or what else the member says it is (from its Unix mode, if any)."""
    mode = info.external_attr >> 16
    if info.create_system == 3 and stat.S_IFMT(mode):  # made on Unix, with a file type
        if stat.S_ISLNK(mode):
            return "symlink"
        if stat.S_ISDIR(mode):
            return "dir"
        if not stat.S_ISREG(mode):
            return "special file"
    return "dir" if info.filename.endswith("/") else "file"


def check_zip(path: Path, limits: Limits) -> list[Member]:
    """The members of the ZIP at ``path`` as they will be unpacked; ``ArchiveRefused``
    naming the first problem (see the module)."""
    size = path.stat().st_size
    if size > limits.max_bytes:
        raise ArchiveRefused(f"the archive is {size} bytes, more than {limits.max_bytes}")
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError) as exc:
        raise ArchiveRefused(f"not a readable ZIP archive: {exc}") from None
    if len(infos) > limits.max_members:
        raise ArchiveRefused(
            f"the archive has {len(infos)} members, more than {limits.max_members}"
        )
    names = [_member_path(info.filename) for info in infos]
    strip = bool(names) and all(
        n == PB_DATA_PREFIX.rstrip("/") or n.startswith(PB_DATA_PREFIX) for n in names
    )
    members: list[Member] = []
    seen: set[str] = set()
    total = 0
    for info, name in zip(infos, names, strict=True):
        shown = repr(info.filename[:80])
        kind = _kind(info)
        if kind not in ("dir", "file"):
            raise ArchiveRefused(f"member {shown} is a {kind}; only files and folders are taken")
        if info.flag_bits & ENCRYPTED_FLAG:
            raise ArchiveRefused(f"member {shown} is encrypted")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise ArchiveRefused(
                f"member {shown} uses compression method {info.compress_type}; "
                "only stored and deflate are taken"
            )
        relative = name[len(PB_DATA_PREFIX) :] if strip else name
        if not relative:
            continue  # the pb_data folder itself
        if relative.casefold() in seen:
            raise ArchiveRefused(f"member {shown} appears twice")
        seen.add(relative.casefold())
        total += info.file_size
        if total > limits.max_bytes:
            raise ArchiveRefused(f"the archive unpacks to more than {limits.max_bytes} bytes")
        members.append(Member(info.filename, relative, kind == "dir", info.file_size))
    files = {m.path for m in members if not m.is_dir}
    folders = {m.path for m in members if m.is_dir}
    for member in members:
        parts = member.path.split("/")
        for depth in range(1, len(parts)):
            if "/".join(parts[:depth]) in files:
                raise ArchiveRefused(f"member {member.name[:80]!r} is inside a file")
        if not member.is_dir and member.path in folders:
            raise ArchiveRefused(f"member {member.name[:80]!r} is both a file and a folder")
    if DATA_DB not in files:
        raise ArchiveRefused(
            "the archive has no data.db at its top (or under pb_data/): "
            "not a PocketBase backup or pb_data folder"
        )
    return members


def unpack_zip(path: Path, target: Path, limits: Limits) -> list[Member]:
    """Unpack the checked ZIP into the new folder ``target`` (made 0700 here); on any
    failure nothing of ``target`` is left."""
    members = check_zip(path, limits)
    target.mkdir(mode=0o700)
    try:
        with zipfile.ZipFile(path) as archive:
            written = 0
            for member in sorted(members, key=lambda m: m.path):
                destination = target / member.path
                if member.is_dir:
                    destination.mkdir(mode=0o700, parents=True, exist_ok=True)
                    continue
                destination.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                written += _copy_member(archive, member, destination, limits.max_bytes - written)
        _check_database(target / DATA_DB)
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise
    return members


def _copy_member(archive: zipfile.ZipFile, member: Member, destination: Path, room: int) -> int:
    """Write one member, refusing more bytes than it declared or than ``room``; bytes written."""
    fd = os.open(destination, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    count = 0
    try:
        with archive.open(member.name) as source:
            while chunk := source.read(_CHUNK):
                count += len(chunk)
                if count > member.size or count > room:
                    raise ArchiveRefused(
                        f"member {member.name[:80]!r} unpacks to more bytes than it declares"
                    )
                os.write(fd, chunk)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError) as exc:
        raise ArchiveRefused(f"member {member.name[:80]!r} is damaged: {exc}") from None
    finally:
        os.close(fd)
    return count


def _check_database(path: Path) -> None:
    with path.open("rb") as handle:
        if handle.read(len(SQLITE_HEADER)) != SQLITE_HEADER:
            raise ArchiveRefused("data.db is not an SQLite database")
