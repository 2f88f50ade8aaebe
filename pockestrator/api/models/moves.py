"""What a move is asked with and answers (``api.move_routes``)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from pockestrator.api.models import ClosedModel
from pockestrator.api.spec_shapes import STRICT
from pockestrator.specs.values.service import NodeName


class MoveBody(BaseModel):
    model_config = STRICT

    to: NodeName = Field(description="The node the service moves to.", examples=["beta"])
    from_backup: bool = Field(
        default=False,
        description="The source node is lost: restore the newest snapshot on the service's "
        "off-site targets on the target node instead of copying from the source (data "
        "written since that snapshot is lost, or, for a service that replicates, since "
        "the replica's newest point, which replaces its data.db: docs/fleet.md, RPO).",
    )


class MoveView(ClosedModel):
    id: int
    service_id: str
    project_name: str
    source: str = Field(description="The node the service ran on when the move was asked.")
    target: str = Field(description="The node it moves to.")
    from_backup: bool
    state: Literal[
        "requested",
        "staged",
        "verified",
        "switched",
        "done",
        "failed",
        "rolled_back",
        "failed_on_target",
    ] = Field(
        description="requested, staged (snapshot off-site), verified (booted on the target), "
        "switched (the target runs it); then done, failed (before the switch: nothing "
        "changed), rolled_back (back on the source) or failed_on_target (after the switch "
        "from a lost source: the service lives on the target, which did not run it)."
    )
    finished: bool
    snapshot: str | None = Field(description="The snapshot copied ahead of the switch.")
    final_snapshot: str | None = Field(description="The snapshot the target starts from.")
    error: str | None
    requested_at: datetime
    requested_by: str
    updated_at: datetime
    finished_at: datetime | None
