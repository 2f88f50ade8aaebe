"""What clones, imports and the archive take and answer (``api.seed_routes``)."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from pockestrator.api.models import ClosedModel
from pockestrator.api.models.requests import CreateQuery, QueryInt
from pockestrator.api.spec_shapes import STRICT


class CloneBody(ClosedModel):
    """A new service from another one's data: its own name, port and domain."""

    model_config = STRICT

    project_name: str = Field(description="The new service's name.", examples=["blog-staging"])
    port: int = Field(description="The new service's loopback port.", examples=[8091])
    domain: str | None = Field(
        default=None, description="The new service's hostname; default <project_name>.<default>."
    )
    description: str | None = Field(default=None, description="A note for humans: one line.")
    backup_id: str | None = Field(
        default=None,
        description="The backup of the source to start from; null: a backup taken now (a "
        "live clone: the source keeps serving while it is taken).",
    )


class ImportQuery(CreateQuery):
    """The new service an uploaded archive becomes (the body is the archive itself)."""

    project_name: str = Field(description="The new service's name.")
    port: QueryInt = Field(description="The new service's loopback port.")
    pocketbase_version: str = Field(
        description="The PocketBase release to run it with (the one that made the data, or later)."
    )
    domain: str | None = Field(default=None, description="Default <project_name>.<default>.")
    description: str | None = Field(default=None, description="A note for humans: one line.")


class ArchiveRestoreBody(ClosedModel):
    """A deleted service's archived folder back as a service."""

    model_config = STRICT

    project_name: str | None = Field(default=None, description="Default: the name the service had.")
    port: int = Field(description="Its loopback port.")
    pocketbase_version: str = Field(description="The PocketBase release to run it with.")
    domain: str | None = Field(default=None, description="Default <project_name>.<default>.")


class ArchiveView(ClosedModel):
    id: str = Field(description="<project_name>-<UTC second it was deleted>.")
    project_name: str
    archived_at: datetime
    age_seconds: int = Field(ge=0)
    size_bytes: int = Field(ge=0, description="Disk use.")
    expires_at: datetime | None = Field(description="When the retention removes it; null: never.")


class ArchiveList(ClosedModel):
    archives: list[ArchiveView]
    total: int
    total_bytes: int
    keep_days: float = Field(description="How long archives are kept (0: for ever).")
