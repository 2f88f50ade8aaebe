"""The account store: API tokens, admin accounts and dashboard sessions.

Accounts say who may call the API; they are not desired state, so they live apart from the
specs store, in the same database file (``pockestrator.database``: one connection
discipline, one migration history). Secrets are never stored: a token or session is
random, handed out once, and kept only as its SHA-256 (a lookup by hash, compared in
constant time all the same); admin passwords arrive here already hashed (Argon2id,
``accounts.passwords``). Every timestamp and a session's expiry come from the store's
``Clock``, and so does the time of the login throttle the store carries
(``login_throttle``, ``accounts.throttle``): it is kept in memory, not here, because it
counts e-mails no account has and client addresses, alike.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import secrets
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from pockestrator.accounts.throttle import LoginThrottle
from pockestrator.clock import SYSTEM_CLOCK, Clock
from pockestrator.database import (
    Database,
    DatabaseFull,
    Row,
    StoreDatabase,
    iso,
    parse_stored_time,
)
from pockestrator.specs.store.rows import record_of

TOKEN_PREFIX = "pks_"  # noqa: S105 (a public prefix, not a secret)
SESSION_PREFIX = "pkss_"


class AdminExists(Exception):
    """An admin with this e-mail (compared without case) exists already."""


@dataclass(frozen=True)
class TokenRecord:
    id: str
    name: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


@dataclass(frozen=True)
class AdminRecord:
    """An admin account. ``failed_logins`` and ``last_failed_at`` are the per-account
    count of older agents, still in the table; no login counts there any more."""

    id: str
    email: str
    password_hash: str
    created_at: datetime
    failed_logins: int
    last_failed_at: datetime | None


def _hash_secret(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


class AccountStore:
    """Tokens, admins and sessions on one database; safe to share between threads.

    Given a path it opens (and on ``close`` closes) the database itself; given an open
    ``Database`` it shares it and leaves closing it to whoever opened it.
    """

    def __init__(self, database: StoreDatabase | Path, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self._owns_database = isinstance(database, Path)
        self._database = Database(database) if isinstance(database, Path) else database
        self._clock = clock
        self.path = self._database.path
        self.login_throttle = LoginThrottle(clock)

    def close(self) -> None:
        if self._owns_database:
            self._database.close()

    def _now(self) -> str:
        stamp = iso(self._clock.now())
        assert stamp is not None
        return stamp

    # -- API tokens --------------------------------------------------------------------

    def create_token(self, name: str) -> tuple[str, TokenRecord]:
        """A new random token; the plaintext is returned here once and stored only hashed."""
        plaintext = TOKEN_PREFIX + secrets.token_urlsafe(32)
        token_id = secrets.token_hex(6)
        with self._database.write() as db:
            row = db.execute(
                "INSERT INTO api_tokens (id, name, token_hash, created_at) VALUES (?, ?, ?, ?)"
                " RETURNING *",
                (token_id, name, _hash_secret(plaintext), self._now()),
            ).fetchone()
        return plaintext, _token(row)

    def get_token(self, token_id: str) -> TokenRecord | None:
        rows = self._database.read("SELECT * FROM api_tokens WHERE id = ?", (token_id,))
        return _token(rows[0]) if rows else None

    def list_tokens(self) -> list[TokenRecord]:
        rows = self._database.read("SELECT * FROM api_tokens ORDER BY created_at")
        return [_token(row) for row in rows]

    def authenticate_token(self, plaintext: str) -> TokenRecord | None:
        """The live token with this plaintext, or None; marks it used."""
        if not plaintext.startswith(TOKEN_PREFIX):
            return None
        digest = _hash_secret(plaintext)
        rows = self._database.read("SELECT * FROM api_tokens WHERE token_hash = ?", (digest,))
        # The lookup is by hash; the comparison is constant-time all the same.
        if not rows or not hmac.compare_digest(rows[0]["token_hash"], digest):
            return None
        if rows[0]["revoked_at"] is not None:
            return None
        # Bookkeeping only: a full disk must not lock every client out of the API, which
        # is where it is reported (the system health's DATABASE_FULL).
        with contextlib.suppress(DatabaseFull), self._database.write() as db:
            db.execute(
                "UPDATE api_tokens SET last_used_at = ? WHERE id = ?",
                (self._now(), rows[0]["id"]),
            )
        return self.get_token(rows[0]["id"])

    def revoke_token(self, token_id: str) -> bool:
        """True when this call revoked it (False: unknown or revoked before)."""
        with self._database.write() as db:
            cursor = db.execute(
                "UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                (self._now(), token_id),
            )
            return cursor.rowcount == 1

    # -- admin accounts ----------------------------------------------------------------

    def create_admin(self, email: str, password_hash: str) -> AdminRecord:
        """A new admin; use ``accounts.passwords.create_admin`` to check and hash first."""
        admin_id = secrets.token_hex(6)
        with self._database.write() as db:
            try:
                row = db.execute(
                    "INSERT INTO admins (id, email, password_hash, created_at) VALUES (?, ?, ?, ?)"
                    " RETURNING *",
                    (admin_id, email, password_hash, self._now()),
                ).fetchone()
            except sqlite3.IntegrityError:  # PostgreSQL's ConstraintViolated is one
                raise AdminExists(email) from None
        return _admin(row)

    def set_admin_password(self, email: str, password_hash: str) -> bool:
        with self._database.write() as db:
            cursor = db.execute(
                "UPDATE admins SET password_hash = ?, failed_logins = 0 "
                "WHERE lower(email) = lower(?)",
                (password_hash, email),
            )
            return cursor.rowcount == 1

    def get_admin(self, email: str) -> AdminRecord | None:
        """By e-mail, compared without case."""
        rows = self._database.read("SELECT * FROM admins WHERE lower(email) = lower(?)", (email,))
        return _admin(rows[0]) if rows else None

    # -- dashboard sessions ------------------------------------------------------------

    def create_session(self, admin_id: str, ttl: timedelta) -> tuple[str, datetime]:
        """A new session token (shown once) and when it expires; expired ones are swept."""
        plaintext = SESSION_PREFIX + secrets.token_urlsafe(32)
        now = self._clock.now()
        expires = now + ttl
        with self._database.write() as db:
            db.execute("DELETE FROM sessions WHERE expires_at < ?", (iso(now),))
            db.execute(
                "INSERT INTO sessions (token_hash, admin_id, created_at, expires_at) "
                "VALUES (?, ?, ?, ?)",
                (_hash_secret(plaintext), admin_id, iso(now), iso(expires)),
            )
        return plaintext, expires

    def authenticate_session(self, plaintext: str) -> AdminRecord | None:
        """The admin of a live session, or None (unknown, expired or revoked)."""
        if not plaintext.startswith(SESSION_PREFIX):
            return None
        rows = self._database.read(
            "SELECT admins.*, sessions.expires_at AS session_expires FROM sessions "
            "JOIN admins ON admins.id = sessions.admin_id WHERE sessions.token_hash = ?",
            (_hash_secret(plaintext),),
        )
        if not rows or parse_stored_time(rows[0]["session_expires"]) <= self._clock.now():
            return None
        return _admin(rows[0])

    def revoke_session(self, plaintext: str) -> None:
        with self._database.write() as db:
            db.execute("DELETE FROM sessions WHERE token_hash = ?", (_hash_secret(plaintext),))


def _token(row: Row) -> TokenRecord:
    return record_of(TokenRecord, row)


def _admin(row: Row) -> AdminRecord:
    return record_of(AdminRecord, row)
