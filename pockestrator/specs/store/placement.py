"""Where a new service runs: the scheduler's choice among the fleet's live nodes.

A pure choice (``choose_node``) over what the store reads in the creating transaction
(``candidates``): a node whose lease runs, whose port is free, and whose memory not yet
reserved fits the service's ``memory_max``; of those, the one with the fewest services of
the same ``placement.spread`` key, then the most memory left, then the fewest services,
then the first name (so that the choice is the same on every
node). A service without ``memory_max`` reserves nothing but still goes where the most is
left. With no node registered (a store opened outside an agent) the store's own node is
used; with nodes but none that fits, too (and the event says so), rather than refusing a
service one host would have taken.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from pockestrator.database import Connection, iso
from pockestrator.specs import grammar
from pockestrator.specs.errors import ErrorCode, FieldIssue
from pockestrator.specs.model import ServiceSpec


@dataclass(frozen=True)
class Candidate:
    name: str
    memory_bytes: int
    reserved_bytes: int
    services: int
    port_free: bool
    # How many of the node's services have the new one's spread key.
    spread: int = 0

    @property
    def free_bytes(self) -> int:
        return self.memory_bytes - self.reserved_bytes


def spread_key(spec_json: str) -> str | None:
    return (json.loads(spec_json).get("placement") or {}).get("spread")


def reserved_bytes(spec_json: str) -> int:
    """What a stored spec reserves of its node's memory: its memory_max in bytes (0 for
    none, a percentage or infinity)."""
    limit = (json.loads(spec_json).get("resources") or {}).get("memory_max")
    if not limit:
        return 0
    try:
        return grammar.memory_limit_bytes(limit) or 0
    except grammar.GrammarError:
        return 0


def needed_bytes(spec: ServiceSpec) -> int | None:
    limit = spec.resources.memory_max
    return grammar.memory_limit_bytes(limit) if limit else None


def choose_node(candidates: list[Candidate], needed: int | None) -> Candidate | None:
    fitting = [c for c in candidates if c.port_free and (needed is None or c.free_bytes >= needed)]
    if not fitting:
        return None
    return min(fitting, key=lambda c: (c.spread, -c.free_bytes, c.services, c.name))


def candidates(db: Connection, spec: ServiceSpec, now: datetime) -> list[Candidate]:
    """Every node whose lease runs at ``now``, with its load and whether ``spec``'s port is
    free there (read inside the creating write, so the choice and the insert agree)."""
    nodes = db.execute(
        "SELECT name, memory_bytes FROM nodes WHERE lease_expires_at > ? ORDER BY name",
        (iso(now),),
    ).fetchall()
    load: dict[str, list[int]] = {row["name"]: [0, 0, 0] for row in nodes}
    taken: set[str] = set()
    spread = spec.placement.spread
    for row in db.execute("SELECT node, port, spec FROM services"):
        if row["node"] in load:
            load[row["node"]][0] += reserved_bytes(row["spec"])
            load[row["node"]][1] += 1
            if spread is not None and spread_key(row["spec"]) == spread:
                load[row["node"]][2] += 1
            if int(row["port"]) == spec.port:
                taken.add(row["node"])
    return [
        Candidate(
            name=row["name"],
            memory_bytes=int(row["memory_bytes"]),
            reserved_bytes=load[row["name"]][0],
            services=load[row["name"]][1],
            port_free=row["name"] not in taken,
            spread=load[row["name"]][2],
        )
        for row in nodes
    ]


def node_issue(db: Connection, spec: ServiceSpec, receiving: str) -> FieldIssue | None:
    """Why ``spec``'s ``node`` cannot be: no registered node has that name (a store without
    nodes, opened outside an agent, takes any)."""
    if spec.node is None or spec.node == receiving:
        return None
    known = {row[0] for row in db.execute("SELECT name FROM nodes")}
    if not known or spec.node in known:
        return None
    shown = ", ".join(sorted(known)[:10])
    return FieldIssue(
        "node",
        f"No node named '{spec.node}' in the fleet (nodes: {shown})",
        ErrorCode.INVALID_VALUE,
    )


def place(
    db: Connection, spec: ServiceSpec, now: datetime, receiving: str
) -> tuple[str, tuple[str, dict[str, object]] | None]:
    """The node a new service of the API runs on, and the event (message, details) that
    says why: None when there was no choice (one host, or no node registered)."""
    found = candidates(db, spec, now)
    if spec.node is not None:
        if len(found) < 2:
            return spec.node, None
        return spec.node, (
            f"placed on node {spec.node}, as its spec says",
            {"node": spec.node, "received_by": receiving, "fits": True, "candidates": []},
        )
    chosen = choose_node(found, needed_bytes(spec))
    node = chosen.name if chosen is not None else receiving
    if len(found) < 2:
        return node, None
    message = (
        f"placed on node {node}: the most memory left of the nodes with port {spec.port} free"
        if chosen is not None
        else f"placed on node {node}, the receiving node: no live node has port "
        f"{spec.port} free and room for memory_max"
    )
    details: dict[str, object] = {
        "node": node,
        "received_by": receiving,
        "fits": chosen is not None,
        "candidates": [
            {
                "node": c.name,
                "free_bytes": c.free_bytes,
                "services": c.services,
                "port_free": c.port_free,
                "spread": c.spread,
            }
            for c in found
        ],
    }
    return node, (message, details)
