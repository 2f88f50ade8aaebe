"""A fleet's shared store on PostgreSQL, behind the same ``StoreDatabase`` interface.

Agents on several hosts share their desired state through one PostgreSQL database
(docs/fleet.md); the specs and account stores run their SQL on it unchanged. Why
synchronous psycopg 3 with its connection pool, not an async driver: the store interface
is synchronous (sqlite3) and called from the agent, the API and the CLI alike; an async
backend would change every caller, while a pooled connection answers a loopback or LAN
query in well under a millisecond, as the SQLite file does from the page cache. The event
loop's one blocking listener (``LISTEN``) has a connection of its own.

The discipline is SQLite's, carried over:

- every write is one transaction that first takes one advisory lock, so writers are
  serialised across the fleet as ``BEGIN IMMEDIATE`` serialises them in the file: the
  check of a claim (``claims.taken_claims``) and the write it guards see the same state,
  and no two agents give out one name or domain;
- reads run outside transactions (autocommit), each statement seeing the latest commit;
- a read made while the same thread holds a write runs in that write's transaction;
- the schema version is a row of ``schema_version``; migrations run under a second
  advisory lock, so two agents starting at once migrate once; a newer schema or another
  program's tables are refused without writing.

The password is never part of the DSN (``StoreConfig`` refuses one there): it is read
from a root-only file and given to libpq apart, so a DSN shown or logged reveals nothing.
"""

from __future__ import annotations

import functools
import sqlite3
import threading
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
import psycopg.errors
import psycopg.rows
from psycopg_pool import ConnectionPool

from pockestrator.config import AgentConfig
from pockestrator.database import (
    STORE_TABLES,
    Connection,
    ConstraintViolated,
    Cursor,
    Database,
    DatabaseFull,
    SchemaTooNew,
    StoreDatabase,
    StoreUnusable,
)
from pockestrator.files import SecretNotPrivate, SecretUnreadable, read_private_file
from pockestrator.migrations import MIGRATIONS, postgresql_script

# Where the triggers of migration 10 tell the agents of a change: "<node> <service>".
SERVICES_CHANNEL = "pockestrator_services"
# The node part of a notice that a service's status changed (migration 12); no node's name
# can begin with '@'.
STATUS_NOTICE = "@status"
# pg_advisory_xact_lock keys: one for every write, one for migrations ("pks" + 1, 2).
WRITE_LOCK = 0x706B7301
MIGRATION_LOCK = 0x706B7302
CONNECT_TIMEOUT_SECONDS = 10


class StoreUnavailable(sqlite3.OperationalError):
    """The PostgreSQL server cannot be reached or dropped the connection (the agent goes
    on and tries again, as after SQLite's busy timeout)."""


class PgRow:
    """A row by column name or position, as ``sqlite3.Row``."""

    __slots__ = ("_index", "_values")

    def __init__(self, index: dict[str, int], values: Sequence[Any]) -> None:
        self._index = index
        self._values = values

    def __getitem__(self, key: int | str, /) -> Any:
        return self._values[key if isinstance(key, int) else self._index[key]]

    def keys(self) -> list[str]:
        return list(self._index)

    def __len__(self) -> int:
        return len(self._values)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._values)


def _row_factory(cursor: psycopg.Cursor[Any]) -> psycopg.rows.RowMaker[PgRow]:
    names = [column.name for column in cursor.description or ()]
    index = {name: position for position, name in enumerate(names)}
    return lambda values: PgRow(index, values)


@functools.lru_cache(maxsize=1024)
def translate(sql: str) -> str:
    """The stores' SQL for psycopg: ``?`` placeholders become ``%s`` (a literal ``%``
    doubled). The stores' statements carry no ``?`` inside string literals."""
    return sql.replace("%", "%%").replace("?", "%s")


def _parameters(parameters: Sequence[Any]) -> list[Any]:
    # Flags are INTEGER columns on both backends; PostgreSQL does not cast a boolean.
    return [int(value) if isinstance(value, bool) else value for value in parameters]


@contextmanager
def _errors_translated() -> Iterator[None]:
    """psycopg's errors as the stores and the agent know them from SQLite."""
    try:
        yield
    except psycopg.errors.IntegrityError as exc:
        raise ConstraintViolated(str(exc)) from exc
    except psycopg.errors.DiskFull as exc:
        raise DatabaseFull(f"the PostgreSQL store is full: {exc}") from exc
    except psycopg.OperationalError as exc:
        raise StoreUnavailable(f"the PostgreSQL store is unavailable: {exc}") from exc


class PgCursor:
    def __init__(self, cursor: psycopg.Cursor[PgRow]) -> None:
        self._cursor = cursor

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    def fetchone(self) -> PgRow | None:
        return self._cursor.fetchone()

    def fetchall(self) -> list[PgRow]:
        return self._cursor.fetchall()

    def __iter__(self) -> Iterator[PgRow]:
        return iter(self._cursor.fetchall())


class PgConnection:
    """A pooled connection with the ``Connection`` interface the stores use."""

    def __init__(self, connection: psycopg.Connection[PgRow]) -> None:
        self.raw = connection

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> Cursor:
        with _errors_translated():
            cursor = self.raw.cursor()
            cursor.execute(translate(sql), _parameters(parameters))
            return PgCursor(cursor)

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> Cursor:
        with _errors_translated():
            cursor = self.raw.cursor()
            cursor.executemany(translate(sql), [_parameters(p) for p in parameters])
            return PgCursor(cursor)


def connection_kwargs(password: str | None, sslmode: str) -> dict[str, Any]:
    """What libpq is given besides the DSN: the password apart from it, TLS, no waiting
    forever for a host that is gone."""
    kwargs: dict[str, Any] = {
        "sslmode": sslmode,
        "connect_timeout": CONNECT_TIMEOUT_SECONDS,
        "application_name": "pockestrator",
        "autocommit": True,
        "row_factory": _row_factory,
    }
    if password is not None:
        kwargs["password"] = password
    return kwargs


class PostgresDatabase:
    """The shared store on a PostgreSQL database; safe to share between threads.

    ``path`` is this host's folder for what stays beside the store (the secret values'
    files, as with SQLite); ``dsn`` must not hold the password.
    """

    backend = "postgresql"

    def __init__(
        self,
        dsn: str,
        *,
        path: Path,
        password: str | None = None,
        pool_size: int = 4,
        sslmode: str = "verify-full",
    ) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.dsn = dsn
        self.full = False
        self._local = threading.local()
        self._kwargs = connection_kwargs(password, sslmode)
        self._pool: ConnectionPool[psycopg.Connection[PgRow]] = ConnectionPool(
            dsn,
            kwargs=self._kwargs,
            min_size=1,
            max_size=max(1, pool_size),
            open=False,
            name="pockestrator-store",
            # A connection the server dropped (a restart) is replaced before it is lent.
            check=ConnectionPool.check_connection,
        )
        with _errors_translated():
            self._pool.open(wait=True, timeout=CONNECT_TIMEOUT_SECONDS)
        try:
            self._migrate()
        except BaseException:
            self._pool.close()
            raise

    def close(self) -> None:
        self._pool.close()

    @contextmanager
    def _connection(self) -> Iterator[PgConnection]:
        held: PgConnection | None = getattr(self._local, "connection", None)
        if held is not None:
            yield held
            return
        with _errors_translated(), self._pool.connection() as raw:
            yield PgConnection(raw)

    @contextmanager
    def write(self) -> Iterator[PgConnection]:
        """One transaction, serialised with every other writer of the fleet."""
        if getattr(self._local, "connection", None) is not None:
            raise RuntimeError("a write inside a write (SQLite's BEGIN IMMEDIATE refuses it)")
        with self._connection() as connection:
            try:
                with _errors_translated(), connection.raw.transaction():
                    self._local.connection = connection
                    connection.execute("SELECT pg_advisory_xact_lock(?)", (WRITE_LOCK,))
                    yield connection
            finally:
                self._local.connection = None
        self.full = False

    @contextmanager
    def reading(self) -> Iterator[PgConnection]:
        with self._connection() as connection:
            yield connection

    def read(self, sql: str, parameters: Sequence[Any] = ()) -> list[Any]:
        with self.reading() as connection:
            return connection.execute(sql, parameters).fetchall()

    @property
    def schema_version(self) -> int:
        rows = self.read("SELECT version FROM schema_version")
        return int(rows[0][0]) if rows else 0

    def json_text(self, column: str, key: str) -> str:
        path = ",".join(key.split("."))
        return f"(({column})::json #>> '{{{path}}}')"

    def lock_rows(self, table: str) -> str:
        return f" FOR UPDATE OF {table} SKIP LOCKED"

    def server_time(self, connection: Connection) -> datetime:
        return connection.execute("SELECT clock_timestamp()").fetchone()[0]  # type: ignore[no-any-return]

    async def notifications(self) -> AsyncIterator[str]:
        """The payloads of ``SERVICES_CHANNEL`` as they come, on a connection of their own
        (``LISTEN`` holds it); first ``""`` once listening, since whatever was told before
        (or while a dropped connection was down) is not told again. It ends by raising
        ``StoreUnavailable`` when the connection drops."""
        kwargs = {k: v for k, v in self._kwargs.items() if k != "row_factory"}
        with _errors_translated():
            connection = await psycopg.AsyncConnection.connect(self.dsn, **kwargs)
        async with connection:
            with _errors_translated():
                await connection.execute(f"LISTEN {SERVICES_CHANNEL}")
            yield ""
            with _errors_translated():
                async for notice in connection.notifies():
                    yield notice.payload

    def _migrate(self) -> None:
        with self._connection() as connection, connection.raw.transaction():
            connection.execute("SELECT pg_advisory_xact_lock(?)", (MIGRATION_LOCK,))
            tables = {
                row[0]
                for row in connection.execute(
                    "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
                )
            }
            if tables and "schema_version" not in tables:
                shown = ", ".join(sorted(tables)[:5])
                raise StoreUnusable(
                    f"the PostgreSQL database of {self.dsn} holds another program's tables "
                    f"({shown}), not a Pockestrator store. Nothing was changed. Point "
                    "store.dsn at a database of the agents' own"
                )
            if not tables:
                connection.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
                connection.execute("INSERT INTO schema_version (version) VALUES (0)")
            current = int(connection.execute("SELECT version FROM schema_version").fetchone()[0])
            if current > len(MIGRATIONS):
                raise SchemaTooNew(
                    f"the PostgreSQL store of {self.dsn} has schema version {current}, newer "
                    f"than this agent's ({len(MIGRATIONS)}): a newer agent wrote it. Nothing "
                    "was changed. Run that version of the agent (or newer) on this host"
                )
            if current and not tables >= STORE_TABLES:
                raise StoreUnusable(f"the PostgreSQL store of {self.dsn} lacks its tables")
            for version, step in enumerate(MIGRATIONS[current:], start=current + 1):
                # A script of several statements, without parameters: one simple query.
                with _errors_translated():
                    connection.raw.execute(postgresql_script(step).encode())
                connection.execute("UPDATE schema_version SET version = ?", (version,))


def read_password_file(path: Path) -> str:
    """The store's password from a file only its owner, the agent's user, can read."""
    try:
        raw = read_private_file(path)
    except SecretUnreadable as exc:
        raise StoreUnusable(f"store.password_file: {path} cannot be read: {exc}") from None
    except SecretNotPrivate:
        raise StoreUnusable(
            f"store.password_file: {path} must be the agent's own (root's) with mode 0600 "
            "or stricter; nobody else may read the store's password"
        ) from None
    return raw.decode("utf-8", "replace").strip()


def open_store_database(config: AgentConfig) -> StoreDatabase:
    """The agent's store as its configuration says: the SQLite file, or the fleet's
    PostgreSQL (the SQLite file is then not made)."""
    store = config.store
    if store.backend == "sqlite":
        return Database(config.database)
    assert store.dsn is not None  # StoreConfig requires it
    password = read_password_file(store.password_file) if store.password_file else None
    return PostgresDatabase(
        store.dsn,
        path=config.database,
        password=password,
        pool_size=store.pool_size,
        sslmode=store.sslmode,
    )
