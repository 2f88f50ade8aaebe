"""App archives from the hostile: every refusal names its entry and writes nothing."""

from __future__ import annotations

import gzip
import io
import os
import tarfile
from pathlib import Path

import pytest

from pockestrator.apparchive import (
    UnsafeAppArchive,
    is_release_id,
    member_path,
    read_app_archive,
)


def _archive(*members: tuple[tarfile.TarInfo, bytes | None]) -> io.BytesIO:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    raw.seek(0)
    return raw


def _file(name: str, data: bytes = b"x") -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), data


def _special(name: str, kind: bytes, link: str = "") -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    return info, None


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("pb_hooks/main.pb.js", "pb_hooks/main.pb.js"),
        ("./pb_public/index.html", "pb_public/index.html"),
        ("pb_migrations/", "pb_migrations"),
        ("pb_public/a b/c.css", "pb_public/a b/c.css"),
    ],
)
def test_member_paths_inside_the_app_folders_are_normalised(name: str, expected: str) -> None:
    assert member_path(name) == expected


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("/etc/passwd", "absolute path"),
        ("pb_hooks/../../etc/cron.d/x", "'..'"),
        ("pb_hooks\\x.js", "backslash"),
        ("pb_hooks/a\nb.js", "control character"),
        ("secrets/x", "outside"),
        ("pb_data/data.db", "outside"),
        ("pb_hooks/" + "a" * 300, "too long"),
        ("", "absolute path"),
        ("./", "names no file"),
    ],
)
def test_member_paths_that_could_escape_are_refused(name: str, words: str) -> None:
    with pytest.raises(UnsafeAppArchive, match=words):
        member_path(name)


def test_a_good_archive_lists_its_files_and_unpacks_them(tmp_path: Path) -> None:
    archive = _archive(
        _file("pb_hooks/main.pb.js", b"routerAdd()"),
        _file("./pb_public/index.html", b"<h1>todo</h1>"),
    )
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        content = read_app_archive(archive, target=fd)
    finally:
        os.close(fd)
    assert [f.path for f in content.files] == ["pb_hooks/main.pb.js", "pb_public/index.html"]
    assert content.size == len(b"routerAdd()") + len(b"<h1>todo</h1>")
    assert (tmp_path / "pb_public/index.html").read_bytes() == b"<h1>todo</h1>"
    assert is_release_id(content.release_id)


def test_the_same_content_makes_the_same_release_and_other_content_another() -> None:
    first = read_app_archive(_archive(_file("pb_hooks/a.pb.js", b"1")))
    again = read_app_archive(_archive(_file("./pb_hooks/a.pb.js", b"1")))
    other = read_app_archive(_archive(_file("pb_hooks/a.pb.js", b"2")))
    assert first.release_id == again.release_id != other.release_id


@pytest.mark.parametrize(
    ("member", "words"),
    [
        (_special("pb_hooks/link.js", tarfile.SYMTYPE, "/etc/shadow"), "symbolic link"),
        (_special("pb_hooks/hard.js", tarfile.LNKTYPE, "pb_hooks/a.js"), "hard link"),
        (_special("pb_public/null", tarfile.CHRTYPE), "a device"),
        (_special("pb_public/disk", tarfile.BLKTYPE), "a device"),
        (_special("pb_public/fifo", tarfile.FIFOTYPE), "a FIFO"),
        (_file("../escape.js"), "'..'"),
        (_file("/abs.js"), "absolute"),
        (_file("other/x.js"), "outside"),
    ],
)
def test_hostile_entries_are_refused_by_name_and_nothing_is_written(
    tmp_path: Path, member: tuple[tarfile.TarInfo, bytes | None], words: str
) -> None:
    archive = _archive(member)
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with pytest.raises(UnsafeAppArchive, match=words) as raised:
            read_app_archive(archive, target=fd)
    finally:
        os.close(fd)
    assert raised.value.entry is not None
    assert repr(raised.value.entry) in str(raised.value)
    assert list(tmp_path.iterdir()) == []


def test_an_archive_of_too_many_files_is_refused() -> None:
    archive = _archive(*(_file(f"pb_public/{n}.txt", b"") for n in range(10_001)))
    with pytest.raises(UnsafeAppArchive, match="more than 5000 entries"):
        read_app_archive(archive)


def test_a_zip_bomb_stops_at_the_unpacked_limit() -> None:
    # 64 MiB of zeros in one member: a few dozen KiB compressed.
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        info = tarfile.TarInfo("pb_public/bomb.bin")
        info.size = 64 * 1024 * 1024
        tar.addfile(info, io.BytesIO(bytes(info.size)))
    assert raw.tell() < 1024 * 1024
    raw.seek(0)
    with pytest.raises(UnsafeAppArchive, match="past 1048576 bytes") as raised:
        read_app_archive(raw, max_bytes=1024 * 1024)
    assert raised.value.entry == "pb_public/bomb.bin"


def test_a_name_twice_is_refused() -> None:
    archive = _archive(_file("pb_hooks/a.pb.js"), _file("./pb_hooks/a.pb.js"))
    with pytest.raises(UnsafeAppArchive, match="appears twice"):
        read_app_archive(archive)


def test_what_is_not_a_tar_gz_is_refused() -> None:
    with pytest.raises(UnsafeAppArchive, match=r"not a valid tar\.gz"):
        read_app_archive(io.BytesIO(gzip.compress(b"not a tar" * 100)[:40]))
    with pytest.raises(UnsafeAppArchive, match=r"not a valid tar\.gz"):
        read_app_archive(io.BytesIO(b"plain text"))
