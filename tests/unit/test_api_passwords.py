"""Admin passwords (Argon2id), the login throttle's policy and bearer token parsing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pockestrator.accounts import (
    THROTTLE_CAP_SECONDS,
    AccountStore,
    AdminExists,
    create_admin,
    hash_password,
    locked_for,
    lockout_seconds,
    needs_rehash,
    verify_password,
)
from pockestrator.api.auth import PasswordChecks, bearer_token, retry_after_header
from pockestrator.specs.grammar import GrammarError


def test_passwords_are_hashed_with_argon2id_and_verified() -> None:
    hashed = hash_password("correct horse battery")
    assert hashed.startswith("$argon2id$")
    assert "correct horse" not in hashed
    assert verify_password(hashed, "correct horse battery")
    assert not verify_password(hashed, "correct horse battery!")
    assert not needs_rehash(hashed)


@pytest.mark.parametrize("bad_hash", ["", "plaintext", "$argon2id$v=19$broken"])
def test_a_malformed_hash_never_verifies(bad_hash: str) -> None:
    assert not verify_password(bad_hash, "anything")
    assert needs_rehash(bad_hash)


async def test_checks_in_threads_verify_and_refuse_unknown_accounts() -> None:
    checks = PasswordChecks()
    hashed = await checks.hash("a long enough password")
    assert await checks.verify(hashed, "a long enough password")
    assert not await checks.verify(hashed, "wrong")
    assert not await checks.verify(None, "a long enough password")


def test_admins_are_created_with_a_checked_email_and_a_hashed_password(tmp_path: Path) -> None:
    accounts = AccountStore(tmp_path / "state.db")
    try:
        admin = create_admin(accounts, "root@example.com", "a long enough password")
        assert verify_password(admin.password_hash, "a long enough password")
        with pytest.raises(ValueError, match="12 to 1024 characters"):
            create_admin(accounts, "short@example.com", "short")
        with pytest.raises(GrammarError):
            create_admin(accounts, "not an email", "a long enough password")
        with pytest.raises(AdminExists):
            create_admin(accounts, "ROOT@example.com", "another long password")
    finally:
        accounts.close()


def test_lockouts_double_with_each_failure_up_to_a_cap() -> None:
    assert lockout_seconds(0) == 0
    assert lockout_seconds(1) == pytest.approx(0.2)
    assert lockout_seconds(2) == pytest.approx(0.4)
    assert lockout_seconds(5) == pytest.approx(3.2)
    assert lockout_seconds(30) == THROTTLE_CAP_SECONDS
    assert lockout_seconds(10**6) == THROTTLE_CAP_SECONDS


def test_an_account_is_locked_only_until_its_delay_has_passed() -> None:
    failed = datetime(2025, 7, 31, 12, 0, tzinfo=UTC)
    assert locked_for(3, failed, failed) == pytest.approx(0.8)
    assert locked_for(3, failed, failed + timedelta(seconds=0.5)) == pytest.approx(0.3)
    assert locked_for(3, failed, failed + timedelta(seconds=1)) == 0
    assert locked_for(0, failed, failed) == 0
    assert locked_for(3, None, failed) == 0


@pytest.mark.parametrize(("seconds", "header"), [(0.2, "1"), (1.0, "1"), (1.01, "2"), (0, "1")])
def test_retry_after_is_whole_seconds_rounded_up(seconds: float, header: str) -> None:
    assert retry_after_header(seconds) == header


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer pks_abc-DEF_123", "pks_abc-DEF_123"),
        ("bearer  pks_x ", "pks_x"),
        ("Bearer", None),
        ("Basic dXNlcjpwYXNz", None),
        ("Bearer two tokens", None),
        ("Bearer pks_\u00e9", None),
        ("Bearer " + "a" * 513, None),
        (None, None),
    ],
)
def test_only_a_well_formed_bearer_header_yields_a_token(
    header: str | None, token: str | None
) -> None:
    assert bearer_token(header) == token
