"""The snapshot's one-pass copy (``controllers.background_copy``): the bytes arrive
unchanged, the hash is theirs, and the process reports a failure with its errno."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pockestrator.controllers import background_copy
from pockestrator.controllers.background_copy import WRITEBACK_CHUNK, copy_hashed
from pockestrator.controllers.snapshots.take import COPIER


@pytest.mark.parametrize(
    "size",
    [0, 1, 1024 * 1024, WRITEBACK_CHUNK - 1, WRITEBACK_CHUNK, 2 * WRITEBACK_CHUNK + 12345],
)
def test_copy_hashed_copies_every_byte_and_hashes_what_it_copied(tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    source = tmp_path / "staged.db"
    source.write_bytes(data)
    target = tmp_path / "snapshot.db"
    with source.open("rb") as reader, target.open("wb") as writer:
        copied, digest = copy_hashed(reader, writer)
    assert target.read_bytes() == data
    assert (copied, digest) == (size, hashlib.sha256(data).hexdigest())


def test_copy_hashed_without_sync_file_range_still_copies_every_byte(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(background_copy, "_SYNC_FILE_RANGE", None)
    data = os.urandom(3 * WRITEBACK_CHUNK + 7)
    source, target = tmp_path / "staged.db", tmp_path / "snapshot.db"
    source.write_bytes(data)
    with source.open("rb") as reader, target.open("wb") as writer:
        assert copy_hashed(reader, writer) == (len(data), hashlib.sha256(data).hexdigest())
    assert target.read_bytes() == data


def _run_copier(reader: int, writer: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", COPIER, str(reader), str(writer)],
        pass_fds=(reader, writer),
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_the_copier_process_copies_between_the_descriptors_it_is_given(tmp_path: Path) -> None:
    data = os.urandom(WRITEBACK_CHUNK + 99)
    source, target = tmp_path / "staged.db", tmp_path / "snapshot.db"
    source.write_bytes(data)
    reader = os.open(source, os.O_RDONLY)
    writer = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        done = _run_copier(reader, writer)
    finally:
        os.close(reader)
        os.close(writer)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    assert target.read_bytes() == data


def test_the_copier_process_reports_a_failed_write_with_its_errno(tmp_path: Path) -> None:
    source = tmp_path / "staged.db"
    source.write_bytes(b"x" * 100)
    reader = os.open(source, os.O_RDONLY)
    writer = os.open(source, os.O_RDONLY)  # not writable: the write fails with EBADF
    try:
        done = _run_copier(reader, writer)
    finally:
        os.close(reader)
        os.close(writer)
    assert done.returncode == 1
    assert json.loads(done.stdout)["errno"] == errno.EBADF


_IOPRIO_GET = {"x86_64": 252, "aarch64": 31, "riscv64": 31}


@pytest.mark.skipif(os.uname().machine not in _IOPRIO_GET, reason="ioprio_get's number")
def test_the_copier_puts_itself_in_the_idle_io_class() -> None:
    # In a child, so the test process keeps its own class; the kernel's answer, not ours.
    probe = (
        "import ctypes, os\n"
        "from pockestrator.controllers.background_copy import idle_io\n"
        "assert idle_io()\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        f"print(libc.syscall({_IOPRIO_GET.get(os.uname().machine, 0)}, 1, 0))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=False, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) == background_copy.IOPRIO_IDLE


def test_a_released_scratch_copy_is_copied_whole_and_left_a_hole(tmp_path: Path) -> None:
    data = os.urandom(3 * background_copy.RELEASE_CHUNK + 4321)
    source, target = tmp_path / "staged.db", tmp_path / "snapshot.db"
    source.write_bytes(data)
    with source.open("r+b") as reader, target.open("wb") as writer:
        assert background_copy.releasable(reader.fileno())
        copied = copy_hashed(reader, writer, release=True)
    assert copied == (len(data), hashlib.sha256(data).hexdigest())
    assert target.read_bytes() == data
    # Its size kept, its blocks given back: no page of what was read is left to write out.
    assert source.stat().st_size == len(data)
    assert source.stat().st_blocks * 512 <= background_copy.RELEASE_CHUNK + 1024 * 1024


def test_a_scratch_copy_with_a_second_name_or_opened_read_only_is_never_released(
    tmp_path: Path,
) -> None:
    source = tmp_path / "staged.db"
    source.write_bytes(b"x" * 4096)
    with source.open("rb") as reader:
        assert not background_copy.releasable(reader.fileno())
    os.link(source, tmp_path / "planted-link")
    with source.open("r+b") as reader:
        assert not background_copy.releasable(reader.fileno())


def test_a_libc_call_this_libc_lacks_is_none_and_the_copier_falls_back() -> None:
    assert background_copy._libc("pockestrator_no_such_call", background_copy.ctypes.c_int) is None


def test_the_copiers_libc_calls_are_found_with_their_argument_types() -> None:
    ctypes = background_copy.ctypes
    found = {
        "sync_file_range": background_copy._SYNC_FILE_RANGE,
        "fallocate64": background_copy._FALLOCATE,
    }
    assert {name: getattr(call, "argtypes", None) for name, call in found.items()} == {
        "sync_file_range": (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint),
        "fallocate64": (ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64),
    }
    assert all(getattr(call, "restype", None) is ctypes.c_int for call in found.values())
