"""Who may call the API: bearer tokens, admin passwords (Argon2id) and login throttling.

Two kinds of bearer token, both kept in the store only as SHA-256 hashes:
- API tokens (``pks_...``) for scripts and the CLI: long-lived, named, revocable; created
  with ``Store.create_token`` (by ``pockestrator up``, the CLI or ``POST /tokens``).
- Sessions (``pkss_...``) for the dashboard: ``POST /auth/login`` with an admin's e-mail
  and password returns one that expires after ``SESSION_TTL``.

Admin passwords are hashed with Argon2id (argon2-cffi's defaults, a memory-hard profile
of RFC 9106). Failed logins are throttled per account: after ``n`` failures the account
refuses attempts for ``2**n * 100 ms`` (capped), answered 429 with ``Retry-After``; the
server never sleeps on a request, and a locked account's password is not even checked.
Hashing runs in worker threads, at most ``HASH_CONCURRENCY`` at a time, so a burst of
logins cannot pin the event loop or take all the memory.
"""

from __future__ import annotations

import asyncio
import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from pockestrator.specs.grammar import check_email
from pockestrator.specs.store import AdminRecord, Store

SESSION_TTL = timedelta(hours=12)
THROTTLE_BASE_SECONDS = 0.1
THROTTLE_CAP_SECONDS = 300.0
HASH_CONCURRENCY = 2
MIN_PASSWORD_LENGTH = 12
PASSWORD_MAX = 1024
TOKEN_MAX = 512

_hasher = PasswordHasher()  # Argon2id
_BEARER = re.compile(r"[A-Za-z0-9._~+/=-]{1,512}", re.ASCII)


@dataclass(frozen=True)
class Principal:
    """The caller of one request: an API token or an admin's dashboard session."""

    kind: Literal["token", "session"]
    id: str
    name: str
    bearer: str = field(repr=False)


def hash_password(password: str) -> str:
    """An Argon2id hash (PHC string) of ``password``; what ``Store.create_admin`` keeps."""
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """Constant-time check of ``password`` against its hash; False for any malformed hash."""
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    try:
        return _hasher.check_needs_rehash(password_hash)
    except (InvalidHashError, ValueError):
        return True


def create_admin(store: Store, email: str, password: str) -> AdminRecord:
    """Create an admin account (for the CLI): e-mail checked, password long enough, hashed."""
    if len(password) < MIN_PASSWORD_LENGTH or len(password) > PASSWORD_MAX:
        raise ValueError(
            f"the password must have {MIN_PASSWORD_LENGTH} to {PASSWORD_MAX} characters"
        )
    return store.create_admin(check_email(email), hash_password(password))


class PasswordChecks:
    """Hashing and verifying in worker threads, at most ``concurrency`` at a time."""

    def __init__(self, concurrency: int = HASH_CONCURRENCY) -> None:
        self._slots = asyncio.Semaphore(concurrency)
        self._dummy_hash: str | None = None

    async def verify(self, password_hash: str | None, password: str) -> bool:
        """``verify_password`` off the loop; an unknown account costs the same time."""
        async with self._slots:
            if password_hash is None:
                if self._dummy_hash is None:
                    self._dummy_hash = await asyncio.to_thread(hash_password, "no such account")
                await asyncio.to_thread(verify_password, self._dummy_hash, password)
                return False
            return await asyncio.to_thread(verify_password, password_hash, password)

    async def hash(self, password: str) -> str:
        async with self._slots:
            return await asyncio.to_thread(hash_password, password)


def lockout_seconds(failures: int) -> float:
    """How long an account refuses logins after ``failures`` consecutive failures."""
    if failures <= 0:
        return 0.0
    if failures >= 32:  # 2**32 * 0.1 s is far past the cap; avoid huge floats
        return THROTTLE_CAP_SECONDS
    return min(THROTTLE_CAP_SECONDS, THROTTLE_BASE_SECONDS * float(2**failures))


def locked_for(failures: int, last_failed_at: datetime | None, now: datetime) -> float:
    """Seconds until the account accepts a login attempt again (0 when it does now)."""
    if failures <= 0 or last_failed_at is None:
        return 0.0
    unlocks = last_failed_at + timedelta(seconds=lockout_seconds(failures))
    return max(0.0, (unlocks - now).total_seconds())


def retry_after_header(seconds: float) -> str:
    """Retry-After takes whole seconds; round up so a client never retries too early."""
    return str(max(1, math.ceil(seconds)))


def bearer_token(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not _BEARER.fullmatch(token):
        return None
    return token
