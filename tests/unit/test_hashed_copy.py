"""Copy while hashing: digests of what was read, a size bound, and only ever a new file."""

from __future__ import annotations

import hashlib
import io
import os
import stat
from pathlib import Path

import pytest

from pockestrator.controllers.hashed_copy import (
    COPY_CHUNK,
    CopyTooLarge,
    HashedCopy,
    copy_hashing,
)

# More than one chunk, so that hashing and the bound are exercised across reads.
DATA = bytes(range(256)) * (COPY_CHUNK // 256 + 300)


def test_the_copy_holds_the_bytes_size_digests_and_head_of_the_source(tmp_path: Path) -> None:
    target = tmp_path / "copy"
    copied = copy_hashing(io.BytesIO(DATA), target, algorithms=("sha256", "sha512"), mode=0o640)
    assert copied == HashedCopy(
        size=len(DATA),
        digests={"sha256": hashlib.sha256(DATA).digest(), "sha512": hashlib.sha512(DATA).digest()},
        head=DATA[:64],
    )
    assert copied.sha256 == hashlib.sha256(DATA).hexdigest()
    assert target.read_bytes() == DATA
    assert stat.S_IMODE(target.stat().st_mode) == 0o640


def test_without_algorithms_the_bytes_are_copied_and_nothing_is_hashed(tmp_path: Path) -> None:
    copied = copy_hashing(io.BytesIO(DATA), tmp_path / "copy", algorithms=())
    assert copied == HashedCopy(size=len(DATA), digests={}, head=DATA[:64])
    assert (tmp_path / "copy").read_bytes() == DATA


def test_an_empty_source_gives_an_empty_file_with_the_empty_digest(tmp_path: Path) -> None:
    copied = copy_hashing(io.BytesIO(b""), tmp_path / "empty")
    assert copied == HashedCopy(0, {"sha256": hashlib.sha256(b"").digest()}, b"")
    assert (tmp_path / "empty").read_bytes() == b""


def test_a_source_of_exactly_max_bytes_is_copied(tmp_path: Path) -> None:
    copied = copy_hashing(io.BytesIO(DATA), tmp_path / "copy", max_bytes=len(DATA))
    assert copied.size == len(DATA)


def test_one_byte_past_max_bytes_is_refused_and_the_partial_copy_removed(tmp_path: Path) -> None:
    with pytest.raises(CopyTooLarge) as raised:
        copy_hashing(io.BytesIO(DATA), tmp_path / "copy", max_bytes=len(DATA) - 1)
    assert str(raised.value) == f"more than {len(DATA) - 1} bytes to copy"
    assert raised.value.limit == len(DATA) - 1
    assert list(tmp_path.iterdir()) == []


def test_an_existing_file_is_refused_and_left_as_it_was(tmp_path: Path) -> None:
    target = tmp_path / "copy"
    target.write_text("keep")
    with pytest.raises(FileExistsError):
        copy_hashing(io.BytesIO(DATA), target)
    assert target.read_text() == "keep"


def test_a_planted_symlink_is_refused_never_written_through(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("keep")
    (tmp_path / "copy").symlink_to(victim)
    with pytest.raises(FileExistsError):
        copy_hashing(io.BytesIO(DATA), tmp_path / "copy")
    assert victim.read_text() == "keep"
    assert (tmp_path / "copy").readlink() == victim


def test_a_name_relative_to_a_directory_descriptor_lands_in_that_directory(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "folder"
    folder.mkdir()
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        copy_hashing(io.BytesIO(b"abc"), "copy", dir_fd=fd)
    finally:
        os.close(fd)
    assert (folder / "copy").read_bytes() == b"abc"


class FailingReader(io.RawIOBase):
    """Yields one chunk, then fails like a disk or a broken archive would."""

    def __init__(self) -> None:
        self.calls = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        self.calls += 1
        if self.calls > 1:
            raise OSError("read failed")
        return b"x" * 100


def test_a_source_that_fails_midway_leaves_no_file(tmp_path: Path) -> None:
    with pytest.raises(OSError, match="read failed"):
        copy_hashing(FailingReader(), tmp_path / "copy")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="changing a file's owner needs root")
def test_the_owner_is_set_on_the_copy_when_given(tmp_path: Path) -> None:
    copy_hashing(io.BytesIO(b"abc"), tmp_path / "copy", owner=(65534, 65534))
    info = (tmp_path / "copy").stat()
    assert (info.st_uid, info.st_gid) == (65534, 65534)
