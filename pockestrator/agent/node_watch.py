"""Every live node watches the others' leases: the news of a node's loss is written once
(``specs.store.node_loss``: its services' ``node_lost`` events and alerts), by whichever
live node looks first after the lease ended; the store's one writer decides who. After
``failover_grace_seconds`` the services with ``failover: auto`` are moved from their
newest backup (``agent.failover_plan``; the store takes one move per service, so of the
nodes that decide it at once, one does it).

It looks at the lease's cadence (every third of ``node_lease_seconds``, as the lease is
renewed): a node is noted lost at most a third of a lease after its lease ended. One
host's SQLite store has no other node to watch, and the job does not run there.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from datetime import timedelta

import structlog

from pockestrator.agent.failover_plan import FailoverCandidate, failovers_due
from pockestrator.config import AgentConfig
from pockestrator.specs.store import Conflict, NotFound, Store

log = structlog.get_logger(__name__)


class NodeWatch:
    def __init__(self, store: Store, config: Callable[[], AgentConfig]) -> None:
        self.store = store
        self.config = config

    def look(self) -> dict[str, list[str]]:
        """Note every node newly lost, and fail over what is due; the nodes noted now with
        their services."""
        noted = self.store.note_lost_nodes(self.config().node)
        for node, services in noted.items():
            log.warning("node lost: its lease ended", node=node, services=services)
        self.fail_over()
        return noted

    def fail_over(self) -> list[tuple[str, str]]:
        """Ask for the moves ``failover: auto`` is due (``agent.failover_plan``); those
        asked by this node (another node may have asked first: one move per service)."""
        nodes = self.store.list_nodes()
        lost = {n.name: n.lease_expires_at for n in nodes if n.state == "lost"}
        if not lost:
            return []
        config = self.config()
        records, _ = self.store.list_services()
        due = failovers_due(
            [
                FailoverCandidate(r.name, r.node, r.spec.port, r.spec.failover == "auto")
                for r in records
            ],
            lost,
            [n.name for n in nodes if n.state == "ready"],
            config.node,
            timedelta(seconds=config.failover_grace_seconds),
            self.store.server_now(),
            frozenset(m.service for m in self.store.unfinished_moves()),
        )
        asked = []
        for name, target in due:
            try:
                move = self.store.request_move(
                    name, target, from_backup=True, by=f"failover:{config.node}"
                )
            except (Conflict, NotFound):
                continue  # another node asked first, or it went meanwhile
            self.store.add_event(
                name,
                "failover_started",
                f"node {move.source} lost for {config.failover_grace_seconds:g} s or more: "
                f"{name} comes up on {target} from its newest off-site backup",
                move.as_dict(),
            )
            log.warning("failover", service=name, source=move.source, target=target)
            asked.append((name, target))
        return asked

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.config().node_lease_seconds / 3)
            try:
                await asyncio.to_thread(self.look)
            except sqlite3.Error as exc:  # PostgreSQL's errors arrive as these too
                log.warning("the other nodes' leases could not be read", error=str(exc))
