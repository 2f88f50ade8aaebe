"""``sized_sha256`` and ``read_chunks``: the one count-and-hash a snapshot's manifest, its
verification and an off-site read-back all use, so they agree on what "the same file" is."""

from __future__ import annotations

import hashlib
import io

import pytest

from pockestrator.files import HASH_CHUNK, read_chunks, sha256_stream, sized_sha256

EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


@pytest.mark.parametrize(
    ("chunks", "size", "sha256"),
    [
        ([], 0, EMPTY_SHA256),
        ([b""], 0, EMPTY_SHA256),
        ([b"abc"], 3, hashlib.sha256(b"abc").hexdigest()),
        ([b"a", b"", b"bc"], 3, hashlib.sha256(b"abc").hexdigest()),  # split anywhere: same
        ([b"x" * 10, b"y" * 5], 15, hashlib.sha256(b"x" * 10 + b"y" * 5).hexdigest()),
    ],
)
def test_sized_sha256_counts_and_hashes_every_chunk_in_order(
    chunks: list[bytes], size: int, sha256: str
) -> None:
    assert sized_sha256(chunks) == (size, sha256)


def test_sized_sha256_depends_on_the_order_of_the_chunks() -> None:
    assert sized_sha256([b"ab", b"c"]) != sized_sha256([b"c", b"ab"])


@pytest.mark.parametrize("length", [0, 1, HASH_CHUNK - 1, HASH_CHUNK, HASH_CHUNK + 1])
def test_read_chunks_gives_back_everything_left_in_chunks_no_larger_than_hash_chunk(
    length: int,
) -> None:
    data = bytes(range(256)) * (length // 256) + bytes(length % 256)
    reader = io.BytesIO(b"skipped" + data)
    reader.read(len(b"skipped"))
    chunks = list(read_chunks(reader))
    assert b"".join(chunks) == data
    assert all(0 < len(chunk) <= HASH_CHUNK for chunk in chunks)
    assert len(chunks) == -(-length // HASH_CHUNK)


def test_sha256_stream_is_the_hash_half_of_sized_sha256() -> None:
    data = b"pocketbase" * 1000
    assert sha256_stream(io.BytesIO(data)) == hashlib.sha256(data).hexdigest()
    assert sized_sha256(read_chunks(io.BytesIO(data))) == (
        len(data),
        sha256_stream(io.BytesIO(data)),
    )
