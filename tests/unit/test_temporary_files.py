"""``remove_temporary_files``: only ``write_atomic``'s leftovers of the caller's own names."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pockestrator.files import remove_temporary_files, write_atomic

UNITS = "*-pocketbase.service"


@pytest.mark.parametrize(
    ("name", "removed"),
    [
        (".blog-pocketbase.service.k3j_x9a2.tmp", True),  # ours, cut off before its rename
        (".blog-pocketbase.service.k3j_x9a2.tmp.tmp", False),  # not mkstemp's shape
        (".blog-pocketbase.service.k3j.tmp", False),  # too short a random part
        (".blog-pocketbase.service.K3J_X9A2.tmp", False),  # mkstemp writes lower case
        (".nginx.service.k3j_x9a2.tmp", False),  # another program's unit
        ("blog-pocketbase.service.k3j_x9a2.tmp", False),  # no leading dot
        ("blog-pocketbase.service", False),  # a finished file
        (".blog-pocketbase.service", False),
    ],
)
def test_only_temporary_files_of_the_callers_names_are_removed(
    tmp_path: Path, name: str, removed: bool
) -> None:
    (tmp_path / name).write_text("[Unit]\n")
    assert remove_temporary_files(tmp_path, UNITS) == ([tmp_path / name] if removed else [])
    assert (tmp_path / name).exists() is not removed


def test_what_write_atomic_leaves_when_its_rename_never_happens_is_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The shape is write_atomic's own: the two must not drift apart."""
    left: list[str] = []
    monkeypatch.setattr(os, "replace", lambda source, _target: left.append(source))
    write_atomic(tmp_path / "blog-pocketbase.service", "[Unit]\n")  # "killed" before its rename
    monkeypatch.undo()
    assert len(left) == 1
    assert remove_temporary_files(tmp_path, UNITS) == [Path(left[0])]
    assert list(tmp_path.iterdir()) == []


def test_a_directory_or_symlink_of_that_shape_is_left_alone(tmp_path: Path) -> None:
    folder = tmp_path / ".a-pocketbase.service.abcdefgh.tmp"
    folder.mkdir()
    victim = tmp_path / "victim"
    victim.write_text("keep")
    (tmp_path / ".b-pocketbase.service.abcdefgh.tmp").symlink_to(victim)
    assert remove_temporary_files(tmp_path, UNITS) == []
    assert folder.is_dir() and victim.read_text() == "keep"


def test_a_missing_folder_has_nothing_to_remove(tmp_path: Path) -> None:
    assert remove_temporary_files(tmp_path / "absent", UNITS) == []
