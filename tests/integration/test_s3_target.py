"""An S3 target against a real S3-compatible server (``rclone serve s3``), not a mock.

Snapshots here are folders with a real manifest (random files, one of several parts), so
the multipart path, the read-back, resumption and encryption are what is exercised.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pockestrator.agent.sandbox import free_port
from pockestrator.controllers.snapshots import SnapshotFolder
from pockestrator.controllers.snapshots.folder import Snapshot
from pockestrator.controllers.snapshots.manifest import build_manifest
from pockestrator.controllers.snapshots.s3 import S3Store, TargetError
from pockestrator.files import HashedFile
from tests.testbed.s3 import S3Server
from tests.testbed.waiting import wait_until

MIB = 1024 * 1024
NOW = datetime(2026, 12, 2, 4, 0, tzinfo=UTC)


def make_snapshot(root: Path, service: str, snapshot_id: str, big: int = 13 * MIB) -> Snapshot:
    folder = SnapshotFolder(root)
    partial = folder.begin_as(service, snapshot_id)
    files = {
        "pb_data/data.db": os.urandom(big),
        "pb_data/auxiliary.db": os.urandom(4096),
        "pb_data/storage/abc/photo.png": os.urandom(70_000),
        "pb_hooks/main.pb.js": b"// hooks\n",
    }
    entries = []
    for path, body in files.items():
        target = partial.path / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(body)
        entries.append(HashedFile(path, len(body), hashlib.sha256(body).hexdigest()))
    manifest = build_manifest(service, snapshot_id, "manual", NOW, "0.40.6", entries)
    return folder.commit(partial, manifest)


def store(server: S3Server, **overrides: object) -> S3Store:
    return S3Store("offsite", server.target(part_size=5 * MIB, **overrides))


def key_file(root: Path) -> Path:
    path = root / "key"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as writer:
        writer.write(os.urandom(32))
    return path


def test_an_uploaded_snapshot_is_listed_and_comes_back_byte_for_byte(
    s3_server: S3Server, tmp_path: Path
) -> None:
    snapshot = make_snapshot(tmp_path / "here", "alpha", "20261202T040000Z")
    target = store(s3_server)

    uploaded = target.upload(snapshot.path, snapshot.manifest, NOW)

    assert uploaded.files == 4 and uploaded.resumed_files == 0
    assert uploaded.bytes_sent == snapshot.manifest.size
    assert [m.snapshot_id for m in target.list("alpha")] == ["20261202T040000Z"]
    assert target.list("alpha")[0] == snapshot.manifest
    elsewhere = SnapshotFolder(tmp_path / "elsewhere")
    partial = elsewhere.begin_as("alpha", "20261202T040000Z")
    target.fetch(snapshot.manifest, partial)
    back = elsewhere.commit(partial, snapshot.manifest)
    for entry in snapshot.manifest.files:
        assert (back.path / entry.path).read_bytes() == (snapshot.path / entry.path).read_bytes()


def test_an_object_changed_on_the_server_fails_the_fetch_naming_the_file(
    s3_server: S3Server, tmp_path: Path
) -> None:
    snapshot = make_snapshot(tmp_path / "here", "beta", "20261202T040000Z", big=MIB)
    target = store(s3_server)
    target.upload(snapshot.path, snapshot.manifest, NOW)
    stored = s3_server.data / s3_server.bucket / "pockestrator/beta/20261202T040000Z"
    victim = stored / "pb_data/auxiliary.db"
    body = bytearray(victim.read_bytes())
    body[100] ^= 0x01
    victim.write_bytes(bytes(body))

    partial = SnapshotFolder(tmp_path / "elsewhere").begin_as("beta", "20261202T040000Z")
    with pytest.raises(TargetError, match=r"pb_data/auxiliary\.db"):
        target.fetch(snapshot.manifest, partial)


def test_a_deleted_snapshot_is_gone_from_the_list_and_the_bucket(
    s3_server: S3Server, tmp_path: Path
) -> None:
    snapshot = make_snapshot(tmp_path / "here", "gamma", "20261202T040000Z", big=MIB)
    target = store(s3_server)
    target.upload(snapshot.path, snapshot.manifest, NOW)

    target.delete("gamma", "20261202T040000Z")

    assert target.list("gamma") == []
    assert not [key for key in s3_server.objects() if key.startswith("pockestrator/gamma/")]


def test_an_encrypted_upload_holds_no_plaintext_and_decrypts_only_with_the_key(
    s3_server: S3Server, tmp_path: Path
) -> None:
    snapshot = make_snapshot(tmp_path / "here", "delta", "20261202T040000Z", big=6 * MIB)
    target = store(s3_server, prefix="sealed/", encryption_key_file=key_file(tmp_path))

    target.upload(snapshot.path, snapshot.manifest, NOW)

    stored = s3_server.data / s3_server.bucket / "sealed/delta/20261202T040000Z"
    hook = (stored / "pb_hooks/main.pb.js").read_bytes()
    assert b"// hooks" not in hook
    assert b"pb_data/data.db" not in (stored / "manifest.json").read_bytes()
    assert (stored / "pb_data/data.db").read_bytes()[:4096] != (
        snapshot.path / "pb_data/data.db"
    ).read_bytes()[:4096]
    assert target.list("delta") == [snapshot.manifest]
    other_key = tmp_path / "other"
    other_key.mkdir()
    stranger = store(s3_server, prefix="sealed/", encryption_key_file=key_file(other_key))
    with pytest.raises(TargetError, match="another key"):
        stranger.list("delta")
    partial = SnapshotFolder(tmp_path / "elsewhere").begin_as("delta", "20261202T040000Z")
    with pytest.raises(TargetError, match="another key"):
        stranger.fetch(snapshot.manifest, partial)


UPLOADER = r"""
import sys
from datetime import UTC, datetime
from pathlib import Path
from pockestrator.config import S3Target
from pockestrator.controllers.snapshots.folder import SnapshotFolder
from pockestrator.controllers.snapshots.s3 import S3Store
target = S3Target.model_validate_json(sys.argv[1])
snapshot = SnapshotFolder(Path(sys.argv[2])).get(sys.argv[3], sys.argv[4])
S3Store("offsite", target).upload(snapshot.path, snapshot.manifest, datetime.now(UTC))
"""


async def test_an_upload_killed_half_way_is_never_listed_and_the_next_one_resumes(
    s3_server: S3Server, tmp_path: Path
) -> None:
    snapshot = make_snapshot(tmp_path / "here", "epsilon", "20261202T040000Z", big=40 * MIB)
    settings = s3_server.target(part_size=5 * MIB)
    uploads = s3_server.data / s3_server.bucket
    process = await asyncio.create_subprocess_exec(
        *[
            sys.executable,
            "-c",
            UPLOADER,
            settings.model_dump_json(),
            str(tmp_path / "here"),
            "epsilon",
            "20261202T040000Z",
        ]
    )
    target = S3Store("offsite", settings)

    async def some_parts_are_there() -> bool:
        try:
            listed = target.client().list_multipart_uploads(Bucket=s3_server.bucket)
        except Exception:  # not up yet
            return False
        for upload in listed.get("Uploads", []):
            parts = target.client().list_parts(
                Bucket=s3_server.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
            )
            if len(parts.get("Parts", [])) >= 2:
                return True
        return False

    assert await wait_until(some_parts_are_there, timeout=60, interval=0.01)
    process.send_signal(signal.SIGKILL)
    await process.wait()
    assert target.list("epsilon") == []
    assert uploads.is_dir()

    resumed = target.upload(snapshot.path, snapshot.manifest, NOW)

    assert resumed.resumed_files >= 1
    assert resumed.bytes_sent < snapshot.manifest.size
    assert [m.snapshot_id for m in target.list("epsilon")] == ["20261202T040000Z"]


def test_a_target_nobody_answers_on_is_an_error_naming_it_not_a_hang(
    s3_server: S3Server, tmp_path: Path
) -> None:
    closed = free_port()
    target = store(s3_server, endpoint=f"http://127.0.0.1:{closed}")
    with pytest.raises(TargetError, match="target offsite") as raised:
        target.list("alpha")
    assert s3_server.secret not in str(raised.value)
