"""An app archive from the hostile: a tar.gz of ``pb_hooks/``, ``pb_migrations/``, ``pb_public/``.

An app release arrives as a tar.gz through the API (``pockestrator deploy``). Its sender is
an instance's owner, so the archive is read as hostile input, streamed (``r|gz``: never
seeked, never held in memory) and refused as a whole at the first entry that is not a plain
folder or file under one of the three app folders, naming that entry:

- no absolute path, no ``..``, no backslash, NUL or control character in a name, no
  component longer than 255 bytes;
- no symbolic or hard link, device, FIFO or anything else but a folder or a regular file;
- nothing outside ``pb_hooks/``, ``pb_migrations/`` and ``pb_public/`` (a leading ``./``
  is allowed), no name twice;
- at most ``max_files`` entries and ``max_bytes`` bytes unpacked, counted on what is
  actually inflated (a header can lie; a zip bomb stops at the limit).

``read_app_archive`` with no ``target`` only checks (the API, before it records a deploy);
with a directory descriptor it writes every file into that (new, empty) folder through
descriptors, ``O_EXCL | O_NOFOLLOW``, never through a path. Either way the answer is the
release's file list with sizes and SHA-256s and its content id, the hash of that list, so
the same app always makes the same release.

``pack_app`` makes such an archive of a folder (the CLI's ``deploy DIR``, a spec file's
``app.path``): regular files and folders only, sorted, with fixed owners, modes and times,
so the same folder always packs to the same bytes and makes the same release.

Standard library (and ``files``) only: the API, the CLI and the agent's controllers all use it.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import os
import stat
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from pockestrator.files import HashedFile

APP_DIRS = ("pb_hooks", "pb_migrations", "pb_public")
DEFAULT_MAX_FILES = 5000
DEFAULT_MAX_BYTES = 256 * 1024 * 1024
NAME_MAX = 255
PATH_MAX = 1024
RELEASE_ID_LENGTH = 16
_CHUNK = 256 * 1024
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class UnsafeAppArchive(ValueError):
    """The archive is refused; ``entry`` names the offending member (None: the whole)."""

    def __init__(self, message: str, entry: str | None = None) -> None:
        super().__init__(message)
        self.entry = entry


@dataclass(frozen=True)
class AppContent:
    """What an archive holds: its files, sorted by path, and the release id they make."""

    files: tuple[HashedFile, ...]

    @property
    def size(self) -> int:
        return sum(file.size for file in self.files)

    @property
    def release_id(self) -> str:
        return release_id(self.files)


def release_id(files: tuple[HashedFile, ...]) -> str:
    """The content id: SHA-256 of the sorted ``path size sha256`` lines, shortened."""
    digest = hashlib.sha256()
    for file in sorted(files, key=lambda f: f.path):
        digest.update(f"{file.path}\0{file.size}\0{file.sha256}\n".encode())
    return digest.hexdigest()[:RELEASE_ID_LENGTH]


def is_release_id(value: str) -> bool:
    return len(value) == RELEASE_ID_LENGTH and all(c in "0123456789abcdef" for c in value)


def member_path(name: str) -> str:
    """The checked, normalised path of a member (``./`` and a trailing ``/`` dropped)."""
    shown = name[:120]
    if not name or name.startswith("/"):
        raise UnsafeAppArchive(f"entry {shown!r} has an absolute path", shown)
    if any(ord(c) < 32 or ord(c) == 127 or c == "\\" for c in name):
        raise UnsafeAppArchive(f"entry {shown!r} has a control character or backslash", shown)
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if not parts:
        raise UnsafeAppArchive(f"entry {shown!r} names no file", shown)
    if ".." in parts:
        raise UnsafeAppArchive(f"entry {shown!r} climbs out of its folder with '..'", shown)
    if len(name.encode()) > PATH_MAX or any(len(p.encode()) > NAME_MAX for p in parts):
        raise UnsafeAppArchive(f"entry {shown!r} has a name that is too long", shown)
    if parts[0] not in APP_DIRS:
        raise UnsafeAppArchive(
            f"entry {shown!r} is outside {', '.join(d + '/' for d in APP_DIRS)}", shown
        )
    return "/".join(parts)


def _kind(member: tarfile.TarInfo) -> str | None:
    """What a member is, in words, when it is neither a folder nor a regular file."""
    if member.isdir() or member.isreg():
        return None
    if member.issym():
        return "a symbolic link"
    if member.islnk():
        return "a hard link"
    if member.ischr() or member.isblk():
        return "a device"
    if member.isfifo():
        return "a FIFO"
    return "not a regular file or folder"


def read_app_archive(
    source: IO[bytes],
    *,
    target: int | None = None,
    max_files: int = DEFAULT_MAX_FILES,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> AppContent:
    """Check (and with ``target``, a folder's descriptor, unpack) an app archive."""
    files: list[HashedFile] = []
    seen: set[str] = set()
    total = 0
    count = 0
    try:
        with tarfile.open(fileobj=source, mode="r|gz") as archive:
            for member in archive:
                count += 1
                if count > max_files:
                    raise UnsafeAppArchive(f"the archive has more than {max_files} entries")
                path = member_path(member.name)
                kind = _kind(member)
                if kind is not None:
                    raise UnsafeAppArchive(f"entry {path!r} is {kind}", path)
                if path in seen:
                    raise UnsafeAppArchive(f"entry {path!r} appears twice", path)
                seen.add(path)
                if member.isdir():
                    if target is not None:
                        _make_dirs(target, path)
                    continue
                if total + member.size > max_bytes:
                    raise UnsafeAppArchive(
                        f"entry {path!r} takes the archive past {max_bytes} bytes unpacked", path
                    )
                reader = archive.extractfile(member)
                assert reader is not None
                size, digest = _take(reader, target, path, max_bytes - total)
                total += size
                files.append(HashedFile(path, size, digest))
    except (tarfile.TarError, zlib.error, EOFError, OSError) as exc:
        if isinstance(exc, FileExistsError):
            raise UnsafeAppArchive("the archive names one path twice") from None
        raise UnsafeAppArchive(f"not a valid tar.gz archive: {exc}") from None
    return AppContent(tuple(sorted(files, key=lambda f: f.path)))


def _take(reader: IO[bytes], target: int | None, path: str, room: int) -> tuple[int, str]:
    """Read one member (into a new file under ``target``); its size and SHA-256."""
    digest = hashlib.sha256()
    size = 0
    with contextlib.ExitStack() as stack:
        out = None
        if target is not None:
            parent, _, name = path.rpartition("/")
            folder = _make_dirs(target, parent)
            stack.callback(os.close, folder)
            fd = os.open(name, _NEW_FILE, 0o644, dir_fd=folder)
            out = stack.enter_context(os.fdopen(fd, "wb"))
        while chunk := reader.read(_CHUNK):
            size += len(chunk)
            if size > room:
                raise UnsafeAppArchive(f"entry {path!r} inflates past the archive's limit", path)
            digest.update(chunk)
            if out is not None:
                out.write(chunk)
        if out is not None:
            out.flush()
            os.fchmod(out.fileno(), 0o644)
    return size, digest.hexdigest()


def _make_dirs(target: int, path: str) -> int:
    """The folder ``path`` under ``target``, made as needed; a new descriptor to it."""
    fd = os.dup(target)
    for part in [p for p in path.split("/") if p]:
        with contextlib.suppress(FileExistsError):
            os.mkdir(part, 0o755, dir_fd=fd)
        try:
            child = os.open(part, _DIR_FLAGS, dir_fd=fd)
        finally:
            os.close(fd)
        fd = child
    return fd


def pack_app(folder: Path) -> bytes:
    """The app folders of ``folder`` as a reproducible tar.gz; ``UnsafeAppArchive`` when it
    has none of them, or holds a link or anything else that is not a file or folder."""
    if not folder.is_dir():
        raise UnsafeAppArchive(f"{folder} is not a folder")
    present = [name for name in APP_DIRS if (folder / name).is_dir()]
    if not present:
        raise UnsafeAppArchive(f"{folder} has none of {', '.join(d + '/' for d in APP_DIRS)}")
    raw = io.BytesIO()
    with (
        gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as zipped,
        tarfile.open(fileobj=zipped, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for top in present:
            for path in _walk(folder / top):
                info = os.lstat(path)
                entry = tarfile.TarInfo(path.relative_to(folder).as_posix())
                entry.mtime = 0
                if stat.S_ISDIR(info.st_mode):
                    entry.type, entry.mode = tarfile.DIRTYPE, 0o755
                    tar.addfile(entry)
                elif stat.S_ISREG(info.st_mode):
                    entry.size, entry.mode = info.st_size, 0o644
                    with path.open("rb") as source:
                        tar.addfile(entry, source)
                else:
                    raise UnsafeAppArchive(f"{path} is not a regular file or folder", str(path))
    return raw.getvalue()


def _walk(root: Path) -> list[Path]:
    """``root`` and everything under it, sorted, symlinks not followed."""
    found = [root]
    for path in sorted(root.iterdir()):
        if path.is_dir() and not path.is_symlink():
            found += _walk(path)
        else:
            found.append(path)
    return found


def app_folders(folder: Path) -> list[Path]:
    """``folder`` and every folder of its app folders: what a watch must cover."""
    found = [folder]
    for top in APP_DIRS:
        if (folder / top).is_dir() and not (folder / top).is_symlink():
            found += [p for p in _walk(folder / top) if p.is_dir() and not p.is_symlink()]
    return found
