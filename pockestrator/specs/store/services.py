"""Desired services: one row per service whatever its source, and deletions until done.

``owner`` says where a service comes from (``api`` or ``file:<path>``) and only that source
may change or delete it: the API gets ``OWNED_BY_FILE`` for a file's service, a file gets
``OWNED_BY_OTHER_SOURCE`` for a name the API holds. A name, port or domain held by another
service is refused by ``claims.taken_claims``, called inside the same write transaction
(and ``claims.claim_domains`` records the domains a written spec answers to).

A deleted service leaves a row in ``deletions`` until the reconciler has removed it from the
host (``finish_deletion``); the row records whether its data is archived or purged, and
keeps the name from being created again meanwhile. A spec dropped by one file and picked up
by another (a move between files) carries on without a deletion. Each change of a spec
increments ``generation``, which the reconciler's status echoes back when it has acted on it.
"""

from __future__ import annotations

import contextlib
import json
import secrets
from collections.abc import Iterator, Sequence

from pockestrator.database import Connection, Row
from pockestrator.specs.errors import ErrorCode, FieldIssue
from pockestrator.specs.model import ServiceSpec
from pockestrator.specs.pocketbase_settings import secret_sources
from pockestrator.specs.store.base import StorePart
from pockestrator.specs.store.claims import claim_domains, taken_claims
from pockestrator.specs.store.outbox import fan_out
from pockestrator.specs.store.placement import node_issue, place
from pockestrator.specs.store.records import (
    API_OWNER,
    FILE_OWNER_PREFIX,
    Conflict,
    Deletion,
    NotFound,
    ServiceRecord,
    ServiceSummary,
    file_owner,
    owner_file,
)
from pockestrator.specs.store.rows import record_of
from pockestrator.specs.store.secret_placement import secret_values, secrets_elsewhere
from pockestrator.specs.store.seeds import SeedSource, write_seed
from pockestrator.specs.store.status import insert_first_status

_NO_LIMIT = 2**63 - 1


class Services(StorePart):
    @contextlib.contextmanager
    def _secrets_kept(self, spec: ServiceSpec) -> Iterator[ServiceSpec]:
        """``spec`` with its secret values kept in files (``secrets``) for one write: the
        files are removed if the write fails, and those it replaced once it succeeded."""
        kept, written = self._secrets.keep(spec)
        try:
            yield kept
        except BaseException:
            for path in written:
                path.unlink(missing_ok=True)
            raise
        self._secrets.prune(kept)

    def create_service(
        self,
        spec: ServiceSpec,
        owner: str = API_OWNER,
        *,
        seed: SeedSource | None = None,
        by: str = "",
    ) -> ServiceRecord:
        """Insert a new service, with where its first data comes from (``seed``); a taken
        name, port or domain raises ``Conflict`` (all of them at once)."""
        valued = secret_values(spec)
        with self._secrets_kept(spec) as spec, self._database.write() as db:
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
            node, placed = self._place(db, spec)
            taken = taken_claims(db, spec, node=node)
            unknown = node_issue(db, spec, self.node)
            elsewhere = secrets_elsewhere(valued, node, self.node)
            if taken or unknown or elsewhere:
                raise Conflict([*([unknown] if unknown else []), *taken, *elsewhere])
            now = self._now()
            self._insert_service(db, spec, owner, now, node=node)
            if placed is not None:
                # In the creating transaction, and to the webhooks' outbox as every event is.
                event = db.execute(
                    "INSERT INTO events (service, at, kind, message, details) "
                    "VALUES (?, ?, 'placed', ?, ?) RETURNING id",
                    (spec.project_name, now, placed[0], json.dumps(placed[1], sort_keys=True)),
                ).fetchone()
                fan_out(db, int(event[0]), spec.project_name, "placed", now)
            write_seed(db, spec.project_name, seed, by or owner, now)
            record = _record_by_name(db, spec.project_name)
        self.changes.record([record.name])
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
        valued = secret_values(spec)
        with self._secrets_kept(spec) as spec, self._database.write() as db:
            row = db.execute(
                "SELECT owner, spec, node FROM services WHERE name = ?", (name,)
            ).fetchone()
            if row is None:
                raise NotFound(name)
            if row["owner"] != owner:
                raise Conflict([_ownership_issue(name, row["owner"])])
            if row["spec"] == spec.model_dump_json():
                return _record_by_name(db, name)
            if spec.node is not None and spec.node != row["node"]:
                raise Conflict([_move_issue(name, row["node"])])
            taken = taken_claims(db, spec, replacing=name, node=row["node"])
            taken += secrets_elsewhere(valued, row["node"], self.node)
            if taken:
                raise Conflict(taken)
            db.execute(
                "UPDATE services SET port = ?, domain = ?, spec = ?, updated_at = ?, "
                "generation = generation + 1 WHERE name = ?",
                (spec.port, spec.domain, spec.model_dump_json(), self._now(), name),
            )
            claim_domains(db, spec)
            record = _record_by_name(db, name)
        self.changes.record([name])
        return record

    def sync_file(self, path: str, specs: Sequence[ServiceSpec]) -> dict[str, list[FieldIssue]]:
        """Make the services owned by spec file ``path`` exactly ``specs``.

        Services of this file that are no longer in it are deleted (data archived). A spec
        whose name, port or domain another source holds is not applied; its conflicts are
        returned by name, and the service that holds the claim is untouched.
        """
        owner = file_owner(path)
        conflicts: dict[str, list[FieldIssue]] = {}
        wanted = {spec.project_name: spec for spec in specs}
        now = self._now()
        touched: list[str] = []
        with self._database.write() as db:
            owned = {
                row["name"]: row
                for row in db.execute("SELECT * FROM services WHERE owner = ?", (owner,))
            }
            for name in owned.keys() - wanted.keys():
                self._delete_row(db, owned[name], purge=False, now=now)
                touched.append(name)
            for name, spec in wanted.items():
                holder = db.execute("SELECT owner FROM services WHERE name = ?", (name,)).fetchone()
                ours = holder is not None and holder["owner"] == owner
                if holder is not None and not ours and owner_file(holder["owner"]) is None:
                    conflicts[name] = [_ownership_issue(name, holder["owner"], newcomer=path)]
                    continue
                if holder is None or ours:
                    deletion = db.execute(
                        "SELECT owner, purge FROM deletions WHERE name = ?", (name,)
                    ).fetchone()
                    if deletion is not None and _moved_between_files(deletion):
                        # A spec moved from one file to another: the service carries on.
                        db.execute("DELETE FROM deletions WHERE name = ?", (name,))
                    elif deletion is not None:
                        conflicts[name] = [
                            FieldIssue(
                                "project_name",
                                f"Service '{name}' is still being deleted; it will be created "
                                "after",
                                ErrorCode.DELETION_PENDING,
                            )
                        ]
                        continue
                # Another file holding the name is a taken claim like a port or a domain.
                node = owned[name]["node"] if ours else self.node
                if spec.node is not None and spec.node != node:
                    # A spec file's service runs on the node whose spec folder holds it.
                    conflicts[name] = [_move_issue(name, node)]
                    continue
                taken = taken_claims(db, spec, replacing=name if ours else None, node=node)
                if taken:
                    conflicts[name] = taken
                elif ours:
                    if self._update_file_spec(db, owned[name], spec, now):
                        touched.append(name)
                else:
                    self._insert_service(db, spec, owner, now)
                    touched.append(name)
        self.changes.record(touched)
        return conflicts

    def _place(
        self, db: Connection, spec: ServiceSpec
    ) -> tuple[str, tuple[str, dict[str, object]] | None]:
        now = self._database.server_time(db) or self._clock.now()
        return place(db, spec, now, self.node)

    def _insert_service(
        self, db: Connection, spec: ServiceSpec, owner: str, now: str, *, node: str | None = None
    ) -> None:
        """A new row with a fresh id (on ``node``, else this store's), and its status row."""
        _no_secret_values(spec)
        db.execute(
            "INSERT INTO services (id, name, port, domain, owner, spec, created_at, updated_at, "
            "node) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                secrets.token_hex(6),
                spec.project_name,
                spec.port,
                spec.domain,
                owner,
                spec.model_dump_json(),
                now,
                now,
                self.node if node is None else node,
            ),
        )
        claim_domains(db, spec)
        insert_first_status(db, spec.project_name, now)

    def _update_file_spec(self, db: Connection, row: Row, spec: ServiceSpec, now: str) -> bool:
        """Write the file's new spec; False when it is the stored one (nothing changed)."""
        _no_secret_values(spec)
        encoded = spec.model_dump_json()
        if row["spec"] == encoded:
            return False
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
        claim_domains(db, spec)
        return True

    def delete_service(
        self, name: str, *, purge: bool = False, owner: str | None = None
    ) -> ServiceRecord:
        """Remove ``name`` from the desired state; its host parts go at the next reconcile."""
        with self._database.write() as db:
            row = db.execute("SELECT * FROM services WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise NotFound(name)
            if owner is not None and row["owner"] != owner:
                raise Conflict([_ownership_issue(name, row["owner"])])
            record = _record(row)
            self._delete_row(db, row, purge=purge, now=self._now())
        self.changes.record([name])
        return record

    def _delete_row(self, db: Connection, row: Row, *, purge: bool, now: str) -> None:
        db.execute("DELETE FROM services WHERE name = ?", (row["name"],))
        db.execute(
            "INSERT INTO deletions (name, service_id, owner, purge, requested_at, node) "
            "VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT(name) DO UPDATE SET purge = CASE WHEN excluded.purge = 1 THEN 1 "
            "ELSE deletions.purge END",
            (row["name"], row["id"], row["owner"], int(purge), now, row["node"]),
        )

    def pending_deletion(self, name: str) -> Deletion | None:
        rows = self._database.read("SELECT * FROM deletions WHERE name = ?", (name,))
        if not rows:
            return None
        return _deletion(rows[0])

    def pending_deletions(self) -> list[Deletion]:
        return [
            _deletion(row)
            for row in self._database.read("SELECT * FROM deletions ORDER BY requested_at")
        ]

    def finish_deletion(self, name: str) -> None:
        """The host no longer has ``name``: forget its tombstone, status and secrets."""
        with self._database.write() as db:
            db.execute("DELETE FROM deletions WHERE name = ?", (name,))
            gone = db.execute("SELECT 1 FROM services WHERE name = ?", (name,)).fetchone() is None
            if gone:
                db.execute("DELETE FROM status WHERE name = ?", (name,))
                db.execute("DELETE FROM superuser_passwords WHERE name = ?", (name,))
                db.execute("DELETE FROM seeds WHERE service = ?", (name,))
        if gone:
            self._secrets.forget(name)

    def set_desired_state(self, name: str, state: str) -> ServiceRecord:
        """Record start/stop intent: in the spec for API services, as an override for files."""
        if state not in ("running", "stopped"):
            raise ValueError(state)
        with self._database.write() as db:
            row = db.execute("SELECT * FROM services WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise NotFound(name)
            now = self._now()
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
            record = _record_by_name(db, name)
        self.changes.record([name])
        return record

    def get_service(self, key: str) -> ServiceRecord | None:
        """By project name or by id; a name wins (a name may look like another's id)."""
        rows = self._database.read(
            "SELECT * FROM services WHERE name = ? OR id = ? ORDER BY name = ? DESC LIMIT 1",
            (key, key, key),
        )
        return _record(rows[0]) if rows else None

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
        total = int(self._database.read(f"SELECT count(*) {base}", parameters)[0][0])
        # No limit is the largest one (SQLite's -1 is an error in PostgreSQL).
        page = self._database.read(
            f"SELECT services.* {base} ORDER BY services.name LIMIT ? OFFSET ?",
            [*parameters, _NO_LIMIT if limit is None else limit, offset],
        )
        return [_record(row) for row in page], total

    def running_ports(self) -> dict[str, int]:
        """Name -> port of every service of this store's node whose desired state is
        running (for health probes, which reach them on this host; read straight from
        the columns, without parsing every spec)."""
        desired = self._database.json_text("spec", "desired_state")
        rows = self._database.read(
            # The expression is the backend's own, for a constant key.
            f"SELECT name, port FROM services WHERE COALESCE(run_override, {desired}) "  # noqa: S608
            "= 'running' AND node = ?",
            (self.node,),
        )
        return {row["name"]: int(row["port"]) for row in rows}

    def owned_generations(self, owner: str) -> dict[str, int]:
        """Name -> generation of every service ``owner`` holds (to tell what a sync changed)."""
        rows = self._database.read(
            "SELECT name, generation FROM services WHERE owner = ?", (owner,)
        )
        return {row["name"]: int(row["generation"]) for row in rows}

    def file_owned_rows(self) -> dict[str, frozenset[tuple[str, int, str, str]]]:
        """Owner -> (name, generation, node, updated_at) of each file-owned service: every
        change to a row moves one of them (the spec folder's rescan compares them)."""
        rows = self._database.read(
            "SELECT owner, name, generation, node, updated_at FROM services"
            " WHERE substr(owner, 1, ?) = ?",
            (len(FILE_OWNER_PREFIX), FILE_OWNER_PREFIX),
        )
        found: dict[str, set[tuple[str, int, str, str]]] = {}
        for row in rows:
            entry = (row["name"], int(row["generation"]), row["node"], str(row["updated_at"]))
            found.setdefault(row["owner"], set()).add(entry)
        return {owner: frozenset(entries) for owner, entries in found.items()}

    def service_summaries(self) -> list[ServiceSummary]:
        """Every service's name, domain and enforced run state, in name order, read without
        parsing a spec: what a metrics scrape of hundreds of services needs, cheaply."""
        desired = self._database.json_text("spec", "desired_state")
        rows = self._database.read(
            # The expression is the backend's own, for a constant key.
            f"SELECT name, domain, COALESCE(run_override, {desired}, 'running')"  # noqa: S608
            " FROM services ORDER BY name"
        )
        return [ServiceSummary(str(name), str(domain), str(state)) for name, domain, state in rows]

    def service_names(self) -> list[str]:
        return [row[0] for row in self._database.read("SELECT name FROM services ORDER BY name")]

    def local_service_names(self) -> list[str]:
        """The services of this store's node, and its deletions (what its agent reconciles)."""
        rows = self._database.read(
            "SELECT name FROM services WHERE node = ? UNION "
            "SELECT name FROM deletions WHERE node = ? ORDER BY name",
            (self.node, self.node),
        )
        return [row[0] for row in rows]

    def runs_here(self, node: str) -> bool:
        """Whether a service or deletion of ``node`` is this store's node's to act on."""
        return node in ("", self.node)

    def source_files(self) -> set[str]:
        """Every spec file that owns at least one service."""
        rows = self._database.read(
            "SELECT DISTINCT owner FROM services WHERE substr(owner, 1, ?) = ?",
            (len(FILE_OWNER_PREFIX), FILE_OWNER_PREFIX),
        )
        return {path for row in rows if (path := owner_file(row["owner"])) is not None}


def _no_secret_values(spec: ServiceSpec) -> None:
    """A row never holds a secret's value: only ``_secrets_kept`` turns one into a tag,
    and spec files cannot hold one (``specs.yamldir`` refuses it)."""
    if any(secret.value is not None for secret in secret_sources(spec.settings).values()):
        raise ValueError(f"{spec.project_name}: a secret value must be kept before it is stored")


def _moved_between_files(deletion: Row) -> bool:
    """A file dropped the service without asking for a purge: another file may adopt it."""
    return str(deletion["owner"]).startswith(FILE_OWNER_PREFIX) and not deletion["purge"]


def _move_issue(name: str, node: str) -> FieldIssue:
    return FieldIssue(
        "node",
        f"Service '{name}' runs on node '{node}'; moving a service to another node is not "
        "supported yet (docs/fleet.md)",
        ErrorCode.INVALID_VALUE,
    )


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


def _record_by_name(db: Connection, name: str) -> ServiceRecord:
    return _record(db.execute("SELECT * FROM services WHERE name = ?", (name,)).fetchone())


def _record(row: Row) -> ServiceRecord:
    return record_of(ServiceRecord, row, spec=ServiceSpec.model_validate_json(row["spec"]))


def _deletion(row: Row) -> Deletion:
    return record_of(Deletion, row)
