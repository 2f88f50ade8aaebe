"""Who may call the API: API tokens, admin accounts, dashboard sessions and their rules.

Accounts are not desired state, so they are not in ``specs``: ``store`` keeps them (in the
agent's database file, beside the specs store), ``passwords`` hashes admin passwords and
says what an admin may be, ``throttle`` says which failed logins make the API refuse further
attempts from an address (per e-mail and per address, alike for unknown e-mails). The
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
    ADDRESS_BURST,
    ADDRESS_REFILL_SECONDS,
    THROTTLE_BASE_SECONDS,
    THROTTLE_CAP_SECONDS,
    THROTTLE_FORGET_SECONDS,
    LoginThrottle,
    lockout_seconds,
)

__all__ = [
    "ADDRESS_BURST",
    "ADDRESS_REFILL_SECONDS",
    "MIN_PASSWORD_LENGTH",
    "PASSWORD_MAX",
    "SESSION_PREFIX",
    "THROTTLE_BASE_SECONDS",
    "THROTTLE_CAP_SECONDS",
    "THROTTLE_FORGET_SECONDS",
    "TOKEN_PREFIX",
    "AccountStore",
    "AdminExists",
    "AdminRecord",
    "LoginThrottle",
    "TokenRecord",
    "create_admin",
    "hash_password",
    "lockout_seconds",
    "needs_rehash",
    "verify_password",
]
