"""The spec folder's periodic rescan syncs again only what changed, on either side.

A real store (SQLite in a temporary folder) and real files; ``scan`` is what the agent's
resync calls each round. A file is synced when ``sync_file`` of the store is called for it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pockestrator.specs.model import parse_spec
from pockestrator.specs.rescan_memo import CleanFiles, stat_key
from pockestrator.specs.store import Store, file_owner
from pockestrator.specs.yamldir import SpecDirectory

GOOD = 'project_name: {name}\nport: {port}\npocketbase_version: "0.29.0"\n'


class Counted:
    """A spec directory over a real store that counts the files each scan synced."""

    def __init__(self, tmp_path: Path) -> None:
        self.folder = tmp_path / "specs"
        self.folder.mkdir()
        self.store = Store(tmp_path / "db.sqlite")
        self.source = SpecDirectory(self.folder, self.store, "example.test")
        self.synced: list[str] = []
        sync_file = self.store.sync_file

        def counting(path: str, specs: list[object]) -> object:
            self.synced.append(Path(path).name)
            return sync_file(path, specs)  # type: ignore[arg-type]

        self.store.sync_file = counting  # type: ignore[method-assign,assignment]

    def write(self, name: str, port: int) -> Path:
        path = self.folder / f"{name}.yaml"
        path.write_text(GOOD.format(name=name, port=port))
        return path

    def scan(self) -> list[str]:
        self.synced.clear()
        self.source.scan()
        return sorted(self.synced)


@pytest.fixture
def counted(tmp_path: Path) -> Counted:
    return Counted(tmp_path)


def test_a_second_scan_of_unchanged_files_syncs_none_of_them(counted: Counted) -> None:
    counted.write("one", 9101)
    counted.write("two", 9102)
    assert counted.scan() == ["one.yaml", "two.yaml"]
    assert counted.scan() == []
    assert {r.name for r in counted.store.list_services()[0]} == {"one", "two"}


def test_a_file_edited_between_scans_is_synced_again(counted: Counted) -> None:
    path = counted.write("one", 9101)
    counted.write("two", 9102)
    counted.scan()
    path.write_text(GOOD.format(name="one", port=9111))
    assert counted.scan() == ["one.yaml"]
    record = counted.store.get_service("one")
    assert record is not None and record.spec.port == 9111


def test_a_service_changed_in_the_store_is_given_its_files_spec_again(counted: Counted) -> None:
    path = counted.write("one", 9101)
    counted.scan()
    changed = parse_spec(
        {"project_name": "one", "port": 9199, "pocketbase_version": "0.29.0"}, "example.test"
    )
    counted.store.replace_spec("one", changed, file_owner(str(path)))
    assert counted.scan() == ["one.yaml"]
    record = counted.store.get_service("one")
    assert record is not None and record.spec.port == 9101


def test_a_file_with_a_problem_is_synced_at_every_scan(counted: Counted) -> None:
    counted.write("one", 9101)
    (counted.folder / "taken.yaml").write_text(GOOD.format(name="one", port=9102))
    counted.scan()
    assert counted.source.issues, "the second file's name conflict was not reported"
    assert counted.scan() == ["taken.yaml"]


def test_a_removed_file_takes_its_services_at_the_next_scan(counted: Counted) -> None:
    path = counted.write("one", 9101)
    counted.scan()
    path.unlink()
    counted.scan()
    assert counted.store.get_service("one") is None


def test_an_event_sync_makes_the_next_scan_look_again(counted: Counted) -> None:
    path = counted.write("one", 9101)
    counted.scan()
    counted.source.sync_paths([str(path)])  # what an inotify event does
    assert counted.scan() == ["one.yaml"]
    assert counted.scan() == []


def test_clean_files_compares_the_files_stat_and_its_services_rows(tmp_path: Path) -> None:
    path = tmp_path / "a.yaml"
    path.write_text("x")
    owner = file_owner(str(path))
    rows = {owner: frozenset({("a", 1, "vm", "t1")})}
    clean = CleanFiles()
    assert clean.stale([str(path)], rows) == [str(path)]  # never synced
    clean.synced({str(path): stat_key(path)}, rows)
    cases = [
        (rows, [], "unchanged"),
        ({owner: frozenset({("a", 2, "vm", "t2")})}, [str(path)], "its row changed"),
        ({}, [str(path)], "its service is gone from the store"),
    ]
    for found, expected, why in cases:
        assert clean.stale([str(path)], found) == expected, why
    os.utime(path, ns=(1, 1))
    assert clean.stale([str(path)], rows) == [str(path)], "its mtime changed"
    clean.synced({str(path): None}, rows)
    assert clean.stale([str(path)], rows) == [str(path)], "a file with problems"
