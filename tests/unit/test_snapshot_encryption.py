"""Client-side encryption of off-site objects: round trips, and every tampering refused."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pockestrator.controllers.snapshots import encryption
from pockestrator.controllers.snapshots.encryption import (
    CHUNK,
    EncryptionError,
    decrypt,
    encrypt,
    encrypted_size,
)

KEY = bytes(range(32))
SALT = b"s" * 32


def sealed(plain: bytes, name: str = "svc/id/pb_data/data.db") -> bytes:
    return b"".join(encrypt(KEY, name, SALT, [plain]))


def opened(body: bytes, name: str = "svc/id/pb_data/data.db", key: bytes = KEY) -> bytes:
    return b"".join(decrypt(key, name, [body]))


@given(st.binary(max_size=3 * CHUNK + 7), st.integers(min_value=1, max_value=CHUNK * 2))
def test_whatever_is_encrypted_decrypts_to_itself_however_it_is_cut(
    plain: bytes, piece: int
) -> None:
    body = sealed(plain)
    assert len(body) == encrypted_size(len(plain))
    pieces = [body[i : i + piece] for i in range(0, len(body), piece)]
    assert b"".join(decrypt(KEY, "svc/id/pb_data/data.db", pieces)) == plain


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK])
def test_sizes_at_the_chunk_edges_round_trip(size: int) -> None:
    plain = os.urandom(size)
    assert opened(sealed(plain)) == plain


def test_the_same_file_under_the_same_salt_encrypts_to_the_same_bytes() -> None:
    assert sealed(b"x" * 100_000) == sealed(b"x" * 100_000)  # what resuming an upload needs


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        (lambda b: b[: len(b) - (CHUNK + 16)], "changed, cut short"),  # last chunk dropped
        (lambda b: b[:-1], "changed, cut short"),
        (lambda b: b[:100] + bytes([b[100] ^ 1]) + b[101:], "changed, cut short"),
        (lambda b: b[:45] + b[45 + CHUNK + 16 : 45 + 2 * (CHUNK + 16)] + b[45:], "changed"),
        (lambda b: b"PKSE\x02" + b[5:], "not an object encrypted"),
        (lambda b: b[:10], "not an object encrypted"),
    ],
)
def test_a_changed_cut_or_reordered_object_is_refused(tamper: object, message: str) -> None:
    body = sealed(os.urandom(3 * CHUNK + 5))
    with pytest.raises(EncryptionError, match=message):
        opened(tamper(body))  # type: ignore[operator]


def test_an_object_renamed_or_opened_with_another_key_is_refused() -> None:
    body = sealed(b"secret records")
    with pytest.raises(EncryptionError, match="changed"):
        opened(body, name="svc/other/pb_data/data.db")
    with pytest.raises(EncryptionError, match="another key"):
        opened(body, key=bytes(32))


def test_a_key_file_must_be_root_only_and_32_bytes_or_64_hex_digits(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.write_bytes(KEY)
    raw.chmod(0o600)
    assert encryption.read_key(raw) == KEY
    text = tmp_path / "hex"
    text.write_text(KEY.hex() + "\n")
    text.chmod(0o400)
    assert encryption.read_key(text) == KEY
    raw.chmod(0o640)
    with pytest.raises(EncryptionError, match="mode 0600"):
        encryption.read_key(raw)
    short = tmp_path / "short"
    short.write_bytes(b"too short")
    short.chmod(0o600)
    with pytest.raises(EncryptionError, match="32 random bytes"):
        encryption.read_key(short)
    with pytest.raises(EncryptionError, match="cannot be read"):
        encryption.read_key(tmp_path / "missing")
