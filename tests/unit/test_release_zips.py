"""The test mirror's release zips: PocketBase's layout, the same bytes for the same binary,
kept once built so that no worker deflates a 30 MB binary again."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import pytest

from tests.testbed import mirror


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "zips"
    monkeypatch.setattr(mirror, "ZIP_CACHE", folder)
    return folder


def big_binary() -> bytes:
    return b"\x7fELF" + os.urandom(mirror.CACHED_FROM)


def test_a_release_zip_has_the_executable_binary_at_the_top_and_its_changelog() -> None:
    archive = zipfile.ZipFile(io.BytesIO(mirror.build_release_zip(b"\x7fELF tiny", "1.2.3")))
    assert archive.namelist() == ["pocketbase", "CHANGELOG.md", "LICENSE.md"]
    assert archive.read("pocketbase") == b"\x7fELF tiny"
    assert archive.getinfo("pocketbase").external_attr >> 16 == 0o100755
    assert archive.getinfo("pocketbase").compress_type == zipfile.ZIP_DEFLATED
    assert archive.read("CHANGELOG.md") == b"# v1.2.3\n"


def test_a_big_binary_is_zipped_once_and_read_back_byte_for_byte(cache: Path) -> None:
    binary = big_binary()
    first = mirror.build_release_zip(binary, "1.2.3")
    (kept,) = cache.glob("*.zip")
    assert kept.name.startswith("pocketbase_1.2.3_") and kept.read_bytes() == first
    assert mirror.build_release_zip(binary, "1.2.3") == first
    assert first == mirror._deflated_release(binary, "1.2.3")  # what a new build makes


def test_each_version_and_each_binary_has_a_zip_of_its_own(cache: Path) -> None:
    binary, other = big_binary(), big_binary()
    zips = {
        mirror.build_release_zip(binary, "1.2.3"),
        mirror.build_release_zip(binary, "1.2.4"),
        mirror.build_release_zip(other, "1.2.3"),
    }
    assert len(zips) == 3 and len(list(cache.glob("*.zip"))) == 3
    assert not list(cache.glob(".*.partial"))


def test_a_small_binary_is_not_kept(cache: Path) -> None:
    mirror.build_release_zip(b"\x7fELF tiny", "1.2.3")
    assert not cache.exists() or not list(cache.glob("*.zip"))
