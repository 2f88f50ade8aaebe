"""What clones, imports and the archive take and answer (``api.seed_routes``)."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from pockestrator.api.models import ClosedModel, NextCursor
from pockestrator.api.models.requests import CreateQuery, QueryPort
from pockestrator.api.spec_shapes import STRICT
from pockestrator.specs import grammar
from pockestrator.specs.service_parts import DESCRIPTION_MAX
from pockestrator.specs.values.service import Domain, Port, ProjectName, Version


class CloneBody(ClosedModel):
    """A new service from another one's data: its own name, port and domain."""

    model_config = STRICT

    project_name: ProjectName = Field(
        description="The new service's name.", examples=["blog-staging"]
    )
    port: Port = Field(description="The new service's loopback port.", examples=[8091])
    domain: Domain | None = Field(
        default=None, description="The new service's hostname; default <project_name>.<default>."
    )
    description: str | None = Field(
        default=None,
        max_length=DESCRIPTION_MAX,
        pattern=grammar.ONE_LINE.json,
        description="A note for humans: one line.",
    )
    backup_id: str | None = Field(
        default=None,
        pattern=grammar.SNAPSHOT_ID.json,
        description="The backup of the source to start from; null: a backup taken now (a "
        "live clone: the source keeps serving while it is taken).",
    )


class ImportQuery(CreateQuery):
    """The new service an uploaded archive becomes (the body is the archive itself)."""

    project_name: ProjectName = Field(description="The new service's name.")
    port: QueryPort = Field(description="The new service's loopback port.")
    pocketbase_version: Version = Field(
        description="The PocketBase release to run it with (the one that made the data, or later)."
    )
    domain: Domain | None = Field(default=None, description="Default <project_name>.<default>.")
    description: str | None = Field(
        default=None,
        max_length=DESCRIPTION_MAX,
        pattern=grammar.ONE_LINE.json,
        description="A note for humans: one line.",
    )


class ArchiveRestoreBody(ClosedModel):
    """A deleted service's archived folder back as a service."""

    model_config = STRICT

    project_name: ProjectName | None = Field(
        default=None, description="Default: the name the service had."
    )
    port: Port = Field(description="Its loopback port.")
    pocketbase_version: Version = Field(description="The PocketBase release to run it with.")
    domain: Domain | None = Field(default=None, description="Default <project_name>.<default>.")


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
    next: NextCursor
