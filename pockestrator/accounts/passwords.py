"""Admin passwords: Argon2id hashes, and the rules an admin's e-mail and password follow.

Hashing uses argon2-cffi's defaults, a memory-hard profile of RFC 9106; the config's
``password_hashing`` may choose OWASP's minimum instead (under a third of the memory, an
eighth of the CPU: small hosts, the test bed), and a hash of the other kind is made again at
its owner's next login. ``create_admin`` is how the CLI (``pockestrator admin create``),
``pockestrator up`` and tests make an admin: the e-mail checked by the spec grammar, the
password between ``MIN_PASSWORD_LENGTH`` and ``PASSWORD_MAX`` characters, only its hash
stored.
"""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from pockestrator.accounts.store import AccountStore, AdminRecord
from pockestrator.config.agent import PasswordHashing
from pockestrator.specs.grammar import check_email

MIN_PASSWORD_LENGTH = 12
PASSWORD_MAX = 1024

# Argon2id, by the config's ``password_hashing``: RFC 9106's second recommendation
# (argon2-cffi's default: 64 MiB, 3 passes, 4 lanes) or OWASP's minimum (19 MiB, 2 passes).
HASHERS: dict[PasswordHashing, PasswordHasher] = {
    "rfc9106-low-memory": PasswordHasher(),
    "owasp-minimum": PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1),
}
DEFAULT_HASHING: PasswordHashing = "rfc9106-low-memory"


def hash_password(password: str, hashing: PasswordHashing = DEFAULT_HASHING) -> str:
    """An Argon2id hash (PHC string) of ``password``; what ``AccountStore.create_admin``
    keeps."""
    return HASHERS[hashing].hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """Constant-time check of ``password`` against its hash (whose own parameters say how);
    False for any malformed hash."""
    try:
        return HASHERS[DEFAULT_HASHING].verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str, hashing: PasswordHashing = DEFAULT_HASHING) -> bool:
    """Whether the hash was not made with ``hashing``'s parameters (or is malformed)."""
    try:
        return HASHERS[hashing].check_needs_rehash(password_hash)
    except (InvalidHashError, ValueError):
        return True


def create_admin(
    accounts: AccountStore,
    email: str,
    password: str,
    hashing: PasswordHashing = DEFAULT_HASHING,
) -> AdminRecord:
    """Create an admin account: e-mail checked, password long enough, hashed.

    Raises ``ValueError`` for a password out of bounds, ``GrammarError`` for an e-mail that
    is not one and ``AdminExists`` for a taken one.
    """
    if len(password) < MIN_PASSWORD_LENGTH or len(password) > PASSWORD_MAX:
        raise ValueError(
            f"the password must have {MIN_PASSWORD_LENGTH} to {PASSWORD_MAX} characters"
        )
    return accounts.create_admin(check_email(email), hash_password(password, hashing))
