"""Admin passwords (Argon2id), the login throttle's policy and bearer token parsing."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from pockestrator.accounts import (
    THROTTLE_CAP_SECONDS,
    AccountStore,
    AdminExists,
    create_admin,
    hash_password,
    lockout_seconds,
    needs_rehash,
    verify_password,
)
from pockestrator.accounts.throttle import bucket_locked_for, locked_for
from pockestrator.api import auth
from pockestrator.api.auth import PasswordChecks, bearer_token, retry_after_header
from pockestrator.config import AgentConfig
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


async def test_an_unknown_account_costs_one_check_of_the_same_parameters_from_the_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    checks = PasswordChecks()
    known = await checks.hash("a long enough password")
    hashed: list[str] = []
    checked: list[str] = []

    def counting_hash(password: str) -> str:
        hashed.append(password)
        return hash_password(password)

    def counting_verify(password_hash: str, password: str) -> bool:
        checked.append(password_hash)
        return verify_password(password_hash, password)

    monkeypatch.setattr(auth, "hash_password", counting_hash)
    monkeypatch.setattr(auth, "verify_password", counting_verify)
    assert not await checks.verify(None, "a guess")  # the first unknown account
    assert not await checks.verify(known, "a guess")
    assert hashed == []  # nothing more than the one check, not even the first time
    parameters = [password_hash.split("$")[1:4] for password_hash in checked]
    assert parameters == [["argon2id", "v=19", "m=65536,t=3,p=4"]] * 2


def test_owasp_minimum_hashes_carry_its_parameters_and_each_kind_wants_the_other_redone() -> None:
    cheap = hash_password("correct horse battery", "owasp-minimum")
    default = hash_password("correct horse battery")
    assert cheap.split("$")[1:4] == ["argon2id", "v=19", "m=19456,t=2,p=1"]
    assert default.split("$")[1:4] == ["argon2id", "v=19", "m=65536,t=3,p=4"]
    assert verify_password(cheap, "correct horse battery")
    assert not verify_password(cheap, "correct horse battery!")
    assert not needs_rehash(cheap, "owasp-minimum") and needs_rehash(cheap)
    assert not needs_rehash(default) and needs_rehash(default, "owasp-minimum")


async def test_checks_configured_for_owasp_minimum_hash_and_fake_unknown_accounts_with_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    checks = PasswordChecks(hashing="owasp-minimum")
    known = await checks.hash("a long enough password")
    assert known.split("$")[3] == "m=19456,t=2,p=1"
    assert not checks.needs_rehash(known)
    assert checks.needs_rehash(hash_password("a long enough password"))
    checked: list[str] = []

    def counting_verify(password_hash: str, password: str) -> bool:
        checked.append(password_hash)
        return verify_password(password_hash, password)

    monkeypatch.setattr(auth, "verify_password", counting_verify)
    assert not await checks.verify(None, "a guess")
    assert await checks.verify(known, "a long enough password")
    assert [password_hash.split("$")[3] for password_hash in checked] == ["m=19456,t=2,p=1"] * 2


def test_the_config_names_one_of_two_hashings_and_defaults_to_rfc_9106() -> None:
    assert AgentConfig().password_hashing == "rfc9106-low-memory"
    assert AgentConfig(password_hashing="owasp-minimum").password_hashing == "owasp-minimum"
    with pytest.raises(ValidationError, match="password_hashing"):
        AgentConfig(password_hashing="md5")  # type: ignore[arg-type]


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


def test_an_email_is_refused_at_an_address_only_until_its_delay_has_passed() -> None:
    failed = 5_000_000  # microseconds of the monotonic clock
    assert locked_for(3, failed, failed) == 800_000
    assert locked_for(3, failed, failed + 500_000) == 300_000
    assert locked_for(3, failed, failed + 1_000_000) == 0
    assert locked_for(0, failed, failed) == 0


def test_an_address_has_room_for_a_failure_while_at_most_nine_refills_are_owed() -> None:
    now, refill = 7_000_000, 300_000_000
    assert bucket_locked_for(now, now) == 0
    assert bucket_locked_for(now + 9 * refill, now) == 0
    assert bucket_locked_for(now + 10 * refill, now) == refill
    assert bucket_locked_for(now + 10 * refill, now + refill - 1) == 1


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
