"""The store's schema: every migration, once for both backends, and how each backend reads it.

Migration ``n`` of ``MIGRATIONS`` brings a database from schema version ``n - 1`` to ``n``
(SQLite's ``PRAGMA user_version``; PostgreSQL's own version table). A step is SQL in the
dialect both backends read, or a ``Migration`` where they differ; ``sqlite_script`` and
``postgresql_script`` say what each backend runs. A new migration is one entry at the end.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Migration:
    """One step of the schema where the backends' SQL differs: ``sql`` runs on both, then
    the backend's own part (``sqlite`` or ``postgresql``). A plain string in ``MIGRATIONS``
    is a step in the shared dialect alone (``postgresql_script`` says what that is)."""

    sql: str = ""
    sqlite: str = ""
    postgresql: str = ""


# What a request's receipt keeps (``specs.store.receipts``): operations' and seeds' columns.
_RECEIPT_COLUMNS = """requested_at TEXT NOT NULL,
        requested_by TEXT NOT NULL,
        finished_at TEXT,
        outcome TEXT CHECK (outcome IN ('done', 'failed')),
        result TEXT NOT NULL DEFAULT '{}'"""

MIGRATIONS: tuple[str | Migration, ...] = (
    # 1: the initial schema. What the backends say differently: an e-mail unique without
    # case (SQLite's NOCASE, PostgreSQL's index on lower()), and so the sessions referring
    # to it, and the trigger keeping events append-only.
    Migration(
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
    CREATE TABLE api_tokens (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        token_hash TEXT NOT NULL UNIQUE,
        created_at TEXT NOT NULL,
        last_used_at TEXT,
        revoked_at TEXT
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
        sqlite="""
    CREATE TRIGGER events_are_append_only_update BEFORE UPDATE ON events
        BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;
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
    """,
        postgresql="""
    CREATE FUNCTION events_are_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'events are append-only'; END $$;
    CREATE TRIGGER events_are_append_only_update BEFORE UPDATE ON events
        FOR EACH ROW EXECUTE FUNCTION events_are_append_only();
    CREATE TABLE admins (
        id TEXT PRIMARY KEY,
        email TEXT NOT NULL,
        password_hash TEXT NOT NULL,
        created_at TEXT NOT NULL,
        failed_logins BIGINT NOT NULL DEFAULT 0,
        last_failed_at TEXT
    );
    CREATE UNIQUE INDEX admins_by_email ON admins (lower(email));
    CREATE TABLE sessions (
        token_hash TEXT PRIMARY KEY,
        admin_id TEXT NOT NULL REFERENCES admins(id) ON DELETE CASCADE,
        created_at TEXT NOT NULL,
        expires_at TEXT NOT NULL
    );
    """,
    ),
    # 2: the first superusers the agent has created, per service (JSON list of e-mails);
    # before, a marker file in the instance's own folder said so, which it could change.
    """
    ALTER TABLE status ADD COLUMN superusers TEXT NOT NULL DEFAULT '[]';
    """,
    # 3: operations asked of a service's reconciles (a snapshot, a verification, a
    # restore, a snapshot's deletion), in order, with their outcome.
    f"""
    CREATE TABLE operations (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        service TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('snapshot', 'verify', 'restore', 'delete')),
        argument TEXT,
        {_RECEIPT_COLUMNS}
    );
    CREATE INDEX operations_pending ON operations(service, id) WHERE finished_at IS NULL;
    """,
    # 4: PocketBase's own settings: a keyed hash of what the agent last applied (secrets
    # included, so it reveals none), when it last looked, and at which process.
    """
    ALTER TABLE status ADD COLUMN settings_hash TEXT;
    ALTER TABLE status ADD COLUMN settings_checked_at TEXT;
    ALTER TABLE status ADD COLUMN settings_pid INTEGER;
    """,
    # 5: where a new service's first data comes from (a snapshot, a live copy of another
    # service, an imported archive, an archived folder), and how seeding it ended.
    f"""
    CREATE TABLE seeds (
        service TEXT PRIMARY KEY,
        source TEXT NOT NULL,
        {_RECEIPT_COLUMNS}
    );
    """,
    # 6: every domain a service answers to (its domain and its proxy aliases), unique
    # across services; and the certificate Caddy serves for the domain, when it has one.
    """
    CREATE TABLE service_domains (
        domain TEXT PRIMARY KEY,
        name TEXT NOT NULL REFERENCES services(name) ON DELETE CASCADE
    );
    CREATE INDEX service_domains_by_name ON service_domains(name);
    INSERT INTO service_domains (domain, name) SELECT domain, name FROM services;
    ALTER TABLE status ADD COLUMN certificate_not_before TEXT;
    ALTER TABLE status ADD COLUMN certificate_not_after TEXT;
    ALTER TABLE status ADD COLUMN certificate_issuer TEXT;
    ALTER TABLE status ADD COLUMN certificate_checked_at TEXT;
    """,
    # 7: app deploys and rollbacks are operations too (SQLite cannot change a CHECK in
    # place: the table is copied into one that allows them; PostgreSQL replaces the CHECK).
    Migration(
        sqlite=f"""
    CREATE TABLE operations_new (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        service TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (
            kind IN ('snapshot', 'verify', 'restore', 'delete', 'deploy', 'rollback')
        ),
        argument TEXT,
        {_RECEIPT_COLUMNS}
    );
    INSERT INTO operations_new SELECT * FROM operations;
    DROP TABLE operations;
    ALTER TABLE operations_new RENAME TO operations;
    CREATE INDEX operations_pending ON operations(service, id) WHERE finished_at IS NULL;
    """,  # noqa: S608 (only this module's constant is put in)
        postgresql="""
    ALTER TABLE operations DROP CONSTRAINT operations_kind_check;
    ALTER TABLE operations ADD CONSTRAINT operations_kind_check CHECK (
        kind IN ('snapshot', 'verify', 'restore', 'delete', 'deploy', 'rollback')
    );
    """,
    ),
    # 8: webhooks, and their outbox: one row per event and webhook, written in the event's
    # own transaction (so no event is lost between the two), claimed before it is sent and
    # marked after the answer; and the log of each attempt (code, time) per webhook.
    """
    CREATE TABLE webhooks (
        id TEXT PRIMARY KEY,
        url TEXT NOT NULL,
        secret TEXT NOT NULL,
        kinds TEXT NOT NULL DEFAULT '[]',
        services TEXT NOT NULL DEFAULT '[]',
        created_at TEXT NOT NULL,
        created_by TEXT NOT NULL
    );
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        webhook_id TEXT NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,
        event_id INTEGER NOT NULL REFERENCES events(id),
        state TEXT NOT NULL CHECK (state IN ('pending', 'sending', 'delivered', 'failed')),
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        UNIQUE (webhook_id, event_id)
    );
    CREATE INDEX outbox_due ON outbox(next_attempt_at) WHERE state = 'pending';
    CREATE TABLE deliveries (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        outbox_id INTEGER NOT NULL REFERENCES outbox(id) ON DELETE CASCADE,
        webhook_id TEXT NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,
        event_id INTEGER NOT NULL,
        attempt INTEGER NOT NULL,
        at TEXT NOT NULL,
        duration_ms REAL NOT NULL,
        status_code INTEGER,
        error TEXT,
        outcome TEXT NOT NULL CHECK (outcome IN ('delivered', 'retry', 'failed'))
    );
    CREATE INDEX deliveries_by_webhook ON deliveries(webhook_id, id);
    """,
    # 9: the first answer of each creating write sent with an Idempotency-Key, sealed with a
    # key derived from the caller's Idempotency-Key (api/idempotency.py): a retry gets it
    # back, nobody reading the database does. ``lookup`` is a hash, never the key itself.
    """
    CREATE TABLE idempotency_keys (
        lookup TEXT PRIMARY KEY,
        body_hash TEXT NOT NULL,
        status INTEGER,
        sealed BLOB,
        created_at TEXT NOT NULL,
        expires_at TEXT NOT NULL
    );
    CREATE INDEX idempotency_keys_by_expiry ON idempotency_keys(expires_at);
    """,
    # 10: the nodes
    # of a fleet, each with the lease its agent renews, and the node each service runs on
    # ('' until an agent adopts it). A port is unique per node: PostgreSQL's store holds
    # many nodes; SQLite's is one host's, whose UNIQUE(port) is already that.
    Migration(
        sql="""
    CREATE TABLE nodes (
        name TEXT PRIMARY KEY,
        api_address TEXT NOT NULL,
        public_address TEXT NOT NULL,
        memory_bytes INTEGER NOT NULL,
        cpus INTEGER NOT NULL,
        registered_at TEXT NOT NULL,
        renewed_at TEXT NOT NULL,
        lease_expires_at TEXT NOT NULL
    );
    ALTER TABLE services ADD COLUMN node TEXT NOT NULL DEFAULT '';
    CREATE INDEX services_by_node ON services(node);
    ALTER TABLE deletions ADD COLUMN node TEXT NOT NULL DEFAULT '';
    """,
        # A change to a service (or a deletion, or an operation asked of it) is told to
        # the agents at commit: NOTIFY with "<node> <name>", so that the service's own
        # node reconciles it at once, whichever node's API wrote it.
        postgresql="""
    ALTER TABLE services DROP CONSTRAINT services_port_key;
    ALTER TABLE services ADD CONSTRAINT services_node_port_key UNIQUE (node, port);
    CREATE FUNCTION services_changed() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP <> 'INSERT' THEN
                PERFORM pg_notify('pockestrator_services', OLD.node || ' ' || OLD.name);
            END IF;
            IF TG_OP <> 'DELETE' THEN
                PERFORM pg_notify('pockestrator_services', NEW.node || ' ' || NEW.name);
            END IF;
            RETURN NULL;
        END $$;
    CREATE TRIGGER services_notify AFTER INSERT OR UPDATE OR DELETE ON services
        FOR EACH ROW EXECUTE FUNCTION services_changed();
    CREATE FUNCTION operations_changed() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('pockestrator_services', node || ' ' || NEW.service)
                FROM services WHERE name = NEW.service;
            RETURN NULL;
        END $$;
    CREATE TRIGGER operations_notify AFTER INSERT ON operations
        FOR EACH ROW EXECUTE FUNCTION operations_changed();
    """,
    ),
    # 11: moves of a service from one node to another (specs/store/moves.py), each step
    # recorded so an interrupted move is never taken for a finished one; one unfinished
    # move per service. ``lost_noted_at``: when a live node recorded that this node's
    # lease had ended (its services' node_lost events and alerts, written once).
    Migration(
        sql="""
    ALTER TABLE nodes ADD COLUMN lost_noted_at TEXT;
    CREATE TABLE moves (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        service TEXT NOT NULL,
        source TEXT NOT NULL,
        target TEXT NOT NULL,
        from_backup INTEGER NOT NULL DEFAULT 0,
        state TEXT NOT NULL,
        snapshot TEXT,
        final_snapshot TEXT,
        requested_at TEXT NOT NULL,
        requested_by TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        finished_at TEXT,
        error TEXT
    );
    CREATE UNIQUE INDEX moves_one_unfinished ON moves(service) WHERE finished_at IS NULL;
    """,
        # A move's every step is told to both of its nodes, as a service's change is.
        postgresql="""
    CREATE FUNCTION moves_changed() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('pockestrator_services', NEW.source || ' ' || NEW.service);
            PERFORM pg_notify('pockestrator_services', NEW.target || ' ' || NEW.service);
            RETURN NULL;
        END $$;
    CREATE TRIGGER moves_notify AFTER INSERT OR UPDATE ON moves
        FOR EACH ROW EXECUTE FUNCTION moves_changed();
    """,
    ),
    # 12: a status that changes what a reader sees (state, the generation reconciled,
    # health, the error) is told to every agent at commit, "@status <name>" ('@' is in no
    # node's name), so that any node's API waits for, and watches, a service another node
    # runs, without polling.
    Migration(
        postgresql="""
    CREATE FUNCTION status_changed() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('pockestrator_services', '@status ' || NEW.name);
            RETURN NULL;
        END $$;
    CREATE TRIGGER status_notify AFTER UPDATE ON status FOR EACH ROW
        WHEN (OLD.state IS DISTINCT FROM NEW.state
            OR OLD.observed_generation IS DISTINCT FROM NEW.observed_generation
            OR OLD.health_ok IS DISTINCT FROM NEW.health_ok
            OR OLD.last_error IS DISTINCT FROM NEW.last_error
            OR OLD.deployed_version IS DISTINCT FROM NEW.deployed_version)
        EXECUTE FUNCTION status_changed();
    """,
    ),
    # 13: when a move's target first served the service after the switch (its health
    # probe answered, or it ran as wanted), written with that status: from then on the
    # target may hold writes the source never saw, and the move is never rolled back, even
    # if the status reads an error before the mover looks.
    "ALTER TABLE moves ADD COLUMN served_at TEXT;",
)


def sqlite_script(step: str | Migration) -> str:
    return step if isinstance(step, str) else step.sql + step.sqlite


# The shared dialect is SQLite's SQL as PostgreSQL also reads it, but for column types:
# SQLite's INTEGER holds 64 bits (PostgreSQL's INTEGER 32), its REAL is a double, and an
# AUTOINCREMENT key is PostgreSQL's identity column; a BLOB is BYTEA.
_POSTGRESQL_TYPES = (
    (
        re.compile(r"\bINTEGER PRIMARY KEY AUTOINCREMENT\b"),
        "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
    ),
    (re.compile(r"\bINTEGER\b"), "BIGINT"),
    (re.compile(r"\bREAL\b"), "DOUBLE PRECISION"),
    (re.compile(r"\bBLOB\b"), "BYTEA"),
)


def postgresql_script(step: str | Migration) -> str:
    """The step for PostgreSQL: the shared part with its types translated, then its own."""
    shared, own = (step, "") if isinstance(step, str) else (step.sql, step.postgresql)
    for pattern, replacement in _POSTGRESQL_TYPES:
        shared = pattern.sub(replacement, shared)
    return shared + own
