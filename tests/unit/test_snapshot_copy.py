"""The snapshot's one-pass copy: the bytes arrive unchanged and the hash is theirs."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from pockestrator.controllers.snapshots.take import WRITEBACK_CHUNK, copy_hashed


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
