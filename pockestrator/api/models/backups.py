"""What the backup operations answer (``api.backup_routes``): backups and operations."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import AwareDatetime, Field

from pockestrator.api.models import ClosedModel, NextCursor
from pockestrator.api.models.requests import QueryBool, wait_field
from pockestrator.specs.backups import BackupPolicy


class BackupFileView(ClosedModel):
    path: str
    size_bytes: int
    sha256: str


class BackupView(ClosedModel):
    """One snapshot: a consistent copy of the databases, the files and the app folders."""

    id: str = Field(description="The UTC second it was taken, e.g. 20261202T031500Z.")
    kind: Literal["scheduled", "manual", "safety", "upgrade", "import", "replica"]
    created_at: datetime
    age_seconds: int = Field(ge=0)
    size_bytes: int = Field(ge=0)
    file_count: int = Field(ge=0)
    pocketbase_version: str | None
    verified_at: datetime | None = Field(description="When it was last verified.")
    verified: bool | None = Field(description="Whether that verification passed.")
    verification_detail: str | None
    locations: list[str] = Field(
        default_factory=lambda: ["local"],
        description="Where a whole copy is: 'local' (the snapshot folder) and the names of "
        "the off-site targets holding a verified one.",
    )


class BackupDetail(BackupView):
    files: list[BackupFileView]


class BackupList(ClosedModel):
    service_id: str
    project_name: str
    policy: BackupPolicy = Field(description="The policy in force: the spec's or the agent's.")
    backups: list[BackupView]
    total: int
    total_bytes: int
    next: NextCursor


class OperationView(ClosedModel):
    """Something asked of a service's reconciles, and how it ended."""

    id: int
    kind: Literal["snapshot", "verify", "restore", "delete", "deploy", "rollback"]
    backup_id: str | None
    state: Literal["pending", "done", "failed"]
    requested_at: datetime
    requested_by: str
    finished_at: datetime | None
    result: dict[str, Any]
    error: str | None


class OperationAnswer(ClosedModel):
    """An operation, and for a snapshot that was taken, the backup it made."""

    service_id: str
    project_name: str
    operation: OperationView
    backup: BackupView | None = None


class OperationQuery(ClosedModel):
    wait: QueryBool = wait_field("operation")


class CreateBackupQuery(OperationQuery):
    at: AwareDatetime | None = Field(
        default=None,
        description="A point in time (UTC second, e.g. 2026-12-02T04:10:14Z) of a service "
        "that replicates: the backup's data.db is the replica's as of then (the uploaded "
        "files and auxiliary.db are today's). Restore it to go back to that second.",
    )


class OperationFollowQuery(ClosedModel):
    wait: QueryBool = Field(
        default=False,
        description="Answer when the operation has finished (at most a minute; then 202).",
    )
