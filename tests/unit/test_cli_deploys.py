"""``pockestrator deploy DIR`` packs the app folders reproducibly and sends nothing else."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from pockestrator.apparchive import read_app_archive
from pockestrator.client.deploys import pack_app
from pockestrator.client.http import ClientError


def _app(root: Path) -> Path:
    (root / "pb_hooks").mkdir(parents=True)
    (root / "pb_hooks" / "main.pb.js").write_text("// hook")
    (root / "pb_public" / "css").mkdir(parents=True)
    (root / "pb_public" / "css" / "site.css").write_text("body{}")
    (root / "README.md").write_text("not sent")
    return root


def test_the_same_folder_packs_to_the_same_bytes_whatever_its_times(tmp_path: Path) -> None:
    app = _app(tmp_path / "app")
    first = pack_app(app)
    os.utime(app / "pb_hooks" / "main.pb.js", (1, 1))
    assert pack_app(app) == first


def test_only_the_app_folders_are_packed_and_the_agent_accepts_them(tmp_path: Path) -> None:
    packed = pack_app(_app(tmp_path / "app"))
    with tarfile.open(fileobj=io.BytesIO(packed)) as tar:
        names = tar.getnames()
    assert "README.md" not in names
    content = read_app_archive(io.BytesIO(packed))
    assert [f.path for f in content.files] == ["pb_hooks/main.pb.js", "pb_public/css/site.css"]


def test_a_link_in_the_app_is_refused_before_anything_is_sent(tmp_path: Path) -> None:
    app = _app(tmp_path / "app")
    (app / "pb_hooks" / "shadow.pb.js").symlink_to("/etc/shadow")
    with pytest.raises(ClientError, match="not a regular file"):
        pack_app(app)


def test_a_folder_without_app_folders_is_refused(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ClientError, match="has none of"):
        pack_app(tmp_path / "empty")
