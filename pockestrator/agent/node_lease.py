"""This host as a node of the fleet: registered when the agent starts, its lease renewed.

The lease says the node is alive (``specs.store.nodes``); it is renewed every third of its
length, so two renewals may fail (a PostgreSQL restart, a network blip) before the node
counts as lost. A renewal that finds no row (an operator removed the node) registers it
again. Store calls run in a thread: a PostgreSQL server that is slow to answer must not
stall the event loop.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import Callable
from datetime import timedelta

import structlog

from pockestrator.config import AgentConfig
from pockestrator.specs.store import NodeInfo, NodeRecord, Store

log = structlog.get_logger(__name__)


def host_memory_bytes(meminfo: str = "/proc/meminfo") -> int:
    """MemTotal of the host, in bytes (0 when it cannot be read)."""
    try:
        with open(meminfo, encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def node_info(config: AgentConfig) -> NodeInfo:
    return NodeInfo(
        name=config.node,
        api_address=config.node_api_url,
        public_address=config.node_public_address,
        memory_bytes=host_memory_bytes(),
        cpus=os.cpu_count() or 1,
    )


class NodeLease:
    def __init__(self, store: Store, config: Callable[[], AgentConfig]) -> None:
        self.store = store
        self.config = config

    @property
    def length(self) -> timedelta:
        return timedelta(seconds=self.config().node_lease_seconds)

    def register(self) -> NodeRecord:
        record = self.store.register_node(node_info(self.config()), self.length)
        log.info("node registered", node=record.name, services=record.services)
        self._returned(record.name)
        return record

    def _returned(self, name: str) -> None:
        """Back after the fleet noted this node lost: its services hear of it (once)."""
        services = self.store.note_return(name)
        if services:
            log.info("node back after it was noted lost", node=name, services=services)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.config().node_lease_seconds / 3)
            try:
                renewed = await asyncio.to_thread(
                    self.store.renew_lease, self.config().node, self.length
                )
                if renewed is None:
                    await asyncio.to_thread(self.register)
                else:
                    await asyncio.to_thread(self._returned, self.config().node)
            except sqlite3.Error as exc:  # PostgreSQL's errors arrive as these too
                log.warning("the node's lease could not be renewed", error=str(exc))
