"""Uniqueness of name, port and domain: the one place that decides it and words it.

Every service holds three claims, its project name, its port and its (normalised) domain,
and no two services share one. The database guarantees it with UNIQUE constraints, however
writers race. ``taken_claims`` is what reports it: every write that could collide (a
create, a spec replaced through the API, a spec file synced) calls it inside its own
``BEGIN IMMEDIATE`` transaction before writing, so it sees exactly what the constraints
will see, and it lists every claim another service holds rather than the first one a
constraint would trip on. The API's validation (``Store.claims_taken``) asks the same
function without writing, so a request hears of every problem before anything is written,
in the same words a racing write would get.

One message per kind, with the reference's codes: a taken name is
``DUPLICATE_PROJECT_NAME`` (``PROJECT_NAME_EXISTS`` where the validate endpoint asks), a
taken port ``PORT_IN_USE`` and a taken domain ``DOMAIN_IN_USE``, each naming the holder.
Whether a port is free on the host, or is the agent's own, is not a claim between services:
``specs.validation`` checks that.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Literal

from pockestrator.specs.errors import ErrorCode, FieldIssue
from pockestrator.specs.model import ServiceSpec
from pockestrator.specs.store.base import StorePart
from pockestrator.specs.store.records import owner_file

NameTakenCode = Literal[ErrorCode.DUPLICATE_PROJECT_NAME, ErrorCode.PROJECT_NAME_EXISTS]


@dataclass(frozen=True)
class Holder:
    """A service that holds at least one of the claims asked about."""

    name: str
    port: int
    domain: str
    owner: str


def claim_issues(
    spec: ServiceSpec,
    holders: list[Holder],
    name_code: NameTakenCode = ErrorCode.DUPLICATE_PROJECT_NAME,
) -> list[FieldIssue]:
    """The issue of each claim of ``spec`` that one of ``holders`` holds: name, port, domain
    (in that order, each at most once since each claim has at most one holder)."""
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
    for holder in holders:
        if holder.domain == spec.domain:
            message = f"Domain {spec.domain} is already used by service '{holder.name}'"
            issues.append(FieldIssue("domain", message, ErrorCode.DOMAIN_IN_USE))
    return issues


def taken_claims(
    db: sqlite3.Connection,
    spec: ServiceSpec,
    *,
    replacing: str | None = None,
    name_code: NameTakenCode = ErrorCode.DUPLICATE_PROJECT_NAME,
) -> list[FieldIssue]:
    """Every claim of ``spec`` another service holds; ``replacing`` names the service this
    spec is to replace, whose own claims are not in the way."""
    rows = db.execute(
        "SELECT name, port, domain, owner FROM services "
        "WHERE (name = ? OR port = ? OR domain = ?) AND name IS NOT ? ORDER BY name",
        (spec.project_name, spec.port, spec.domain, replacing),
    ).fetchall()
    holders = [Holder(row["name"], int(row["port"]), row["domain"], row["owner"]) for row in rows]
    return claim_issues(spec, holders, name_code)


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
            return taken_claims(db, spec, replacing=replacing, name_code=name_code)
