"""How the API tells who calls it: bearer tokens, and password checks off the event loop.

Two kinds of bearer token, both kept in the account store only as SHA-256 hashes
(``pockestrator.accounts``):
- API tokens (``pks_...``) for scripts and the CLI: long-lived, named, revocable; created
  with ``AccountStore.create_token`` (by ``pockestrator up``, the CLI or ``POST /tokens``).
- Sessions (``pkss_...``) for the dashboard: ``POST /auth/login`` with an admin's e-mail
  and password returns one that expires after ``SESSION_TTL``.

Failed logins are throttled per account (``accounts.throttle``): a locked account is
answered 429 with ``Retry-After`` and its password is not even checked; the server never
sleeps on a request. Hashing (Argon2id, ``accounts.passwords``) runs in worker threads, at
most ``HASH_CONCURRENCY`` at a time, so a burst of logins cannot pin the event loop or take
all the memory.
"""

from __future__ import annotations

import asyncio
import math
import re
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Literal

from pockestrator.accounts.passwords import hash_password, verify_password

SESSION_TTL = timedelta(hours=12)
HASH_CONCURRENCY = 2

_BEARER = re.compile(r"[A-Za-z0-9._~+/=-]{1,512}", re.ASCII)


@dataclass(frozen=True)
class Principal:
    """The caller of one request: an API token or an admin's dashboard session."""

    kind: Literal["token", "session"]
    id: str
    name: str
    bearer: str = field(repr=False)


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
