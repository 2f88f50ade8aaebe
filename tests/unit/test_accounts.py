"""The account store: API tokens, admins and dashboard sessions, with time from a clock;
and the login throttle it carries, per e-mail and client address and per client address."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from pockestrator.accounts.store import AccountStore, AdminExists
from pockestrator.accounts.throttle import (
    ADDRESS_BURST,
    ADDRESS_REFILL_SECONDS,
    THROTTLE_CAP_SECONDS,
    THROTTLE_FORGET_SECONDS,
    LoginThrottle,
)
from pockestrator.clock import FAKE_EPOCH, FakeClock
from pockestrator.specs.model import parse_spec
from pockestrator.specs.store import Store
from tests.testbed.store_backends import StoreBackend


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def accounts(store_backend: StoreBackend, clock: FakeClock) -> AccountStore:
    return AccountStore(store_backend.open(), clock=clock)


class TestTokens:
    def test_a_token_is_shown_once_and_stored_only_as_a_hash(
        self, accounts: AccountStore, store_backend: StoreBackend
    ) -> None:
        plaintext, record = accounts.create_token("ci")
        assert plaintext.startswith("pks_") and len(plaintext) == 4 + 43
        assert plaintext not in store_backend.every_row()
        if store_backend.name == "sqlite":  # nor in any page of the file or its log
            path = store_backend.path
            raw = path.read_bytes() + Path(str(path) + "-wal").read_bytes()
            assert plaintext.encode() not in raw
        assert record.name == "ci" and record.created_at == FAKE_EPOCH
        assert record.last_used_at is None and record.revoked_at is None

    def test_a_token_authenticates_and_records_when_it_was_used(
        self, accounts: AccountStore, clock: FakeClock
    ) -> None:
        plaintext, record = accounts.create_token("ci")
        clock.advance(60)
        found = accounts.authenticate_token(plaintext)
        assert found is not None and found.id == record.id
        assert found.last_used_at == FAKE_EPOCH + timedelta(seconds=60)

    @pytest.mark.parametrize("offered", ["Bearer nonsense", "pks_", "pkss_whatever"])
    def test_anything_but_a_known_token_is_refused(
        self, accounts: AccountStore, offered: str
    ) -> None:
        plaintext, _record = accounts.create_token("ci")
        assert accounts.authenticate_token(offered) is None
        assert accounts.authenticate_token(plaintext[:-1] + "x") is None

    def test_a_revoked_token_no_longer_authenticates_and_revokes_once(
        self, accounts: AccountStore, clock: FakeClock
    ) -> None:
        plaintext, record = accounts.create_token("ci")
        clock.advance(5)
        assert accounts.revoke_token(record.id) is True
        assert accounts.authenticate_token(plaintext) is None
        assert accounts.revoke_token(record.id) is False
        assert accounts.revoke_token("unknown") is False
        revoked = accounts.get_token(record.id)
        assert revoked is not None and revoked.revoked_at == FAKE_EPOCH + timedelta(seconds=5)

    def test_tokens_are_listed_oldest_first(self, accounts: AccountStore, clock: FakeClock) -> None:
        for name in ("first", "second", "third"):
            accounts.create_token(name)
            clock.advance(1)
        assert [token.name for token in accounts.list_tokens()] == ["first", "second", "third"]


class TestAdmins:
    def test_an_email_is_one_account_whatever_its_case(self, accounts: AccountStore) -> None:
        created = accounts.create_admin("root@example.test", "hash")
        with pytest.raises(AdminExists):
            accounts.create_admin("ROOT@Example.test", "other hash")
        found = accounts.get_admin("Root@EXAMPLE.test")
        assert found == created
        assert found.created_at == FAKE_EPOCH and found.failed_logins == 0

    def test_a_new_password_hash_replaces_the_old_one(self, accounts: AccountStore) -> None:
        admin = accounts.create_admin("root@example.test", "old hash")
        assert accounts.set_admin_password("root@example.test", "new hash") is True
        assert accounts.set_admin_password("nobody@example.test", "new hash") is False
        changed = accounts.get_admin(admin.email)
        assert changed is not None and changed.password_hash == "new hash"


EMAIL = "root@example.test"
HERE, THERE = "203.0.113.7", "198.51.100.9"


@pytest.fixture
def throttle(clock: FakeClock) -> LoginThrottle:
    return LoginThrottle(clock)


def fail_in_a_row(
    throttle: LoginThrottle, clock: FakeClock, times: int, email: str = EMAIL, at: str = HERE
) -> None:
    """``times`` failures of ``email`` at ``at``, each as soon as the throttle lets it in."""
    for _ in range(times):
        wait = throttle.admit(email, at)
        if wait:
            clock.advance(wait)
            assert throttle.admit(email, at) == 0.0


class TestLoginThrottle:
    def test_each_failure_doubles_how_long_its_email_is_refused_at_its_address(
        self, throttle: LoginThrottle, clock: FakeClock
    ) -> None:
        assert throttle.admit(EMAIL, HERE) == 0.0
        assert throttle.admit(EMAIL, HERE) == 0.2
        clock.advance(0.15)
        assert throttle.admit(EMAIL, HERE) == 0.05
        clock.advance(0.05)
        assert throttle.admit(EMAIL, HERE) == 0.0
        assert throttle.admit(EMAIL, HERE) == 0.4
        clock.advance(0.399999)
        assert throttle.admit(EMAIL, HERE) == 0.000001
        clock.advance(0.000001)
        assert throttle.admit(EMAIL, HERE) == 0.0
        assert throttle.admit(EMAIL, HERE) == 0.8

    def test_refused_attempts_count_for_nothing(
        self, throttle: LoginThrottle, clock: FakeClock
    ) -> None:
        assert throttle.admit(EMAIL, HERE) == 0.0
        for _ in range(50):
            assert throttle.admit(EMAIL, HERE) == 0.2
        clock.advance(0.2)
        assert throttle.admit(EMAIL, HERE) == 0.0
        assert throttle.admit(EMAIL, HERE) == 0.4  # the second failure, not the 52nd

    def test_an_email_is_one_whatever_its_case_and_whether_an_account_has_it(
        self, throttle: LoginThrottle
    ) -> None:
        # The throttle never asks the store: "no account" cannot change its answer.
        assert throttle.admit("Root@Example.TEST", HERE) == 0.0
        assert throttle.admit("root@example.test", HERE) == 0.2
        assert throttle.admit("other@example.test", HERE) == 0.0

    def test_failures_at_one_address_leave_the_same_email_free_at_another(
        self, throttle: LoginThrottle, clock: FakeClock
    ) -> None:
        fail_in_a_row(throttle, clock, 12, at=HERE)
        assert throttle.admit(EMAIL, HERE) == THROTTLE_CAP_SECONDS
        assert throttle.admit(EMAIL, THERE) == 0.0

    def test_an_attacker_failing_every_five_minutes_stays_locked_and_alone(
        self, throttle: LoginThrottle, clock: FakeClock
    ) -> None:
        for _ in range(30):
            assert throttle.admit(EMAIL, HERE) == 0.0
            assert throttle.admit(EMAIL, THERE) == 0.0  # the owner, elsewhere
            throttle.succeeded(EMAIL, THERE)
            clock.advance(THROTTLE_CAP_SECONDS)
        assert throttle.admit(EMAIL, HERE) == 0.0
        assert throttle.admit(EMAIL, HERE) == THROTTLE_CAP_SECONDS

    def test_an_address_may_fail_ten_times_then_once_every_five_minutes_whatever_the_emails(
        self, throttle: LoginThrottle, clock: FakeClock
    ) -> None:
        assert ADDRESS_BURST == 10 and ADDRESS_REFILL_SECONDS == 300
        for n in range(10):
            assert throttle.admit(f"user-{n}@example.test", HERE) == 0.0
        assert throttle.admit("user-10@example.test", HERE) == 300
        assert throttle.admit("user-10@example.test", THERE) == 0.0
        clock.advance(299.5)
        assert throttle.admit("user-10@example.test", HERE) == 0.5
        clock.advance(0.5)
        assert throttle.admit("user-10@example.test", HERE) == 0.0
        assert throttle.admit("user-11@example.test", HERE) == 300
        clock.advance(3 * 300)
        for n in range(12, 15):
            assert throttle.admit(f"user-{n}@example.test", HERE) == 0.0
        assert throttle.admit("user-15@example.test", HERE) == 300

    def test_a_success_forgets_the_failures_of_its_email_at_its_address(
        self, throttle: LoginThrottle, clock: FakeClock
    ) -> None:
        fail_in_a_row(throttle, clock, 3, at=HERE)
        fail_in_a_row(throttle, clock, 3, at=THERE)
        clock.advance(0.8)
        assert throttle.admit(EMAIL, HERE) == 0.0  # the right password, this time
        throttle.succeeded(EMAIL, HERE)
        assert throttle.admit(EMAIL, HERE) == 0.0  # a typo: counted from one again
        assert throttle.admit(EMAIL, HERE) == 0.2
        assert throttle.admit(EMAIL, THERE) == 0.0  # still its fourth there
        assert throttle.admit(EMAIL, THERE) == 1.6

    def test_a_success_gives_its_address_the_failure_back(self, throttle: LoginThrottle) -> None:
        for n in range(9):
            assert throttle.admit(f"user-{n}@example.test", HERE) == 0.0
        assert throttle.admit(EMAIL, HERE) == 0.0  # the tenth, until it proves right
        throttle.succeeded(EMAIL, HERE)
        assert throttle.admit("user-9@example.test", HERE) == 0.0  # so this is the tenth
        assert throttle.admit("user-10@example.test", HERE) == 300

    def test_a_success_leaves_other_failures_of_its_address_alone(
        self, throttle: LoginThrottle
    ) -> None:
        for n in range(9):
            assert throttle.admit(f"user-{n}@example.test", HERE) == 0.0
        assert throttle.admit("user-0@example.test", HERE) == 0.2
        assert throttle.admit(EMAIL, HERE) == 0.0
        throttle.succeeded(EMAIL, HERE)
        assert throttle.admit("user-0@example.test", HERE) == 0.2
        assert throttle.admit(EMAIL, HERE) == 0.0
        assert throttle.admit("user-9@example.test", HERE) == 300

    def test_forgetting_never_ends_a_lock_early(self) -> None:
        longest_lock = max(THROTTLE_CAP_SECONDS, ADDRESS_BURST * ADDRESS_REFILL_SECONDS)
        assert longest_lock <= THROTTLE_FORGET_SECONDS

    def test_failures_are_forgotten_an_hour_after_the_last_one_not_before(
        self, throttle: LoginThrottle, clock: FakeClock
    ) -> None:
        fail_in_a_row(throttle, clock, 8, at=HERE)
        clock.advance(THROTTLE_FORGET_SECONDS - 0.000001)
        assert throttle.admit(EMAIL, HERE) == 0.0
        assert throttle.admit(EMAIL, HERE) == 51.2  # after the ninth failure in a row
        fail_in_a_row(throttle, clock, 8, at=THERE)
        clock.advance(THROTTLE_FORGET_SECONDS)
        assert throttle.admit(EMAIL, THERE) == 0.0
        assert len(throttle) == 2  # this attempt's: the old ones went as it was decided
        assert throttle.admit(EMAIL, THERE) == 0.2  # after the first, again

    def test_many_addresses_do_not_grow_the_state_past_its_bound(self, clock: FakeClock) -> None:
        throttle = LoginThrottle(clock, max_entries=100)
        for n in range(1000):
            assert throttle.admit(f"user-{n}@example.test", f"10.0.{n // 250}.{n % 250}") == 0
        assert len(throttle) == 200
        # The entries whose last failure is oldest went first; the newest are kept.
        assert throttle.admit("user-999@example.test", "10.0.3.249") == 0.2
        assert throttle.admit("user-0@example.test", "10.0.0.0") == 0.0


class TestThrottlingInTheStore:
    def test_the_store_throttles_logins_by_its_clock(
        self, accounts: AccountStore, clock: FakeClock
    ) -> None:
        assert accounts.login_throttle.admit(EMAIL, HERE) == 0.0
        assert accounts.login_throttle.admit(EMAIL, HERE) == 0.2
        clock.advance(0.2)
        assert accounts.login_throttle.admit(EMAIL, HERE) == 0.0


class TestSessions:
    def test_a_session_lives_until_its_expiry_by_the_clock(
        self, accounts: AccountStore, clock: FakeClock
    ) -> None:
        admin = accounts.create_admin("root@example.test", "hash")
        token, expires = accounts.create_session(admin.id, timedelta(minutes=5))
        assert token.startswith("pkss_") and expires == FAKE_EPOCH + timedelta(minutes=5)
        clock.advance(299.999999)
        assert accounts.authenticate_session(token) == accounts.get_admin(admin.email)
        clock.advance(0.000001)
        assert accounts.authenticate_session(token) is None

    def test_a_revoked_session_no_longer_authenticates(self, accounts: AccountStore) -> None:
        admin = accounts.create_admin("root@example.test", "hash")
        token, _expires = accounts.create_session(admin.id, timedelta(minutes=5))
        accounts.revoke_session(token)
        assert accounts.authenticate_session(token) is None
        assert accounts.authenticate_session("pks_" + token[5:]) is None

    def test_creating_a_session_sweeps_the_expired_ones(
        self, accounts: AccountStore, clock: FakeClock, store_backend: StoreBackend
    ) -> None:
        admin = accounts.create_admin("root@example.test", "hash")
        accounts.create_session(admin.id, timedelta(seconds=1))
        clock.advance(2)
        accounts.create_session(admin.id, timedelta(seconds=1))
        database = store_backend.open()
        assert database.read("SELECT count(*) FROM sessions")[0][0] == 1


def test_the_account_and_specs_stores_share_one_database(store_backend: StoreBackend) -> None:
    database = store_backend.open()
    store, accounts = Store(database), AccountStore(database)
    store.create_service(
        parse_spec(
            {"project_name": "app", "port": 9001, "pocketbase_version": "0.29.0"}, "example.test"
        )
    )
    accounts.create_token("ci")
    store.close()
    accounts.close()  # neither closes what it was given
    assert database.read("SELECT name FROM services")[0][0] == "app"
    assert database.read("SELECT name FROM api_tokens")[0][0] == "ci"
