"""What the fleet view answers (``api.fleet_routes``): each node, its lease and its load."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from pockestrator.api.models import ClosedModel


class NodeView(ClosedModel):
    name: str = Field(description="The node's name, unique in the fleet.")
    state: Literal["ready", "lost"] = Field(
        description="ready while the node's lease runs (by the store's clock), lost after."
    )
    this_node: bool = Field(description="True for the node whose agent answered.")
    api_address: str = Field(description="Where other nodes reach this node's API.")
    public_address: str = Field(description="Where this node's Caddy serves the instances.")
    memory_bytes: int = Field(description="The host's memory.")
    cpus: int = Field(description="The host's CPUs.")
    services: int = Field(description="How many services are placed on the node.")
    registered_at: datetime
    renewed_at: datetime = Field(description="When its agent last renewed the lease.")
    lease_expires_at: datetime


class NodeList(ClosedModel):
    nodes: list[NodeView] = Field(description="Every node, in name order.")
    total: int
