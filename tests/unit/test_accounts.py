"""The account store: API tokens, admins and dashboard sessions, with time from a clock."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from pockestrator.accounts.store import AccountStore, AdminExists
from pockestrator.clock import FAKE_EPOCH, FakeClock
from pockestrator.database import Database
from pockestrator.specs.model import parse_spec
from pockestrator.specs.store import Store


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def accounts(tmp_path: Path, clock: FakeClock) -> AccountStore:
    return AccountStore(tmp_path / "state" / "pockestrator.db", clock=clock)


class TestTokens:
    def test_a_token_is_shown_once_and_stored_only_as_a_hash(self, accounts: AccountStore) -> None:
        plaintext, record = accounts.create_token("ci")
        assert plaintext.startswith("pks_") and len(plaintext) == 4 + 43
        raw = accounts.path.read_bytes() + Path(str(accounts.path) + "-wal").read_bytes()
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

    def test_login_failures_count_up_with_their_time_and_reset(
        self, accounts: AccountStore, clock: FakeClock
    ) -> None:
        admin = accounts.create_admin("root@example.test", "hash")
        assert accounts.record_login_failure(admin.id) == 1
        clock.advance(2)
        assert accounts.record_login_failure(admin.id) == 2
        failed = accounts.get_admin(admin.email)
        assert failed is not None and failed.failed_logins == 2
        assert failed.last_failed_at == FAKE_EPOCH + timedelta(seconds=2)
        accounts.reset_login_failures(admin.id)
        again = accounts.get_admin(admin.email)
        assert again is not None and (again.failed_logins, again.last_failed_at) == (0, None)

    def test_a_new_password_hash_also_clears_the_failures(self, accounts: AccountStore) -> None:
        admin = accounts.create_admin("root@example.test", "old hash")
        accounts.record_login_failure(admin.id)
        assert accounts.set_admin_password("root@example.test", "new hash") is True
        assert accounts.set_admin_password("nobody@example.test", "new hash") is False
        changed = accounts.get_admin(admin.email)
        assert changed is not None
        assert (changed.password_hash, changed.failed_logins) == ("new hash", 0)


class TestThrottling:
    def test_each_failure_locks_the_account_twice_as_long_by_the_stores_clock(
        self, accounts: AccountStore, clock: FakeClock
    ) -> None:
        admin = accounts.create_admin("root@example.test", "hash")

        def locked() -> float:
            current = accounts.get_admin(admin.email)
            assert current is not None
            return accounts.login_locked_for(current)

        assert locked() == 0.0
        accounts.record_login_failure(admin.id)
        assert locked() == 0.2
        clock.advance(0.15)
        assert locked() == pytest.approx(0.05)
        clock.advance(0.05)
        assert locked() == 0.0
        accounts.record_login_failure(admin.id)
        assert locked() == 0.4
        clock.advance(0.399999)
        assert locked() == pytest.approx(0.000001)
        clock.advance(0.000001)
        assert locked() == 0.0


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
        self, accounts: AccountStore, clock: FakeClock
    ) -> None:
        admin = accounts.create_admin("root@example.test", "hash")
        accounts.create_session(admin.id, timedelta(seconds=1))
        clock.advance(2)
        accounts.create_session(admin.id, timedelta(seconds=1))
        database = Database(accounts.path)
        try:
            assert database.read("SELECT count(*) FROM sessions")[0][0] == 1
        finally:
            database.close()


def test_the_account_and_specs_stores_share_one_database(tmp_path: Path) -> None:
    database = Database(tmp_path / "shared.db")
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
    database.close()
