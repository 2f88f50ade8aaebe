"""Who may call the API: API tokens, admin accounts, dashboard sessions and their rules.

Accounts are not desired state, so they are not in ``specs``: ``store`` keeps them (in the
agent's database file, beside the specs store), ``passwords`` hashes admin passwords and
says what an admin may be, ``throttle`` says how long failed logins lock an account. The
API authenticates with them; the CLI (``admin create``) and ``pockestrator up`` create
admins and tokens through them.
"""

from __future__ import annotations

from pockestrator.accounts.passwords import (
    MIN_PASSWORD_LENGTH,
    PASSWORD_MAX,
    create_admin,
    hash_password,
    needs_rehash,
    verify_password,
)
from pockestrator.accounts.store import (
    SESSION_PREFIX,
    TOKEN_PREFIX,
    AccountStore,
    AdminExists,
    AdminRecord,
    TokenRecord,
)
from pockestrator.accounts.throttle import (
    THROTTLE_BASE_SECONDS,
    THROTTLE_CAP_SECONDS,
    locked_for,
    lockout_seconds,
)

__all__ = [
    "MIN_PASSWORD_LENGTH",
    "PASSWORD_MAX",
    "SESSION_PREFIX",
    "THROTTLE_BASE_SECONDS",
    "THROTTLE_CAP_SECONDS",
    "TOKEN_PREFIX",
    "AccountStore",
    "AdminExists",
    "AdminRecord",
    "TokenRecord",
    "create_admin",
    "hash_password",
    "locked_for",
    "lockout_seconds",
    "needs_rehash",
    "verify_password",
]
