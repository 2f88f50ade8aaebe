"""Client-side encryption of what goes to an off-site target, with a key the operator holds.

Scheme: a STREAM construction (Hoang, Reyhanitabar, Rogaway, Vizár 2015, as in age and
Tink) over AES-256-GCM from ``cryptography`` (pyca: maintained, audited, OpenSSL's AES-NI;
nothing of ours but the framing). An object is

    MAGIC (5) | key id (8) | salt (32) | chunk_0 | chunk_1 | ... | chunk_n

where each chunk is at most ``CHUNK`` bytes of plaintext sealed with a key derived for this
object (HKDF-SHA256 of the operator's key, the salt and the object's name) and the nonce
``counter (11 bytes) | last (1 byte)``. The counter stops chunks being reordered or
dropped, the ``last`` flag stops the object being cut short, the name in the derivation
stops one object being passed off as another, and the key id says "another key" instead
of a generic failure. Plain ``age`` would do too, but its Python binding encrypts whole
buffers; this one streams, so a multipart upload encrypts part by part.

The salt of a snapshot's file is derived from the key and the file's SHA-256 and name, so
encrypting it again gives the same bytes: an interrupted upload resumes where it stopped,
and parts already uploaded are checked by their MD5. The cost: someone who reads the
bucket sees which files are identical across snapshots (sizes are visible anyway). The
manifest gets a random salt.

The key file is 32 random bytes (``head -c 32 /dev/urandom``) or their 64 hex digits,
root's and readable by root alone; it never leaves the host. Lose it and the copies are
noise: keep it off the host too.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from pockestrator.files import SecretNotPrivate, SecretUnreadable, read_private_file

MAGIC = b"PKSE\x01"
KEY_ID_BYTES = 8
SALT_BYTES = 32
HEADER_BYTES = len(MAGIC) + KEY_ID_BYTES + SALT_BYTES
CHUNK = 64 * 1024
TAG_BYTES = 16
_INFO = b"pockestrator snapshot object v1\x00"


class EncryptionError(Exception):
    """A key that cannot be used, or an object that is not what was encrypted."""


def read_key(path: Path) -> bytes:
    """The operator's key from a root-only file: 32 bytes, raw or as 64 hex digits."""
    raw = read_root_only(path, "encryption key")
    text = raw.strip()
    if len(raw) == 32:
        return raw
    if len(text) == 64:
        try:
            return bytes.fromhex(text.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            pass
    raise EncryptionError(f"{path}: an encryption key is 32 random bytes or 64 hex digits")


def read_root_only(path: Path, what: str) -> bytes:
    """A secret from a file that only its owner, the agent's user, can read or change."""
    try:
        return read_private_file(path)
    except SecretUnreadable as exc:
        raise EncryptionError(f"{path}: the {what} file cannot be read: {exc}") from None
    except SecretNotPrivate:
        raise EncryptionError(
            f"{path}: the {what} file must be the agent's own (root's) with mode 0600 or "
            "stricter; nobody else may read a secret"
        ) from None


def key_id(key: bytes) -> bytes:
    return hmac.new(key, b"pockestrator key id", hashlib.sha256).digest()[:KEY_ID_BYTES]


def file_salt(key: bytes, name: str, sha256: str) -> bytes:
    """The same salt for the same file under the same name (see the module: resumption)."""
    return hmac.new(key, f"file\x00{name}\x00{sha256}".encode(), hashlib.sha256).digest()


def random_salt() -> bytes:
    return os.urandom(SALT_BYTES)


def encrypted_size(size: int) -> int:
    chunks = max(1, -(-size // CHUNK))
    return HEADER_BYTES + size + chunks * TAG_BYTES


def _object_key(key: bytes, salt: bytes, name: str) -> AESGCM:
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=_INFO + name.encode())
    return AESGCM(derived.derive(key))


def _nonce(counter: int, last: bool) -> bytes:
    return counter.to_bytes(11, "big") + (b"\x01" if last else b"\x00")


def _rechunk(pieces: Iterable[bytes], size: int) -> Iterator[bytes]:
    """``pieces`` as chunks of exactly ``size`` bytes (the last one shorter, maybe empty)."""
    buffer = bytearray()
    for piece in pieces:
        buffer += piece
        while len(buffer) > size:  # keep one chunk back: the last one is sealed differently
            yield bytes(buffer[:size])
            del buffer[:size]
    yield bytes(buffer)


def encrypt(key: bytes, name: str, salt: bytes, plaintext: Iterable[bytes]) -> Iterator[bytes]:
    """The encrypted object, piece by piece: the header, then one sealed chunk at a time."""
    cipher = _object_key(key, salt, name)
    yield MAGIC + key_id(key) + salt
    chunks = _rechunk(plaintext, CHUNK)
    current = next(chunks)
    counter = 0
    for following in chunks:
        yield cipher.encrypt(_nonce(counter, False), current, None)
        current = following
        counter += 1
    yield cipher.encrypt(_nonce(counter, True), current, None)


def decrypt(key: bytes, name: str, ciphertext: Iterable[bytes]) -> Iterator[bytes]:
    """The plaintext of an object ``encrypt`` made under ``name``; ``EncryptionError`` when
    it was cut, reordered, changed, renamed or made with another key."""
    pieces = iter(ciphertext)
    header = bytearray()
    for piece in pieces:
        header += piece
        if len(header) >= HEADER_BYTES:
            break
    if len(header) < HEADER_BYTES or not header.startswith(MAGIC):
        raise EncryptionError(f"{name} is not an object encrypted by pockestrator")
    if header[len(MAGIC) : len(MAGIC) + KEY_ID_BYTES] != key_id(key):
        raise EncryptionError(f"{name} was encrypted with another key")
    salt = bytes(header[len(MAGIC) + KEY_ID_BYTES : HEADER_BYTES])
    cipher = _object_key(key, salt, name)
    rest = bytes(header[HEADER_BYTES:])
    chunks = _rechunk(_prepend(rest, pieces), CHUNK + TAG_BYTES)
    current = next(chunks)
    counter = 0
    try:
        for following in chunks:
            yield cipher.decrypt(_nonce(counter, False), current, None)
            current = following
            counter += 1
        yield cipher.decrypt(_nonce(counter, True), current, None)
    except InvalidTag:
        raise EncryptionError(
            f"{name} does not decrypt: it was changed, cut short or reordered"
        ) from None


def _prepend(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    yield first
    yield from rest
