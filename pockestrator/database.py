"""The agent's one SQLite file: how it is opened, written and migrated.

Two stores live in it: ``specs.store`` (desired services, their status and events) and
``accounts`` (API tokens, admins, dashboard sessions). They share this file, this
connection discipline and one migration history, so a database made by any earlier agent
opens without loss whichever store opens it first.

Why SQLite (stdlib ``sqlite3``): one file, transactional, and it enforces uniqueness itself
(UNIQUE constraints). WAL lets readers run beside the one writer; every write runs in
``BEGIN IMMEDIATE``, which takes the write lock before the first read, so a check and the
write it guards see the same state and two writers never deadlock upgrading a read lock;
the busy timeout makes a second writer (another process, e.g. ``pockestrator admin
create``) wait instead of failing. The schema version is ``PRAGMA user_version``: migration
``n`` of ``MIGRATIONS`` (``pockestrator.migrations``) brings a database from version
``n - 1`` to ``n``, and a database newer than this agent is refused rather than damaged.

Timestamps are stored as ISO 8601 text in UTC with a ``Z`` (``iso``), as the reference API
shows them. The SQL of each store stays in its own modules, written once in a dialect both
backends read (``?`` placeholders, upserts, ``RETURNING``); a fleet's PostgreSQL backend
(``database_postgres``) is another ``StoreDatabase`` behind the same store interfaces, and
runs the same ``MIGRATIONS`` (``Migration`` says how one step differs between them).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from pockestrator.migrations import MIGRATIONS, sqlite_script

BUSY_TIMEOUT_SECONDS = 30.0


SQLITE_HEADER = b"SQLite format 3\x00"
# The tables every version of the schema has: a database without them is not a store.
STORE_TABLES = frozenset({"services", "status", "events"})


class Row(Protocol):
    """A result row, by column name or position (``sqlite3.Row`` is one)."""

    def __getitem__(self, key: int | str, /) -> Any: ...

    def keys(self) -> list[str]: ...


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Connection(Protocol):
    """What the stores' SQL runs on inside ``write`` and ``reading``."""

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> Cursor: ...

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> Cursor: ...


class StoreDatabase(Protocol):
    """The one interface the stores write and read through, whichever the backend."""

    backend: str
    # The folder for what stays on this host beside the store (the secret values' files).
    path: Path
    full: bool

    def write(self) -> AbstractContextManager[Connection]: ...

    def reading(self) -> AbstractContextManager[Connection]: ...

    def read(self, sql: str, parameters: Sequence[Any] = ()) -> list[Any]: ...

    @property
    def schema_version(self) -> int: ...

    def json_text(self, column: str, key: str) -> str:
        """SQL for the text of ``key`` (dotted for a nested one: ``backups.schedule``) of
        the JSON document in ``column``; NULL where it is absent or JSON ``null``."""
        ...

    def lock_rows(self, table: str) -> str:
        """SQL ending a ``SELECT`` that locks its rows of ``table`` for this write and
        skips those another writer holds (nothing in SQLite's file: one writer at all)."""
        ...

    def server_time(self, connection: Connection) -> datetime | None:
        """The database server's clock, which every node of a fleet shares (leases are
        judged by it, never by a host's own clock); None where there is no server."""
        ...

    def close(self) -> None: ...


class ConstraintViolated(sqlite3.IntegrityError):
    """A write broke a constraint of the schema (as ``sqlite3.IntegrityError`` from SQLite;
    the PostgreSQL backend raises this one)."""


class StoreUnusable(Exception):
    """The file cannot be this agent's store; it was left exactly as it was found."""


class SchemaTooNew(StoreUnusable):
    """The database was written by a newer agent; opening it here could damage it."""


class DatabaseFull(sqlite3.OperationalError):
    """A write failed because the database's file system has no space left."""


def _recovery(path: Path) -> str:
    return (
        f"Nothing was changed. Restore {path} from a backup (docs/operations.md), or move it "
        "aside to start with an empty store: spec files are read again, but services made "
        "through the API are then forgotten, and their units and sites are removed (their "
        "data is archived)"
    )


def iso(moment: datetime | None) -> str | None:
    """ISO 8601 in UTC with a ``Z``, as the reference API shows timestamps."""
    if moment is None:
        return None
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_iso(text: str | None) -> datetime | None:
    if text is None:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def parse_stored_time(text: str) -> datetime:
    """A NOT NULL timestamp column."""
    value = parse_iso(text)
    assert value is not None
    return value


class Database:
    """One connection to the file; safe to share between threads (calls are serialised)."""

    backend = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        # Set by a write that failed for want of space, cleared by the next that commits.
        self.full = False
        _check_header(path)
        self._db = sqlite3.connect(
            path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_SECONDS
        )
        try:
            _check_store(self._db, path)
        except BaseException:
            self._db.close()
            raise
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_SECONDS * 1000)}")
        path.chmod(0o600)
        self._migrate()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction that takes the write lock up front (no upgrade deadlocks)."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._db
                    self._db.execute("COMMIT")
                except BaseException:
                    # SQLite rolls back by itself after some errors (a full disk among
                    # them); a second ROLLBACK would hide the real error behind its own.
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                    raise
            except sqlite3.OperationalError as exc:
                if exc.sqlite_errorcode == sqlite3.SQLITE_FULL:
                    self.full = True
                    raise DatabaseFull(
                        f"{self.path.parent} is full: the agent's database cannot be written"
                    ) from exc
                raise
            self.full = False

    @contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        """The connection for reads only (each statement sees the latest commit)."""
        with self._lock:
            yield self._db

    def read(self, sql: str, parameters: Sequence[Any] = ()) -> list[sqlite3.Row]:
        """The rows of one query, outside any write transaction."""
        with self.reading() as db:
            return list(db.execute(sql, parameters).fetchall())

    @property
    def schema_version(self) -> int:
        return int(self.read("PRAGMA user_version")[0][0])

    def json_text(self, column: str, key: str) -> str:
        return f"json_extract({column}, '$.{key}')"

    def lock_rows(self, table: str) -> str:
        return ""

    def server_time(self, connection: Connection) -> datetime | None:
        """None: one host's store has no clock but the agent's (the store's ``Clock``)."""
        return None

    def _migrate(self) -> None:
        with self.write() as db:
            current = int(db.execute("PRAGMA user_version").fetchone()[0])
            if current > len(MIGRATIONS):  # _check_store refused it already; for safety
                raise SchemaTooNew(f"{self.path} has schema version {current}")
            for version, script in enumerate(MIGRATIONS[current:], start=current + 1):
                for statement in _statements(sqlite_script(script)):
                    db.execute(statement)
                db.execute(f"PRAGMA user_version={version}")


def _check_header(path: Path) -> None:
    """Refuse a file that is not SQLite at all before SQLite is let near it."""
    try:
        with path.open("rb") as handle:
            header = handle.read(len(SQLITE_HEADER))
    except FileNotFoundError:
        return  # a new store
    except OSError as exc:
        raise StoreUnusable(f"the store {path} cannot be read: {exc.strerror}") from exc
    if header and header != SQLITE_HEADER:  # an empty file is a new database
        raise StoreUnusable(
            f"the store {path} is not an SQLite database (its first bytes are not SQLite's "
            f"header): it is damaged or another program's file. {_recovery(path)}"
        )


def _check_store(db: sqlite3.Connection, path: Path) -> None:
    """Refuse, by reads only, a damaged store, another program's database or a newer one.

    Each of them would be changed by the first write (a migration creating our tables in a
    foreign database, one of ours run on a newer schema), so none is written.
    """
    try:
        verdict = [row[0] for row in db.execute("PRAGMA quick_check").fetchall()]
        version = int(db.execute("PRAGMA user_version").fetchone()[0])
        tables = {
            row[0]
            for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            if not row[0].startswith("sqlite_")
        }
    except sqlite3.DatabaseError as exc:
        raise StoreUnusable(f"the store {path} is damaged ({exc}). {_recovery(path)}") from exc
    if verdict != ["ok"]:
        raise StoreUnusable(
            f"the store {path} is damaged (SQLite's check: {'; '.join(verdict[:3])}). "
            f"{_recovery(path)}"
        )
    if tables and not tables >= STORE_TABLES:
        shown = ", ".join(sorted(tables)[:5])
        raise StoreUnusable(
            f"{path} is another program's SQLite database (tables: {shown}), not a "
            "Pockestrator store. Nothing was changed. Point `database` in the agent's "
            "configuration at the agent's own file, or move this one away"
        )
    if version > len(MIGRATIONS):
        raise SchemaTooNew(
            f"the store {path} has schema version {version}, newer than this agent's "
            f"({len(MIGRATIONS)}): a newer agent wrote it. Nothing was changed. Run that "
            "version of the agent (or newer), or restore a backup this version wrote"
        )


def _statements(script: str) -> list[str]:
    """Split a migration script into statements (triggers keep their inner semicolons)."""
    statements, buffer = [], ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            if buffer.strip():
                statements.append(buffer.strip())
            buffer = ""
    if buffer.strip():
        statements.append(buffer.strip())
    return statements
