"""The store's two backends for the tests: the same store tests run on each.

``store_backend`` is parametrised: ``sqlite`` (a file in the test's folder) and
``postgresql`` (a fresh database on the session's real server, ``postgres_server``). A test
opens the store through ``store_backend.open()`` (each call a new connection to the same
store, as another agent or a restarted one would make) and writes behind the store's back
with ``execute_elsewhere``. Where there is no PostgreSQL server, the ``postgresql`` cases
are skipped, saying why.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pockestrator.database import Database, StoreDatabase
from pockestrator.database_postgres import PostgresDatabase, translate
from tests.testbed.postgres import PostgresServer, start_server, stop_server, unavailable_reason

BACKENDS = ("sqlite", "postgresql")


class StoreBackend:
    """One store's place on one backend, and the connections the test opened to it."""

    def __init__(self, name: str, folder: Path, server: PostgresServer | None) -> None:
        self.name = name
        self.path = folder / "state" / "pockestrator.db"
        self.server = server
        self.database = server.new_database() if server is not None else None
        self._opened: list[StoreDatabase] = []

    def open(self, *, pool_size: int = 2) -> StoreDatabase:
        database: StoreDatabase
        if self.server is None:
            database = Database(self.path)
        else:
            assert self.database is not None
            database = PostgresDatabase(
                self.server.dsn(self.database),
                path=self.path,
                password=self.server.password,
                pool_size=pool_size,
                sslmode="disable",
            )
        self._opened.append(database)
        return database

    def execute_elsewhere(self, sql: str, *parameters: Any) -> None:
        """One statement on a connection of its own, as another process would write
        (the store's SQL dialect: ``?`` placeholders)."""
        if self.server is None:
            other = sqlite3.connect(self.path, isolation_level=None)
            try:
                other.execute(sql, parameters)
            finally:
                other.close()
            return
        assert self.database is not None
        with psycopg.connect(
            self.server.dsn(self.database), password=self.server.password, autocommit=True
        ) as connection:
            connection.execute(translate(sql), parameters)

    def every_row(self) -> str:
        """Every row of every table, as text (to prove a secret is in none of them)."""
        if self.server is None:
            other = sqlite3.connect(self.path)
            try:
                return "\n".join(other.iterdump())
            finally:
                other.close()
        assert self.database is not None
        with psycopg.connect(
            self.server.dsn(self.database), password=self.server.password, autocommit=True
        ) as connection:
            tables = [
                row[0]
                for row in connection.execute(
                    "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
                )
            ]
            return "\n".join(
                f"{table}: {row}"
                for table in tables
                for row in connection.execute(f'SELECT * FROM "{table}"')
            )

    def close(self) -> None:
        for database in self._opened:
            database.close()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    server = start_server()
    try:
        yield server
    finally:
        stop_server(server)


@pytest.fixture(params=BACKENDS)
def store_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreBackend]:
    server = request.getfixturevalue("postgres_server") if request.param == "postgresql" else None
    backend = StoreBackend(request.param, tmp_path, server)
    try:
        yield backend
    finally:
        backend.close()


# What either backend raises for a write the schema refuses (a trigger, a constraint).
DATABASE_ERRORS = (sqlite3.DatabaseError, psycopg.Error)
