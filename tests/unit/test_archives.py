"""Uploaded archives as hostile input: what ``archives.check_zip`` and ``unpack_zip`` refuse."""

from __future__ import annotations

import io
import stat
import struct
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pockestrator.archives import ArchiveRefused, Limits, check_zip, unpack_zip
from pockestrator.controllers.servicedirs import expired_archives
from pockestrator.specs.errors import ErrorCode
from pockestrator.specs.grammar import GrammarError, check_archive_id

DB = b"SQLite format 3\x00" + bytes(200)
LIMITS = Limits(max_bytes=1024 * 1024, max_members=20)


def write_zip(path: Path, members: dict[str, bytes], modes: dict[str, int] | None = None) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            info = zipfile.ZipInfo(name)
            info.compress_type = zipfile.ZIP_DEFLATED
            if modes and name in modes:
                info.create_system = 3
                info.external_attr = modes[name] << 16
            archive.writestr(info, data)
    return path


def test_pocketbase_backup_layout_and_a_zipped_pb_data_unpack_alike(tmp_path: Path) -> None:
    flat = write_zip(tmp_path / "flat.zip", {"data.db": DB, "storage/a/b.txt": b"hi"})
    nested = write_zip(
        tmp_path / "nested.zip",
        {"pb_data/": b"", "pb_data/data.db": DB, "pb_data/storage/a/b.txt": b"hi"},
    )

    for source, target in ((flat, tmp_path / "one"), (nested, tmp_path / "two")):
        unpack_zip(source, target, LIMITS)
        assert (target / "data.db").read_bytes() == DB
        assert (target / "storage/a/b.txt").read_bytes() == b"hi"
        assert stat.S_IMODE(target.stat().st_mode) == 0o700


@pytest.mark.parametrize(
    ("members", "modes", "problem"),
    [
        ({"data.db": DB, "../evil": b"x"}, {}, "path escape"),
        ({"data.db": DB, "a/../../evil": b"x"}, {}, "path escape"),
        ({"data.db": DB, "/etc/cron.d/x": b"x"}, {}, "absolute path"),
        ({"data.db": DB, "C:/x": b"x"}, {}, "drive letter"),
        ({"data.db": DB, "a\\b": b"x"}, {}, "backslash"),
        ({"data.db": DB, "a\nb": b"x"}, {}, "control character"),
        ({"data.db": DB, "link": b"/etc/shadow"}, {"link": stat.S_IFLNK | 0o777}, "symlink"),
        ({"data.db": DB, "dev": b""}, {"dev": stat.S_IFCHR | 0o600}, "special file"),
        ({"data.db": DB, "DATA.DB": DB}, {}, "appears twice"),
        ({"data.db": DB, "f": b"x", "f/g": b"y"}, {}, "inside a file"),
        ({"storage/x": b"x"}, {}, "no data.db"),
        ({f"f{n}": b"" for n in range(30)} | {"data.db": DB}, {}, "members, more than"),
        ({"data.db": DB, "big": bytes(2 * 1024 * 1024)}, {}, "more than 1048576 bytes"),
    ],
    ids=[
        "dotdot",
        "inner-dotdot",
        "absolute",
        "drive",
        "backslash",
        "control",
        "symlink",
        "device",
        "duplicate",
        "file-as-folder",
        "no-database",
        "too-many",
        "too-large",
    ],
)
def test_a_hostile_member_is_refused_naming_it(
    tmp_path: Path, members: dict[str, bytes], modes: dict[str, int], problem: str
) -> None:
    path = write_zip(tmp_path / "x.zip", members, modes)

    with pytest.raises(ArchiveRefused, match=problem):
        unpack_zip(path, tmp_path / "out", LIMITS)

    assert not (tmp_path / "out").exists()


def test_an_encrypted_member_is_refused(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "x.zip", {"data.db": DB})
    data = bytearray(path.read_bytes())
    central = data.rfind(b"PK\x01\x02")
    flags = struct.unpack_from("<H", data, central + 8)[0]
    struct.pack_into("<H", data, central + 8, flags | 0x1)
    path.write_bytes(bytes(data))

    with pytest.raises(ArchiveRefused, match="encrypted"):
        check_zip(path, LIMITS)


def test_a_member_that_inflates_past_what_it_declares_is_refused_and_nothing_is_left(
    tmp_path: Path,
) -> None:
    path = write_zip(tmp_path / "x.zip", {"data.db": DB, "storage/bomb": bytes(500_000)})
    data = bytearray(path.read_bytes())
    # Declare 1000 bytes for the bomb, in its local header and in the central directory.
    local = data.find(b"PK\x03\x04", data.find(b"storage/bomb") - 40)
    struct.pack_into("<I", data, local + 22, 1000)
    central = data.rfind(b"PK\x01\x02")
    struct.pack_into("<I", data, central + 24, 1000)
    path.write_bytes(bytes(data))
    assert sum(m.size for m in check_zip(path, LIMITS)) < 2000

    with pytest.raises(ArchiveRefused):
        unpack_zip(path, tmp_path / "out", LIMITS)

    assert not (tmp_path / "out").exists()


def test_a_data_db_that_is_not_sqlite_is_refused(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "x.zip", {"data.db": b"MZ not a database"})

    with pytest.raises(ArchiveRefused, match="not an SQLite database"):
        unpack_zip(path, tmp_path / "out", LIMITS)
    assert not (tmp_path / "out").exists()


def test_not_a_zip_at_all_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "x.zip"
    path.write_bytes(io.BytesIO(b"hello").getvalue())

    with pytest.raises(ArchiveRefused, match="not a readable ZIP"):
        check_zip(path, LIMITS)


NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("ages_days", "keep", "expired", "next_in_days"),
    [
        ([], 30, [], None),
        ([31, 29, 1], 30, ["a0"], 1),
        ([30], 30, ["a0"], None),
        ([100, 5], 0, [], None),
        ([0.5], 1, [], 0.5),
    ],
)
def test_archive_retention_removes_the_old_and_says_when_the_next_expires(
    ages_days: list[float], keep: float, expired: list[str], next_in_days: float | None
) -> None:
    archived = [(f"a{n}", NOW - timedelta(days=age)) for n, age in enumerate(ages_days)]

    gone, next_at = expired_archives(archived, NOW, keep)

    assert gone == expired
    assert next_at == (None if next_in_days is None else NOW + timedelta(days=next_in_days))


@pytest.mark.parametrize(
    "value", ["blog-20261202T031500Z", "my-app-20261202T031500Z-3", "a-20261202T031500Z"]
)
def test_archive_ids_of_the_archive_are_accepted(value: str) -> None:
    assert check_archive_id(value) == value


@pytest.mark.parametrize(
    "value", ["../blog-20261202T031500Z", "blog", "Blog-20261202T031500Z", "blog-2026", ""]
)
def test_anything_else_is_not_an_archive_id(value: str) -> None:
    with pytest.raises(GrammarError) as refused:
        check_archive_id(value)
    assert refused.value.code is ErrorCode.INVALID_VALUE
    assert refused.value.message == (
        f"{value!r} is not an archive id (<name>-<UTC second>: blog-20261202T031500Z)"
    )


def test_a_refused_archive_id_is_echoed_at_most_80_characters_long() -> None:
    with pytest.raises(GrammarError) as refused:
        check_archive_id("b" * 200)
    assert refused.value.message.startswith(f"'{'b' * 80}' is not an archive id")
