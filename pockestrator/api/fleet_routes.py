"""The fleet view: every node of the fleet (one, on a single host), its state and load.

Any node's API answers it from the shared store; a node whose lease has ended is listed
``lost`` (its row stays until an operator removes it).
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from pockestrator.api.models.nodes import NodeList, NodeView
from pockestrator.api.routing import Operation, agent_of, answer
from pockestrator.specs.copying import copied


async def list_nodes(request: web.Request) -> web.StreamResponse:
    agent = agent_of(request)
    # In a thread: the fleet's store is a PostgreSQL server away.
    records = await asyncio.to_thread(agent.store.list_nodes)
    views = [
        copied(NodeView, record, this_node=record.name == agent.config.node) for record in records
    ]
    return answer(NodeList(nodes=views, total=len(views)))


OPERATIONS = [
    Operation(
        "GET",
        "/nodes",
        list_nodes,
        "listNodes",
        "The nodes of the fleet: state (lease), addresses, capacity and services placed",
        {200: NodeList},
        "system",
        description="One node on a single host; with a PostgreSQL store, every agent that "
        "shares it. A node is lost once its lease has ended by the store's clock.",
    ),
]
