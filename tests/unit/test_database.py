"""The agent's database: one migration history that opens older databases without loss.

``V1_SCHEMA`` is the schema version 1 as the agent shipped it (before the store was split
into the specs and account stores), frozen here: a database made by that agent must open
in this one with every row intact, whichever store opens it.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from pathlib import Path

import pytest

from pockestrator.accounts.store import AccountStore
from pockestrator.database import Database, DatabaseFull, SchemaTooNew, StoreUnusable
from pockestrator.migrations import MIGRATIONS
from pockestrator.specs.errors import ErrorCode, FieldIssue
from pockestrator.specs.model import parse_spec
from pockestrator.specs.store import Store

V1_SCHEMA = """
    CREATE TABLE services (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        port INTEGER NOT NULL UNIQUE,
        domain TEXT NOT NULL UNIQUE,
        owner TEXT NOT NULL,
        spec TEXT NOT NULL,
        run_override TEXT CHECK (run_override IN ('running', 'stopped')),
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        generation INTEGER NOT NULL DEFAULT 1
    );
    CREATE INDEX services_by_owner ON services(owner);
    CREATE TABLE deletions (
        name TEXT PRIMARY KEY,
        service_id TEXT NOT NULL,
        owner TEXT NOT NULL,
        purge INTEGER NOT NULL,
        requested_at TEXT NOT NULL
    );
    CREATE TABLE status (
        name TEXT PRIMARY KEY,
        state TEXT NOT NULL CHECK (state IN ('deploying', 'active', 'inactive', 'error')),
        systemd_config_hash TEXT,
        caddy_config_hash TEXT,
        config_match INTEGER,
        caddy_status TEXT,
        active_state TEXT,
        sub_state TEXT,
        pid INTEGER,
        memory_bytes INTEGER,
        cpu_usage_nsec INTEGER,
        restarts INTEGER,
        deployed_version TEXT,
        failed_version TEXT,
        cpu_percent REAL,
        observed_generation INTEGER,
        last_health_check TEXT,
        health_ok INTEGER,
        health_failures INTEGER NOT NULL DEFAULT 0,
        last_error TEXT,
        updated_at TEXT NOT NULL
    );
    CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        service TEXT NOT NULL,
        at TEXT NOT NULL,
        kind TEXT NOT NULL,
        message TEXT NOT NULL,
        details TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX events_by_service ON events(service, id);
    CREATE TRIGGER events_are_append_only_update BEFORE UPDATE ON events
        BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;
    CREATE TABLE api_tokens (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        token_hash TEXT NOT NULL UNIQUE,
        created_at TEXT NOT NULL,
        last_used_at TEXT,
        revoked_at TEXT
    );
    CREATE TABLE admins (
        id TEXT PRIMARY KEY,
        email TEXT NOT NULL UNIQUE COLLATE NOCASE,
        password_hash TEXT NOT NULL,
        created_at TEXT NOT NULL,
        failed_logins INTEGER NOT NULL DEFAULT 0,
        last_failed_at TEXT
    );
    CREATE TABLE sessions (
        token_hash TEXT PRIMARY KEY,
        admin_id TEXT NOT NULL REFERENCES admins(id) ON DELETE CASCADE,
        created_at TEXT NOT NULL,
        expires_at TEXT NOT NULL
    );
    CREATE TABLE superuser_passwords (
        name TEXT PRIMARY KEY,
        password TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE TABLE file_issues (
        path TEXT PRIMARY KEY,
        issues TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    """

SPEC = parse_spec(
    {"project_name": "blog", "port": 8103, "pocketbase_version": "0.29.0"}, "example.test"
)
TOKEN = "pks_" + "t" * 43
SESSION = "pkss_" + "s" * 43
MADE = "2025-07-31T12:00:00.000000Z"
LATER = "2099-01-01T00:00:00.000000Z"


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def version_1_database(path: Path) -> None:
    """A database as the version-1 agent left it: its schema, then one row of each kind."""
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.executescript(V1_SCHEMA)
        db.execute("PRAGMA user_version=1")
        rows = [
            (
                "INSERT INTO services (id, name, port, domain, owner, spec, created_at, "
                "updated_at, generation) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    "a1b2c3d4e5f6",
                    "blog",
                    8103,
                    SPEC.domain,
                    "file:/specs/blog.yaml",
                    SPEC.model_dump_json(),
                    MADE,
                    MADE,
                    3,
                ),
            ),
            (
                "INSERT INTO deletions (name, service_id, owner, purge, requested_at) "
                "VALUES (?, ?, ?, ?, ?)",
                ("gone", "0a0b0c0d0e0f", "api", 1, MADE),
            ),
            (
                "INSERT INTO status (name, state, pid, health_ok, deployed_version, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                ("blog", "active", 4242, 1, "0.29.0", MADE),
            ),
            (
                "INSERT INTO events (service, at, kind, message, details) VALUES (?, ?, ?, ?, ?)",
                ("blog", MADE, "created", "service created", '{"version": "0.29.0"}'),
            ),
            (
                "INSERT INTO api_tokens (id, name, token_hash, created_at) VALUES (?, ?, ?, ?)",
                ("0123456789ab", "ci", sha256(TOKEN), MADE),
            ),
            (
                "INSERT INTO admins (id, email, password_hash, created_at, failed_logins) "
                "VALUES (?, ?, ?, ?, ?)",
                ("ba9876543210", "root@example.test", "$argon2id$hash", MADE, 2),
            ),
            (
                "INSERT INTO sessions (token_hash, admin_id, created_at, expires_at) "
                "VALUES (?, ?, ?, ?)",
                (sha256(SESSION), "ba9876543210", MADE, LATER),
            ),
            (
                "INSERT INTO superuser_passwords (name, password, created_at) VALUES (?, ?, ?)",
                ("blog", "one-time secret", MADE),
            ),
            (
                "INSERT INTO file_issues (path, issues, updated_at) VALUES (?, ?, ?)",
                (
                    "/specs/bad.yaml",
                    '[{"field": "port", "message": "bad", "code": "PORT_OUT_OF_RANGE"}]',
                    MADE,
                ),
            ),
        ]
        for sql, parameters in rows:
            db.execute(sql, parameters)
    finally:
        db.close()


def schema_of(path: Path) -> list[tuple[str, str, str]]:
    db = sqlite3.connect(path)
    try:
        return sorted(db.execute("SELECT type, name, sql FROM sqlite_master").fetchall())
    finally:
        db.close()


def test_a_version_1_database_migrated_has_the_schema_of_a_new_one(tmp_path: Path) -> None:
    version_1_database(tmp_path / "old.db")
    Database(tmp_path / "old.db").close()
    Database(tmp_path / "new.db").close()
    assert schema_of(tmp_path / "old.db") == schema_of(tmp_path / "new.db")
    assert len(MIGRATIONS) == 13


def test_a_version_1_database_opens_in_the_specs_store_with_every_row(tmp_path: Path) -> None:
    path = tmp_path / "pockestrator.db"
    version_1_database(path)
    store = Store(path)
    try:
        assert store.schema_version == len(MIGRATIONS)
        record = store.get_service("blog")
        assert record is not None
        assert (record.id, record.spec, record.source_file, record.generation) == (
            "a1b2c3d4e5f6",
            SPEC,
            "/specs/blog.yaml",
            3,
        )
        status = store.get_status("blog")
        assert status is not None
        assert (status.state, status.pid, status.health_ok, status.deployed_version) == (
            "active",
            4242,
            True,
            "0.29.0",
        )
        assert status.superusers == ()  # version 2 knows none the old agent created
        # No PocketBase settings applied yet, so the next look applies them.
        assert (status.settings_hash, status.settings_checked_at, status.settings_pid) == (
            None,
            None,
            None,
        )
        assert status.certificate_not_after is None  # none seen yet
        # The domain it held is a claim in the table of every service's domains.
        newcomer = SPEC.model_copy(update={"project_name": "x", "port": 9999})
        assert [issue.code for issue in store.claims_taken(newcomer)] == [ErrorCode.DOMAIN_IN_USE]
        [event] = store.list_events("blog")
        assert (event.kind, event.message, event.details) == (
            "created",
            "service created",
            {"version": "0.29.0"},
        )
        deletion = store.pending_deletion("gone")
        assert deletion is not None and deletion.purge is True
        assert store.file_issues() == {
            "/specs/bad.yaml": [FieldIssue("port", "bad", ErrorCode.PORT_OUT_OF_RANGE)]
        }
        assert store.take_superuser_password("blog") == "one-time secret"
    finally:
        store.close()


def test_a_version_1_database_opens_in_the_account_store_with_every_account(
    tmp_path: Path,
) -> None:
    path = tmp_path / "pockestrator.db"
    version_1_database(path)
    accounts = AccountStore(path)
    try:
        token = accounts.authenticate_token(TOKEN)
        assert token is not None and (token.id, token.name) == ("0123456789ab", "ci")
        admin = accounts.get_admin("root@example.test")
        assert admin is not None
        assert (admin.id, admin.password_hash, admin.failed_logins) == (
            "ba9876543210",
            "$argon2id$hash",
            2,
        )
        assert accounts.authenticate_session(SESSION) == admin
    finally:
        accounts.close()


def test_reopening_migrates_nothing_more_and_loses_nothing(tmp_path: Path) -> None:
    path = tmp_path / "pockestrator.db"
    version_1_database(path)
    Database(path).close()
    migrated = schema_of(path)
    for _ in range(2):
        Database(path).close()
    assert schema_of(path) == migrated
    store = Store(path)
    try:
        assert store.schema_version == len(MIGRATIONS) and store.service_names() == ["blog"]
    finally:
        store.close()


def test_a_newer_schema_is_refused_and_left_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    Database(path).close()
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("CREATE TABLE from_the_future (x)")
    db.execute(f"PRAGMA user_version={len(MIGRATIONS) + 1}")
    db.close()
    before = schema_of(path)
    with pytest.raises(SchemaTooNew, match="newer than this agent"):
        Database(path)
    assert schema_of(path) == before
    assert "from_the_future" in [name for _type, name, _sql in before]


def test_the_file_is_private_and_in_wal_mode(tmp_path: Path) -> None:
    database = Database(tmp_path / "state" / "pockestrator.db")
    try:
        assert database.path.stat().st_mode & 0o777 == 0o600
        assert database.read("PRAGMA journal_mode")[0][0] == "wal"
        assert database.read("PRAGMA busy_timeout")[0][0] == 30000
        assert database.read("PRAGMA foreign_keys")[0][0] == 1
    finally:
        database.close()


def test_a_failed_write_leaves_nothing_behind(tmp_path: Path) -> None:
    database = Database(tmp_path / "pockestrator.db")
    try:
        with pytest.raises(RuntimeError), database.write() as db:
            db.execute("INSERT INTO file_issues (path, issues, updated_at) VALUES ('a', '[]', 'x')")
            raise RuntimeError("half-way")
        assert database.read("SELECT count(*) FROM file_issues")[0][0] == 0
    finally:
        database.close()


def test_a_second_writer_waits_for_the_first_instead_of_failing(tmp_path: Path) -> None:
    path = tmp_path / "pockestrator.db"
    first, second = Database(path), Database(path)
    holding = threading.Event()
    release = threading.Event()

    def hold_the_write_lock() -> None:
        with first.write() as db:
            db.execute("INSERT INTO file_issues (path, issues, updated_at) VALUES ('a', '[]', 'x')")
            holding.set()
            release.wait(5)

    holder = threading.Thread(target=hold_the_write_lock)
    holder.start()
    try:
        assert holding.wait(5)
        threading.Timer(0.2, release.set).start()
        with second.write() as db:  # BEGIN IMMEDIATE waits on the busy timeout
            db.execute("INSERT INTO file_issues (path, issues, updated_at) VALUES ('b', '[]', 'x')")
        assert [row[0] for row in second.read("SELECT path FROM file_issues ORDER BY path")] == [
            "a",
            "b",
        ]
    finally:
        release.set()
        holder.join()
        first.close()
        second.close()


def _garbage(path: Path) -> None:
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 64)


def _foreign(path: Path) -> None:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("CREATE TABLE photos (id INTEGER PRIMARY KEY, path TEXT)")
    db.execute("PRAGMA user_version=3")  # other programs number their schemas too
    db.close()


def _damaged(path: Path) -> None:
    store = Store(path)
    for index in range(40):  # enough rows for more than a few pages
        store.add_event("blog", "reconciled", "x" * 500 + str(index))
    store.close()
    data = bytearray(path.read_bytes())
    page = int.from_bytes(data[16:18], "big")
    data[page : 2 * page] = b"\xa5" * page
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("make", "says"),
    [
        (_garbage, "is not an SQLite database"),
        (_foreign, "another program's SQLite database (tables: photos)"),
        (_damaged, "is damaged"),
    ],
    ids=["garbage", "foreign", "damaged"],
)
def test_a_file_that_is_not_a_store_is_refused_with_how_to_recover_and_left_as_it_was(
    tmp_path: Path, make: object, says: str
) -> None:
    path = tmp_path / "pockestrator.db"
    assert callable(make)
    make(path)
    before = path.read_bytes()
    mode = path.stat().st_mode
    with pytest.raises(StoreUnusable) as refused:
        Database(path)
    message = str(refused.value)
    assert says in message and str(path) in message and "Nothing was changed" in message
    assert path.read_bytes() == before and path.stat().st_mode == mode
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pockestrator.db"]


def test_an_empty_file_is_a_new_store(tmp_path: Path) -> None:
    path = tmp_path / "pockestrator.db"
    path.touch()
    database = Database(path)
    try:
        assert database.schema_version == len(MIGRATIONS)
    finally:
        database.close()


def test_a_write_on_a_full_disk_says_so_keeps_the_store_and_the_next_write_works(
    tmp_path: Path,
) -> None:
    database = Database(tmp_path / "pockestrator.db")
    store = Store(database)
    try:
        store.add_event("blog", "reconciled", "before")
        pages = int(database.read("PRAGMA page_count")[0][0])
        # SQLite's own way to make a database full: it may not grow past this many pages.
        database.read(f"PRAGMA max_page_count={pages}")
        with pytest.raises(DatabaseFull, match=f"{tmp_path} is full"):
            store.add_event("blog", "reconciled", "y" * 100_000)
        assert database.full
        database.read("PRAGMA max_page_count=1073741823")
        store.add_event("blog", "reconciled", "after")
        assert not database.full
        messages = [event.message for event in store.list_events("blog")]
        assert "before" in messages and "after" in messages
        assert database.read("PRAGMA integrity_check")[0][0] == "ok"
    finally:
        database.close()
