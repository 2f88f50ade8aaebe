"""Admin passwords: Argon2id hashes, and the rules an admin's e-mail and password follow.

Hashing uses argon2-cffi's defaults, a memory-hard profile of RFC 9106. ``create_admin`` is
how the CLI (``pockestrator admin create``), ``pockestrator up`` and tests make an admin:
the e-mail checked by the spec grammar, the password between ``MIN_PASSWORD_LENGTH`` and
``PASSWORD_MAX`` characters, only its hash stored.
"""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from pockestrator.accounts.store import AccountStore, AdminRecord
from pockestrator.specs.grammar import check_email

MIN_PASSWORD_LENGTH = 12
PASSWORD_MAX = 1024

_hasher = PasswordHasher()  # Argon2id


def hash_password(password: str) -> str:
    """An Argon2id hash (PHC string) of ``password``; what ``AccountStore.create_admin``
    keeps."""
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


def create_admin(accounts: AccountStore, email: str, password: str) -> AdminRecord:
    """Create an admin account: e-mail checked, password long enough, hashed.

    Raises ``ValueError`` for a password out of bounds, ``GrammarError`` for an e-mail that
    is not one and ``AdminExists`` for a taken one.
    """
    if len(password) < MIN_PASSWORD_LENGTH or len(password) > PASSWORD_MAX:
        raise ValueError(
            f"the password must have {MIN_PASSWORD_LENGTH} to {PASSWORD_MAX} characters"
        )
    return accounts.create_admin(check_email(email), hash_password(password))
