"""The SQLite store: desired specs, observed status, events, API tokens and admin accounts.

Why SQLite (stdlib ``sqlite3``, WAL): one file, transactional, and it enforces the
uniqueness of name, port and domain itself (UNIQUE constraints), so two concurrent creates
cannot both win however they race. Every write runs in ``BEGIN IMMEDIATE`` with a busy
timeout; constraint failures become ``Conflict`` with the reference's error codes.

Every desired service lives in ``services`` whatever its source; ``owner`` says which
(``api`` or ``file:<path>``). A deleted service leaves a row in ``deletions`` until the
reconciler has removed it from the host (``finish_deletion``), which also records whether
its data is to be archived or purged. Status is kept per name (not per row) so that it
survives a spec being replaced. The schema is versioned with ``PRAGMA user_version``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pockestrator.specs.errors import ErrorCode, FieldIssue
from pockestrator.specs.model import ServiceSpec
from pockestrator.specs.validation import Claim

API_OWNER = "api"
FILE_OWNER_PREFIX = "file:"
TOKEN_PREFIX = "pks_"  # noqa: S105 (a public prefix, not a secret)
SESSION_PREFIX = "pkss_"
STATUS_STATES = ("deploying", "active", "inactive", "error")

MIGRATIONS: tuple[str, ...] = (
    # 1: the initial schema.
    """
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
    """,
)


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime | None) -> str | None:
    """ISO 8601 in UTC with a ``Z``, as the reference API shows timestamps."""
    if moment is None:
        return None
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_iso(text: str | None) -> datetime | None:
    if text is None:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def file_owner(path: Path | str) -> str:
    return f"{FILE_OWNER_PREFIX}{path}"


def owner_file(owner: str) -> str | None:
    """The spec file that owns a service, or None for API-owned ones."""
    return owner[len(FILE_OWNER_PREFIX) :] if owner.startswith(FILE_OWNER_PREFIX) else None


def _hash_secret(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


class StoreError(Exception):
    """Base of the store's own errors."""


class Conflict(StoreError):
    """The change collides with existing state; ``issues`` carry field and code."""

    def __init__(self, issues: list[FieldIssue]) -> None:
        self.issues = issues
        super().__init__("; ".join(str(issue) for issue in issues))


class NotFound(StoreError):
    pass


@dataclass(frozen=True)
class ServiceRecord:
    """One desired service as stored."""

    id: str
    spec: ServiceSpec
    owner: str
    run_override: str | None
    created_at: datetime
    updated_at: datetime
    generation: int

    @property
    def name(self) -> str:
        return self.spec.project_name

    @property
    def desired_state(self) -> str:
        """What the reconciler enforces: an API start/stop override wins over the spec."""
        return self.run_override or self.spec.desired_state

    @property
    def source_file(self) -> str | None:
        return owner_file(self.owner)


@dataclass(frozen=True)
class Deletion:
    name: str
    service_id: str
    purge: bool
    requested_at: datetime


@dataclass(frozen=True)
class ServiceStatus:
    """What the reconciler last observed and concluded about one service."""

    name: str
    state: str = "deploying"
    systemd_config_hash: str | None = None
    caddy_config_hash: str | None = None
    config_match: bool | None = None
    caddy_status: str | None = None
    active_state: str | None = None
    sub_state: str | None = None
    pid: int | None = None
    memory_bytes: int | None = None
    cpu_usage_nsec: int | None = None
    restarts: int | None = None
    deployed_version: str | None = None
    failed_version: str | None = None
    cpu_percent: float | None = None
    # The spec generation the last finished reconcile acted on (compare with the record's).
    observed_generation: int | None = None
    last_health_check: datetime | None = None
    health_ok: bool | None = None
    health_failures: int = 0
    last_error: str | None = None
    updated_at: datetime | None = None


STATUS_FIELDS = tuple(f for f in ServiceStatus.__dataclass_fields__ if f != "name")


@dataclass(frozen=True)
class Event:
    id: int
    service: str
    at: datetime
    kind: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TokenRecord:
    id: str
    name: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


@dataclass(frozen=True)
class AdminRecord:
    id: str
    email: str
    password_hash: str
    created_at: datetime
    failed_logins: int
    last_failed_at: datetime | None


_CONSTRAINT_FIELDS = {
    "services.name": (
        "project_name",
        ErrorCode.DUPLICATE_PROJECT_NAME,
        "Project name already exists",
    ),
    "services.port": ("port", ErrorCode.PORT_IN_USE, "Port is already in use by another service"),
    "services.domain": (
        "domain",
        ErrorCode.DOMAIN_IN_USE,
        "Domain is already used by another service",
    ),
}


def _claims_taken(
    db: sqlite3.Connection, spec: ServiceSpec, exclude: str | None = None
) -> list[FieldIssue]:
    """Every one of name, port and domain that another service holds (all, not the first)."""
    issues = []
    for column, (field_name, code, message) in _CONSTRAINT_FIELDS.items():
        value = getattr(spec, field_name)
        row = db.execute(
            f"SELECT name FROM services WHERE {column.split('.')[1]} = ? AND name IS NOT ?",  # noqa: S608
            (value, exclude),
        ).fetchone()
        if row is not None:
            issues.append(FieldIssue(field_name, f"{message}: {value}", code))
    return issues


def _conflict_from(error: sqlite3.IntegrityError, spec: ServiceSpec) -> Conflict:
    text = str(error)
    for column, (field_name, code, message) in _CONSTRAINT_FIELDS.items():
        if column in text:
            value = getattr(spec, field_name)
            return Conflict([FieldIssue(field_name, f"{message}: {value}", code)])
    raise error


class Store:
    """One connection to the database; safe to share between threads (serialised)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(
            path, isolation_level=None, check_same_thread=False, timeout=30.0
        )
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.execute("PRAGMA busy_timeout=30000")
        path.chmod(0o600)
        self._migrate()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- plumbing ----------------------------------------------------------------------

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction that takes the write lock up front (no upgrade deadlocks)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _read(self, sql: str, parameters: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return list(self._db.execute(sql, parameters).fetchall())

    @property
    def schema_version(self) -> int:
        return int(self._read("PRAGMA user_version")[0][0])

    def _migrate(self) -> None:
        with self._write() as db:
            current = int(db.execute("PRAGMA user_version").fetchone()[0])
            if current > len(MIGRATIONS):
                raise StoreError(
                    f"{self.path} has schema version {current}, newer than this agent "
                    f"({len(MIGRATIONS)}); upgrade the agent"
                )
            for version, script in enumerate(MIGRATIONS[current:], start=current + 1):
                for statement in _statements(script):
                    db.execute(statement)
                db.execute(f"PRAGMA user_version={version}")

    # -- desired services --------------------------------------------------------------

    def create_service(self, spec: ServiceSpec, owner: str = API_OWNER) -> ServiceRecord:
        """Insert a new service; a taken name, port or domain raises ``Conflict``."""
        now = iso(utc_now())
        with self._write() as db:
            if db.execute(
                "SELECT 1 FROM deletions WHERE name = ?", (spec.project_name,)
            ).fetchone():
                raise Conflict(
                    [
                        FieldIssue(
                            "project_name",
                            f"Service '{spec.project_name}' is still being deleted; try again soon",
                            ErrorCode.DELETION_PENDING,
                        )
                    ]
                )
            taken = _claims_taken(db, spec)
            if taken:
                raise Conflict(taken)
            try:
                self._insert_service(db, spec, owner, now)
            except sqlite3.IntegrityError as exc:
                raise _conflict_from(exc, spec) from None
        record = self.get_service(spec.project_name)
        assert record is not None
        return record

    def replace_spec(self, name: str, spec: ServiceSpec, owner: str) -> ServiceRecord:
        """Replace the spec of ``name`` (owned by ``owner``); the name itself cannot change."""
        if spec.project_name != name:
            raise Conflict(
                [
                    FieldIssue(
                        "project_name", "project_name cannot be changed", ErrorCode.INVALID_VALUE
                    )
                ]
            )
        with self._write() as db:
            row = db.execute("SELECT owner, spec FROM services WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise NotFound(name)
            if row["owner"] != owner:
                raise Conflict([_ownership_issue(name, row["owner"])])
            if row["spec"] == spec.model_dump_json():
                return self._record_by_name(db, name)
            taken = _claims_taken(db, spec, exclude=name)
            if taken:
                raise Conflict(taken)
            try:
                db.execute(
                    "UPDATE services SET port = ?, domain = ?, spec = ?, updated_at = ?, "
                    "generation = generation + 1 WHERE name = ?",
                    (spec.port, spec.domain, spec.model_dump_json(), iso(utc_now()), name),
                )
            except sqlite3.IntegrityError as exc:
                raise _conflict_from(exc, spec) from None
            return self._record_by_name(db, name)

    def sync_file(self, path: str, specs: Sequence[ServiceSpec]) -> dict[str, FieldIssue]:
        """Make the services owned by spec file ``path`` exactly ``specs``.

        Services of this file that are no longer in it are deleted (data archived). A spec
        whose name, port or domain another source holds is not applied; its conflict is
        returned by name, and the service that holds it is untouched.
        """
        owner = file_owner(path)
        conflicts: dict[str, FieldIssue] = {}
        wanted = {spec.project_name: spec for spec in specs}
        now = iso(utc_now())
        with self._write() as db:
            owned = {
                row["name"]: row
                for row in db.execute("SELECT * FROM services WHERE owner = ?", (owner,))
            }
            for name in owned.keys() - wanted.keys():
                self._delete_row(db, owned[name], purge=False, now=now)
            for name, spec in wanted.items():
                holder = db.execute("SELECT owner FROM services WHERE name = ?", (name,)).fetchone()
                if holder is not None and holder["owner"] != owner:
                    conflicts[name] = _ownership_issue(name, holder["owner"], newcomer=path)
                    continue
                deletion = db.execute(
                    "SELECT owner, purge FROM deletions WHERE name = ?", (name,)
                ).fetchone()
                if deletion is not None and _moved_between_files(deletion):
                    # A spec moved from one file to another: the service carries on.
                    db.execute("DELETE FROM deletions WHERE name = ?", (name,))
                elif deletion is not None:
                    conflicts[name] = FieldIssue(
                        "project_name",
                        f"Service '{name}' is still being deleted; it will be created after",
                        ErrorCode.DELETION_PENDING,
                    )
                    continue
                db.execute("SAVEPOINT upsert")
                try:
                    if name in owned:
                        self._update_file_spec(db, owned[name], spec, now)
                    else:
                        self._insert_service(db, spec, owner, now)
                except sqlite3.IntegrityError as exc:
                    db.execute("ROLLBACK TO upsert")
                    issue = _conflict_from(exc, spec).issues[0]
                    conflicts[name] = FieldIssue(
                        issue.field, f"{issue.message} (claimed by another source)", issue.code
                    )
                finally:
                    db.execute("RELEASE upsert")
        return conflicts

    def _insert_service(
        self, db: sqlite3.Connection, spec: ServiceSpec, owner: str, now: str | None
    ) -> None:
        """A new row with a fresh id, and its status row (raises ``IntegrityError``)."""
        db.execute(
            "INSERT INTO services (id, name, port, domain, owner, spec, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                secrets.token_hex(6),
                spec.project_name,
                spec.port,
                spec.domain,
                owner,
                spec.model_dump_json(),
                now,
                now,
            ),
        )
        self._ensure_status_row(db, spec.project_name, now)

    def _update_file_spec(
        self, db: sqlite3.Connection, row: sqlite3.Row, spec: ServiceSpec, now: str | None
    ) -> None:
        encoded = spec.model_dump_json()
        if row["spec"] == encoded:
            return
        previous = ServiceSpec.model_validate_json(row["spec"])
        # A new desired_state in the file is newer intent than an API start/stop override.
        override = row["run_override"]
        if previous.desired_state != spec.desired_state:
            override = None
        db.execute(
            "UPDATE services SET port = ?, domain = ?, spec = ?, run_override = ?, "
            "updated_at = ?, generation = generation + 1 WHERE name = ?",
            (spec.port, spec.domain, encoded, override, now, row["name"]),
        )

    def delete_service(
        self, name: str, *, purge: bool = False, owner: str | None = None
    ) -> ServiceRecord:
        """Remove ``name`` from the desired state; its host parts go at the next reconcile."""
        with self._write() as db:
            row = db.execute("SELECT * FROM services WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise NotFound(name)
            if owner is not None and row["owner"] != owner:
                raise Conflict([_ownership_issue(name, row["owner"])])
            record = _record(row)
            self._delete_row(db, row, purge=purge, now=iso(utc_now()))
            return record

    def _delete_row(
        self, db: sqlite3.Connection, row: sqlite3.Row, *, purge: bool, now: str | None
    ) -> None:
        db.execute("DELETE FROM services WHERE name = ?", (row["name"],))
        db.execute(
            "INSERT INTO deletions (name, service_id, owner, purge, requested_at) "
            "VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT(name) DO UPDATE SET purge = max(purge, excluded.purge)",
            (row["name"], row["id"], row["owner"], int(purge), now),
        )

    def pending_deletion(self, name: str) -> Deletion | None:
        rows = self._read("SELECT * FROM deletions WHERE name = ?", (name,))
        if not rows:
            return None
        return _deletion(rows[0])

    def pending_deletions(self) -> list[Deletion]:
        return [
            _deletion(row) for row in self._read("SELECT * FROM deletions ORDER BY requested_at")
        ]

    def finish_deletion(self, name: str) -> None:
        """The host no longer has ``name``: forget its tombstone, status and secrets."""
        with self._write() as db:
            db.execute("DELETE FROM deletions WHERE name = ?", (name,))
            if db.execute("SELECT 1 FROM services WHERE name = ?", (name,)).fetchone() is None:
                db.execute("DELETE FROM status WHERE name = ?", (name,))
                db.execute("DELETE FROM superuser_passwords WHERE name = ?", (name,))

    def set_desired_state(self, name: str, state: str) -> ServiceRecord:
        """Record start/stop intent: in the spec for API services, as an override for files."""
        if state not in ("running", "stopped"):
            raise ValueError(state)
        with self._write() as db:
            row = db.execute("SELECT * FROM services WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise NotFound(name)
            now = iso(utc_now())
            if row["owner"] == API_OWNER:
                spec = ServiceSpec.model_validate_json(row["spec"]).model_copy(
                    update={"desired_state": state}
                )
                db.execute(
                    "UPDATE services SET spec = ?, run_override = NULL, updated_at = ?, "
                    "generation = generation + 1 WHERE name = ?",
                    (spec.model_dump_json(), now, name),
                )
            else:
                spec = ServiceSpec.model_validate_json(row["spec"])
                override = None if spec.desired_state == state else state
                db.execute(
                    "UPDATE services SET run_override = ?, updated_at = ? WHERE name = ?",
                    (override, now, name),
                )
            return self._record_by_name(db, name)

    def get_service(self, key: str) -> ServiceRecord | None:
        """By project name or by id; a name wins (a name may look like another's id)."""
        rows = self._read(
            "SELECT * FROM services WHERE name = ? OR id = ? ORDER BY name = ? DESC LIMIT 1",
            (key, key, key),
        )
        return _record(rows[0]) if rows else None

    def _record_by_name(self, db: sqlite3.Connection, name: str) -> ServiceRecord:
        row = db.execute("SELECT * FROM services WHERE name = ?", (name,)).fetchone()
        return _record(row)

    def list_services(
        self,
        *,
        state: str | None = None,
        domain: str | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> tuple[list[ServiceRecord], int]:
        """A page of services in name order, filtered by status state and domain, and the total."""
        where, parameters = [], []
        if state is not None:
            where.append("COALESCE(status.state, 'deploying') = ?")
            parameters.append(state)
        if domain is not None:
            where.append("services.domain = ?")
            parameters.append(domain)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        base = f"FROM services LEFT JOIN status ON status.name = services.name {clause}"
        total = int(self._read(f"SELECT count(*) {base}", parameters)[0][0])
        page = self._read(
            f"SELECT services.* {base} ORDER BY services.name LIMIT ? OFFSET ?",
            [*parameters, -1 if limit is None else limit, offset],
        )
        return [_record(row) for row in page], total

    def running_ports(self) -> dict[str, int]:
        """Name -> port of every service whose desired state is running (for health probes;
        read straight from the columns, without parsing every spec)."""
        rows = self._read(
            "SELECT name, port FROM services WHERE COALESCE(run_override, "
            "json_extract(spec, '$.desired_state')) = 'running'"
        )
        return {row["name"]: int(row["port"]) for row in rows}

    def owned_generations(self, owner: str) -> dict[str, int]:
        """Name -> generation of every service ``owner`` holds (to tell what a sync changed)."""
        rows = self._read("SELECT name, generation FROM services WHERE owner = ?", (owner,))
        return {row["name"]: int(row["generation"]) for row in rows}

    def service_names(self) -> list[str]:
        return [row[0] for row in self._read("SELECT name FROM services ORDER BY name")]

    def claims(self) -> list[Claim]:
        return [
            Claim(row["name"], row["port"], row["domain"], row["owner"])
            for row in self._read("SELECT name, port, domain, owner FROM services")
        ]

    # -- status ------------------------------------------------------------------------

    def _ensure_status_row(self, db: sqlite3.Connection, name: str, now: str | None) -> None:
        db.execute(
            "INSERT INTO status (name, state, updated_at) VALUES (?, 'deploying', ?) "
            "ON CONFLICT(name) DO NOTHING",
            (name, now),
        )

    def get_status(self, name: str) -> ServiceStatus | None:
        rows = self._read("SELECT * FROM status WHERE name = ?", (name,))
        return _status(rows[0]) if rows else None

    def all_statuses(self) -> dict[str, ServiceStatus]:
        return {row["name"]: _status(row) for row in self._read("SELECT * FROM status")}

    def update_status(self, name: str, **changes: Any) -> ServiceStatus:
        """Set some status fields of ``name`` (creating the row); returns the new status."""
        with self._write() as db:
            self._upsert_status(db, name, changes)
            return _status(db.execute("SELECT * FROM status WHERE name = ?", (name,)).fetchone())

    def update_statuses(self, changes_by_name: Mapping[str, Mapping[str, Any]]) -> None:
        """``update_status`` for many services in one transaction (a round of probes).

        A service deleted while its probe ran is skipped: a status row written after
        ``finish_deletion`` would outlive it and greet a new service of the same name.
        """
        with self._write() as db:
            for name, changes in changes_by_name.items():
                if db.execute("SELECT 1 FROM services WHERE name = ?", (name,)).fetchone():
                    self._upsert_status(db, name, changes)

    def _upsert_status(self, db: sqlite3.Connection, name: str, changes: Mapping[str, Any]) -> None:
        unknown = set(changes) - set(STATUS_FIELDS)
        if unknown:
            raise ValueError(f"unknown status fields: {sorted(unknown)}")
        if "state" in changes and changes["state"] not in STATUS_STATES:
            raise ValueError(f"invalid state {changes['state']!r}")
        encoded = {key: _encode_status_value(value) for key, value in changes.items()}
        encoded["updated_at"] = iso(utc_now())
        updates = ", ".join(f"{column} = excluded.{column}" for column in encoded)
        encoded.setdefault("state", "deploying")  # only for a new row
        columns = ", ".join(encoded)
        placeholders = ", ".join("?" for _ in encoded)
        db.execute(
            # Column names come from STATUS_FIELDS (checked above), never from input.
            f"INSERT INTO status (name, {columns}) VALUES (?, {placeholders}) "  # noqa: S608
            f"ON CONFLICT(name) DO UPDATE SET {updates}",
            (name, *encoded.values()),
        )

    # -- events ------------------------------------------------------------------------

    def add_event(
        self, service: str, kind: str, message: str, details: dict[str, Any] | None = None
    ) -> Event:
        at = utc_now()
        payload = json.dumps(details or {}, sort_keys=True, default=str)
        with self._write() as db:
            cursor = db.execute(
                "INSERT INTO events (service, at, kind, message, details) VALUES (?, ?, ?, ?, ?)",
                (service, iso(at), kind, message, payload),
            )
            event_id = int(cursor.lastrowid or 0)
        return Event(event_id, service, at, kind, message, json.loads(payload))

    def list_events(
        self, service: str, *, limit: int = 100, before: int | None = None
    ) -> list[Event]:
        """Newest first; ``before`` pages back from an event id."""
        rows = self._read(
            "SELECT * FROM events WHERE service = ? AND id < ? ORDER BY id DESC LIMIT ?",
            (service, before if before is not None else 2**62, limit),
        )
        return [
            Event(
                row["id"],
                row["service"],
                _dt(row["at"]),
                row["kind"],
                row["message"],
                json.loads(row["details"]),
            )
            for row in rows
        ]

    def count_events(self, service: str) -> int:
        return int(self._read("SELECT count(*) FROM events WHERE service = ?", (service,))[0][0])

    # -- one-time superuser passwords --------------------------------------------------

    def put_superuser_password(self, name: str, password: str) -> None:
        with self._write() as db:
            db.execute(
                "INSERT INTO superuser_passwords (name, password, created_at) VALUES (?, ?, ?) "
                "ON CONFLICT(name) DO UPDATE SET password = excluded.password",
                (name, password, iso(utc_now())),
            )

    def take_superuser_password(self, name: str) -> str | None:
        """Read and forget: the password exists in the store only until it is used."""
        with self._write() as db:
            row = db.execute(
                "SELECT password FROM superuser_passwords WHERE name = ?", (name,)
            ).fetchone()
            db.execute("DELETE FROM superuser_passwords WHERE name = ?", (name,))
        return str(row["password"]) if row else None

    def peek_superuser_password(self, name: str) -> str | None:
        rows = self._read("SELECT password FROM superuser_passwords WHERE name = ?", (name,))
        return str(rows[0]["password"]) if rows else None

    # -- spec file problems ------------------------------------------------------------

    def set_file_issues(self, path: str, issues: Sequence[FieldIssue]) -> None:
        with self._write() as db:
            if issues:
                db.execute(
                    "INSERT INTO file_issues (path, issues, updated_at) VALUES (?, ?, ?) "
                    "ON CONFLICT(path) DO UPDATE SET issues = excluded.issues, "
                    "updated_at = excluded.updated_at",
                    (path, json.dumps([issue.as_dict() for issue in issues]), iso(utc_now())),
                )
            else:
                db.execute("DELETE FROM file_issues WHERE path = ?", (path,))

    def file_issues(self) -> dict[str, list[FieldIssue]]:
        result: dict[str, list[FieldIssue]] = {}
        for row in self._read("SELECT path, issues FROM file_issues ORDER BY path"):
            result[row["path"]] = [
                FieldIssue(
                    field=item["field"],
                    message=item["message"],
                    code=ErrorCode(item["code"]),
                    file=item.get("file"),
                    line=item.get("line"),
                )
                for item in json.loads(row["issues"])
            ]
        return result

    # -- API tokens --------------------------------------------------------------------

    def create_token(self, name: str) -> tuple[str, TokenRecord]:
        """A new random token; the plaintext is returned here once and stored only hashed."""
        plaintext = TOKEN_PREFIX + secrets.token_urlsafe(32)
        token_id = secrets.token_hex(6)
        now = iso(utc_now())
        with self._write() as db:
            db.execute(
                "INSERT INTO api_tokens (id, name, token_hash, created_at) VALUES (?, ?, ?, ?)",
                (token_id, name, _hash_secret(plaintext), now),
            )
        record = self.get_token(token_id)
        assert record is not None
        return plaintext, record

    def get_token(self, token_id: str) -> TokenRecord | None:
        rows = self._read("SELECT * FROM api_tokens WHERE id = ?", (token_id,))
        return _token(rows[0]) if rows else None

    def list_tokens(self) -> list[TokenRecord]:
        return [_token(row) for row in self._read("SELECT * FROM api_tokens ORDER BY created_at")]

    def authenticate_token(self, plaintext: str) -> TokenRecord | None:
        """The live token with this plaintext, or None; marks it used."""
        if not plaintext.startswith(TOKEN_PREFIX):
            return None
        digest = _hash_secret(plaintext)
        rows = self._read("SELECT * FROM api_tokens WHERE token_hash = ?", (digest,))
        # The lookup is by hash; the comparison is constant-time all the same.
        if not rows or not hmac.compare_digest(rows[0]["token_hash"], digest):
            return None
        if rows[0]["revoked_at"] is not None:
            return None
        with self._write() as db:
            db.execute(
                "UPDATE api_tokens SET last_used_at = ? WHERE id = ?",
                (iso(utc_now()), rows[0]["id"]),
            )
        return self.get_token(rows[0]["id"])

    def revoke_token(self, token_id: str) -> bool:
        with self._write() as db:
            cursor = db.execute(
                "UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                (iso(utc_now()), token_id),
            )
            return cursor.rowcount == 1

    # -- admin accounts and dashboard sessions -----------------------------------------

    def create_admin(self, email: str, password_hash: str) -> AdminRecord:
        admin_id = secrets.token_hex(6)
        with self._write() as db:
            try:
                db.execute(
                    "INSERT INTO admins (id, email, password_hash, created_at) VALUES (?, ?, ?, ?)",
                    (admin_id, email, password_hash, iso(utc_now())),
                )
            except sqlite3.IntegrityError:
                raise Conflict(
                    [
                        FieldIssue(
                            "email", "an admin with this e-mail exists", ErrorCode.INVALID_VALUE
                        )
                    ]
                ) from None
        admin = self.get_admin(email)
        assert admin is not None
        return admin

    def set_admin_password(self, email: str, password_hash: str) -> bool:
        with self._write() as db:
            cursor = db.execute(
                "UPDATE admins SET password_hash = ?, failed_logins = 0 WHERE email = ?",
                (password_hash, email),
            )
            return cursor.rowcount == 1

    def get_admin(self, email: str) -> AdminRecord | None:
        rows = self._read("SELECT * FROM admins WHERE email = ?", (email,))
        return _admin(rows[0]) if rows else None

    def record_login_failure(self, admin_id: str) -> int:
        with self._write() as db:
            db.execute(
                "UPDATE admins SET failed_logins = failed_logins + 1, last_failed_at = ? "
                "WHERE id = ?",
                (iso(utc_now()), admin_id),
            )
            row = db.execute(
                "SELECT failed_logins FROM admins WHERE id = ?", (admin_id,)
            ).fetchone()
        return int(row[0]) if row else 0

    def reset_login_failures(self, admin_id: str) -> None:
        with self._write() as db:
            db.execute(
                "UPDATE admins SET failed_logins = 0, last_failed_at = NULL WHERE id = ?",
                (admin_id,),
            )

    def create_session(self, admin_id: str, ttl: timedelta) -> tuple[str, datetime]:
        plaintext = SESSION_PREFIX + secrets.token_urlsafe(32)
        now = utc_now()
        expires = now + ttl
        with self._write() as db:
            db.execute("DELETE FROM sessions WHERE expires_at < ?", (iso(now),))
            db.execute(
                "INSERT INTO sessions (token_hash, admin_id, created_at, expires_at) "
                "VALUES (?, ?, ?, ?)",
                (_hash_secret(plaintext), admin_id, iso(now), iso(expires)),
            )
        return plaintext, expires

    def authenticate_session(self, plaintext: str) -> AdminRecord | None:
        if not plaintext.startswith(SESSION_PREFIX):
            return None
        rows = self._read(
            "SELECT admins.*, sessions.expires_at AS session_expires FROM sessions "
            "JOIN admins ON admins.id = sessions.admin_id WHERE sessions.token_hash = ?",
            (_hash_secret(plaintext),),
        )
        if not rows or _dt(rows[0]["session_expires"]) <= utc_now():
            return None
        return _admin(rows[0])

    def revoke_session(self, plaintext: str) -> None:
        with self._write() as db:
            db.execute("DELETE FROM sessions WHERE token_hash = ?", (_hash_secret(plaintext),))


def _moved_between_files(deletion: sqlite3.Row) -> bool:
    """A file dropped the service without asking for a purge: another file may adopt it."""
    return str(deletion["owner"]).startswith(FILE_OWNER_PREFIX) and not deletion["purge"]


def _ownership_issue(name: str, holder: str, newcomer: str | None = None) -> FieldIssue:
    holder_file = owner_file(holder)
    if holder_file is not None:
        return FieldIssue(
            "project_name",
            f"Service '{name}' is defined in spec file {holder_file}; change it there",
            ErrorCode.OWNED_BY_FILE,
        )
    where = f" ({newcomer})" if newcomer else ""
    return FieldIssue(
        "project_name",
        f"Service '{name}' already exists, created through the API{where}",
        ErrorCode.OWNED_BY_OTHER_SOURCE,
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


def _dt(text: str) -> datetime:
    value = parse_iso(text)
    assert value is not None
    return value


def _record(row: sqlite3.Row) -> ServiceRecord:
    return ServiceRecord(
        id=row["id"],
        spec=ServiceSpec.model_validate_json(row["spec"]),
        owner=row["owner"],
        run_override=row["run_override"],
        created_at=_dt(row["created_at"]),
        updated_at=_dt(row["updated_at"]),
        generation=int(row["generation"]),
    )


def _deletion(row: sqlite3.Row) -> Deletion:
    return Deletion(row["name"], row["service_id"], bool(row["purge"]), _dt(row["requested_at"]))


def _encode_status_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, bool):
        return int(value)
    return value


def _status(row: sqlite3.Row) -> ServiceStatus:
    def flag(value: Any) -> bool | None:
        return None if value is None else bool(value)

    return ServiceStatus(
        name=row["name"],
        state=row["state"],
        systemd_config_hash=row["systemd_config_hash"],
        caddy_config_hash=row["caddy_config_hash"],
        config_match=flag(row["config_match"]),
        caddy_status=row["caddy_status"],
        active_state=row["active_state"],
        sub_state=row["sub_state"],
        pid=row["pid"],
        memory_bytes=row["memory_bytes"],
        cpu_usage_nsec=row["cpu_usage_nsec"],
        restarts=row["restarts"],
        deployed_version=row["deployed_version"],
        failed_version=row["failed_version"],
        cpu_percent=row["cpu_percent"],
        observed_generation=row["observed_generation"],
        last_health_check=parse_iso(row["last_health_check"]),
        health_ok=flag(row["health_ok"]),
        health_failures=int(row["health_failures"] or 0),
        last_error=row["last_error"],
        updated_at=parse_iso(row["updated_at"]),
    )


def _token(row: sqlite3.Row) -> TokenRecord:
    return TokenRecord(
        id=row["id"],
        name=row["name"],
        created_at=_dt(row["created_at"]),
        last_used_at=parse_iso(row["last_used_at"]),
        revoked_at=parse_iso(row["revoked_at"]),
    )


def _admin(row: sqlite3.Row) -> AdminRecord:
    return AdminRecord(
        id=row["id"],
        email=row["email"],
        password_hash=row["password_hash"],
        created_at=_dt(row["created_at"]),
        failed_logins=int(row["failed_logins"]),
        last_failed_at=parse_iso(row["last_failed_at"]),
    )
