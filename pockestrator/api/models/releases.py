"""What the release operations answer (``api.release_routes``): app releases."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from pockestrator.api.models import ClosedModel, NextCursor
from pockestrator.api.models.requests import QueryBool, wait_field
from pockestrator.apparchive import RELEASE_ID_LENGTH


class ReleaseDiff(ClosedModel):
    """File names against the release listed after this one (the one before it)."""

    added: list[str]
    removed: list[str]
    changed: list[str]


class ReleaseView(ClosedModel):
    """One app release: pb_hooks, pb_migrations and pb_public, content-addressed."""

    id: str = Field(description="The hash of its file list (16 hex digits).")
    created_at: datetime
    created_by: str = Field(description="Who deployed it (the account or token's name).")
    source: str
    size_bytes: int = Field(ge=0)
    file_count: int = Field(ge=0)
    live: bool = Field(description="Whether the instance runs this release now.")
    diff: ReleaseDiff


class ReleaseList(ClosedModel):
    service_id: str
    project_name: str
    live: str | None = Field(description="The live release (None: the spec's own folders).")
    releases: list[ReleaseView]
    total: int
    next: NextCursor


class DeployQuery(ClosedModel):
    wait: QueryBool = wait_field("deploy")


class RollbackQuery(ClosedModel):
    release: str | None = Field(
        default=None,
        pattern=f"^[0-9a-f]{{{RELEASE_ID_LENGTH}}}$",
        description="The release to go back to; default: the one deployed before the live one.",
    )
    wait: QueryBool = wait_field("rollback")
