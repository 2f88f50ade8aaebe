"""Uniqueness of names, ports and domains: the one place that decides it and words it.

Every service holds claims: its project name, its port, and every domain it answers to
(its ``domain`` and its ``proxy.aliases``); no two services share one, and no domain is
one service's main domain and another's alias. The database guarantees it with UNIQUE
constraints (``services.name``, ``services.port``, and ``service_domains.domain``, which
lists every domain of every service), however writers race. ``taken_claims`` is what
reports it: every write that could collide (a create, a spec replaced through the API, a
spec file synced) calls it inside its own ``BEGIN IMMEDIATE`` transaction before writing,
so it sees exactly what the constraints will see, and it lists every claim another
service holds rather than the first one a constraint would trip on. The API's validation
(``Store.claims_taken``) asks the same function without writing, so a request hears of
every problem before anything is written, in the same words a racing write would get.
``claim_domains`` keeps ``service_domains`` in step with each written spec.

One message per kind, with the reference's codes: a taken name is
``DUPLICATE_PROJECT_NAME`` (``PROJECT_NAME_EXISTS`` where the validate endpoint asks), a
taken port ``PORT_IN_USE`` and a taken domain ``DOMAIN_IN_USE`` (on ``domain``, or on
``proxy.aliases.<n>`` for an alias), each naming the holder. Whether a port is free on the
host, or is the agent's own, is not a claim between services: ``specs.validation`` checks
that.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pockestrator.database import Connection
from pockestrator.specs.errors import ErrorCode, FieldIssue
from pockestrator.specs.model import ServiceSpec
from pockestrator.specs.store.base import StorePart
from pockestrator.specs.store.placement import place
from pockestrator.specs.store.records import owner_file

NameTakenCode = Literal[ErrorCode.DUPLICATE_PROJECT_NAME, ErrorCode.PROJECT_NAME_EXISTS]


@dataclass(frozen=True)
class Holder:
    """A service that holds at least one of the claims asked about: its name, port and
    owner, and which of the domains asked about it answers to."""

    name: str
    port: int
    owner: str
    domains: frozenset[str] = frozenset()


def domain_fields(spec: ServiceSpec) -> list[tuple[str, str]]:
    """``(field, domain)`` of every domain ``spec`` answers to: ``domain``, then each alias
    as ``proxy.aliases.<n>``."""
    aliases = [(f"proxy.aliases.{index}", alias) for index, alias in enumerate(spec.proxy.aliases)]
    return [("domain", spec.domain), *aliases]


def claim_issues(
    spec: ServiceSpec,
    holders: list[Holder],
    name_code: NameTakenCode = ErrorCode.DUPLICATE_PROJECT_NAME,
) -> list[FieldIssue]:
    """The issue of each claim of ``spec`` that one of ``holders`` holds: the name, the
    port, then each domain in the order of ``domain_fields`` (each at most once, since
    each claim has at most one holder)."""
    issues: list[FieldIssue] = []
    for holder in holders:
        if holder.name == spec.project_name:
            source = owner_file(holder.owner)
            where = f"in spec file {source}" if source is not None else "created through the API"
            message = f"Project name '{spec.project_name}' already exists ({where})"
            issues.append(FieldIssue("project_name", message, name_code))
    for holder in holders:
        if holder.port == spec.port:
            message = f"Port {spec.port} is already in use by service '{holder.name}'"
            issues.append(FieldIssue("port", message, ErrorCode.PORT_IN_USE))
    for field, domain in domain_fields(spec):
        for holder in holders:
            if domain in holder.domains:
                message = f"Domain {domain} is already used by service '{holder.name}'"
                issues.append(FieldIssue(field, message, ErrorCode.DOMAIN_IN_USE))
    return issues


def taken_claims(
    db: Connection,
    spec: ServiceSpec,
    *,
    replacing: str | None = None,
    name_code: NameTakenCode = ErrorCode.DUPLICATE_PROJECT_NAME,
    node: str = "",
) -> list[FieldIssue]:
    """Every claim of ``spec`` another service holds; ``replacing`` names the service this
    spec is to replace, whose own claims are not in the way. Names and domains are the
    fleet's; a port is ``node``'s (the node the spec runs on)."""
    domains = [domain for _field, domain in domain_fields(spec)]
    marks = ", ".join("?" for _ in domains)
    held: dict[str, set[str]] = {}
    for row in db.execute(
        f"SELECT domain, name FROM service_domains WHERE domain IN ({marks}) "  # noqa: S608
        "AND name IS DISTINCT FROM ?",
        (*domains, replacing),
    ):
        held.setdefault(row["name"], set()).add(row["domain"])
    # Only "?" placeholders are formatted into the text; every value is a parameter.
    # (PostgreSQL refuses an empty IN list; SQLite takes one.)
    holder_marks = "".join(" OR name = ?" for _ in held)
    # A holder on another node does not hold the port: it reads as no port (-1).
    rows = db.execute(
        "SELECT name, CASE WHEN node = ? THEN port ELSE -1 END AS port, owner "  # noqa: S608
        f"FROM services WHERE (name = ? OR (port = ? AND node = ?){holder_marks}) "
        "AND name IS DISTINCT FROM ? ORDER BY name",
        (node, spec.project_name, spec.port, node, *held, replacing),
    ).fetchall()
    holders = [
        Holder(row["name"], int(row["port"]), row["owner"], frozenset(held.get(row["name"], ())))
        for row in rows
    ]
    return claim_issues(spec, holders, name_code)


def claim_domains(db: Connection, spec: ServiceSpec) -> None:
    """Make ``service_domains`` hold exactly the domains of ``spec`` for its service (whose
    row must exist); a domain another service holds fails on the table's UNIQUE key, which
    ``taken_claims`` has reported before any write."""
    db.execute("DELETE FROM service_domains WHERE name = ?", (spec.project_name,))
    db.executemany(
        "INSERT INTO service_domains (domain, name) VALUES (?, ?)",
        [(domain, spec.project_name) for _field, domain in domain_fields(spec)],
    )


class Claims(StorePart):
    def claims_taken(
        self,
        spec: ServiceSpec,
        *,
        replacing: str | None = None,
        name_code: NameTakenCode = ErrorCode.DUPLICATE_PROJECT_NAME,
    ) -> list[FieldIssue]:
        """``taken_claims`` now, without writing: what a write of ``spec`` would be refused
        for (the validate endpoint and the API's pre-flight checks)."""
        with self._database.reading() as db:
            # A new service's port is judged on the node placement would choose for it.
            now = self._database.server_time(db) or self._clock.now()
            node = place(db, spec, now, self.node)[0]
            if replacing is not None:
                row = db.execute("SELECT node FROM services WHERE name = ?", (replacing,))
                found = row.fetchone()
                node = found[0] if found is not None else node
            return taken_claims(db, spec, replacing=replacing, name_code=name_code, node=node)
