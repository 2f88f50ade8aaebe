"""Every live node watches the others' leases: the news of a node's loss is written once
(``specs.store.node_loss``: its services' ``node_lost`` events and alerts), by whichever
live node looks first after the lease ended; the store's one writer decides who.

It looks at the lease's cadence (every third of ``node_lease_seconds``, as the lease is
renewed): a node is noted lost at most a third of a lease after its lease ended. One
host's SQLite store has no other node to watch, and the job does not run there.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable

import structlog

from pockestrator.config import AgentConfig
from pockestrator.specs.store import Store

log = structlog.get_logger(__name__)


class NodeWatch:
    def __init__(self, store: Store, config: Callable[[], AgentConfig]) -> None:
        self.store = store
        self.config = config

    def look(self) -> dict[str, list[str]]:
        """Note every node newly lost; those nodes with their services."""
        noted = self.store.note_lost_nodes(self.config().node)
        for node, services in noted.items():
            log.warning("node lost: its lease ended", node=node, services=services)
        return noted

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.config().node_lease_seconds / 3)
            try:
                await asyncio.to_thread(self.look)
            except sqlite3.Error as exc:  # PostgreSQL's errors arrive as these too
                log.warning("the other nodes' leases could not be read", error=str(exc))
