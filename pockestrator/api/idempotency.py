"""``Idempotency-Key`` on creating writes: a retry gets the first answer, exactly.

A ``POST /services`` that timed out on the client may have succeeded; retried, it would
get 409 and the one-time superuser password would be lost. With the same
``Idempotency-Key`` and the same request, a retry within the window
(``idempotency_window``, 24 h by default) gets the first answer again: status, body (the
password included) and ``Location``, with ``Idempotent-Replayed: true``. The same key with
another request is 422 ``IDEMPOTENCY_KEY_REUSED``; while the first is still running, 409
``IDEMPOTENCY_KEY_IN_USE``. Only successful (2xx) answers are kept: a refused create can be
fixed and sent again with its key.

What the store keeps (``specs.store.idempotency``) reveals nothing: the row is found by a
hash of the caller and the key, and the answer is sealed with AES-256-GCM under a key
derived (HKDF) from the Idempotency-Key itself, which the agent never stores. So only the
client that holds the key can have the answer back, through this API, within the window;
reading the database gives ciphertext. Keys are scoped to the caller (token or admin) and
the operation's path: two clients cannot collide, or replay each other's answers.

The pure parts (``check_key``, ``lookup_of``, ``body_hash``, ``seal``/``unseal``) are
table-tested in tests/unit/test_idempotency.py; ``idempotency_middleware`` wires them
around the operations declared ``idempotent`` (``api.routing.Operation``).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiohttp import web
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from pockestrator.api.errors import ApiError, field_error
from pockestrator.specs.errors import ErrorCode

if TYPE_CHECKING:
    from pockestrator.specs.store import Store

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
KEY_MAX = 255
# Printable ASCII without space: a UUID, a ULID, any token a client makes.
KEY_PATTERN = "^[!-~]{1,255}$"
# The answer's headers a replay repeats (the rest the server adds again itself).
KEPT_HEADERS = ("Content-Type", "Location", "ETag")
_SALT_BYTES = 16
_NONCE_BYTES = 12


def check_key(value: str | None) -> str | None:
    """The header's value when it is a usable key, None when absent; 400 otherwise."""
    if value is None:
        return None
    if not 1 <= len(value) <= KEY_MAX or any(not 33 <= ord(c) <= 126 for c in value):
        raise field_error(
            400,
            ErrorCode.INVALID_VALUE,
            HEADER,
            f"{HEADER} must be 1 to {KEY_MAX} printable ASCII characters without spaces",
        )
    return value


def lookup_of(caller: str, method: str, path: str, key: str) -> str:
    """The row's name: a hash of who asked, which operation, and the key."""
    text = "\0".join((caller, method, path, key))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def body_hash(query: str, content_type: str, body: bytes) -> str:
    """What makes two requests with one key "the same": query, media type and body."""
    digest = hashlib.sha256()
    for part in (query.encode("utf-8"), content_type.encode("utf-8")):
        digest.update(len(part).to_bytes(8, "big") + part)
    digest.update(body)
    return digest.hexdigest()


def _cipher(key: str, caller: str, salt: bytes) -> AESGCM:
    derived = HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=salt,
        info=b"pockestrator idempotent answer\0" + caller.encode("utf-8"),
    )
    return AESGCM(derived.derive(key.encode("utf-8")))


def seal(key: str, caller: str, answer: dict[str, object]) -> bytes:
    """``answer`` (status, headers, body) encrypted under a key derived from ``key``."""
    salt, nonce = os.urandom(_SALT_BYTES), os.urandom(_NONCE_BYTES)
    plain = json.dumps(answer, separators=(",", ":")).encode("utf-8")
    return salt + nonce + _cipher(key, caller, salt).encrypt(nonce, plain, None)


def unseal(key: str, caller: str, sealed: bytes) -> dict[str, object] | None:
    """The answer ``seal`` made, or None when it does not open with this key."""
    salt = sealed[:_SALT_BYTES]
    nonce = sealed[_SALT_BYTES : _SALT_BYTES + _NONCE_BYTES]
    try:
        plain = _cipher(key, caller, salt).decrypt(
            nonce, sealed[_SALT_BYTES + _NONCE_BYTES :], None
        )
    except (InvalidTag, ValueError):
        return None
    answer = json.loads(plain)
    return answer if isinstance(answer, dict) else None


def answer_of(response: web.Response) -> dict[str, object]:
    """What a replay must repeat of a response."""
    body = response.body
    text = body.decode("utf-8") if isinstance(body, bytes | bytearray) else ""
    headers = {name: response.headers[name] for name in KEPT_HEADERS if name in response.headers}
    return {"status": response.status, "headers": headers, "body": text}


def replay(answer: dict[str, object]) -> web.Response:
    headers = dict(answer.get("headers") or {})  # type: ignore[call-overload]
    content_type = headers.pop("Content-Type", "application/json; charset=utf-8")
    response = web.Response(
        status=int(answer["status"]),  # type: ignore[call-overload]
        body=str(answer.get("body") or "").encode("utf-8"),
        headers={**headers, REPLAYED_HEADER: "true"},
    )
    response.headers["Content-Type"] = content_type
    return response


def reused() -> ApiError:
    return field_error(
        422,
        ErrorCode.IDEMPOTENCY_KEY_REUSED,
        HEADER,
        f"This {HEADER} was used for a different request; use a new key for a new request",
    )


def in_use() -> ApiError:
    return field_error(
        409,
        ErrorCode.IDEMPOTENCY_KEY_IN_USE,
        HEADER,
        f"A request with this {HEADER} is still running; retry when it has answered",
    )


# Where an upload's handler finds its call (a streamed body is hashed as it is received).
CALL = "pockestrator.idempotency"


@dataclass
class Call:
    """One request sent with an Idempotency-Key: claims its key once the request's
    fingerprint is known, and settles it with the answer (kept when 2xx, freed otherwise)."""

    store: Store
    window: float
    key: str
    caller: str
    lookup: str = ""
    claimed: bool = False

    def claim(self, fingerprint: str) -> web.Response | None:
        """None when this request runs; the first answer when it is a retry of it."""
        found = self.store.claim_idempotency(self.lookup, fingerprint, self.window)
        if found.state == "mismatch":
            raise reused()
        if found.state == "pending":
            raise in_use()
        if found.state == "replay":
            answer = unseal(self.key, self.caller, found.sealed or b"")
            if answer is None:  # cannot happen with the same key and caller; never guess
                raise reused()
            return replay(answer)
        self.claimed = True
        return None

    def settle(self, response: web.StreamResponse | None) -> None:
        if not self.claimed:
            return
        self.claimed = False
        if isinstance(response, web.Response) and 200 <= response.status < 300:
            sealed = seal(self.key, self.caller, answer_of(response))
            self.store.finish_idempotency(self.lookup, response.status, sealed)
        else:
            self.store.release_idempotency(self.lookup)


def claim_upload(request: web.Request, digest: str) -> web.Response | None:
    """For an upload's handler, once the body is in: the first answer when the request is a
    retry under its Idempotency-Key (None: go on). No key, no claim."""
    call = request.get(CALL)
    if not isinstance(call, Call):
        return None
    return call.claim(body_hash(request.query_string, request.content_type, digest.encode()))
