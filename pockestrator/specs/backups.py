"""A service's backup policy: when snapshots are taken, which are kept, when one is verified.

``BackupPolicy`` is the spec's ``backups`` section and, with the same shape, the agent's
default for services that name none (``AgentConfig.backups``). Schedules are cron
expressions in UTC (``specs.grammar.check_schedule``); ``keep`` is the retention of
``controllers.snapshots.retention``; ``targets`` names the agent's off-site targets
(``AgentConfig.backup_targets``) that every snapshot is uploaded to.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from pockestrator.specs import grammar
from pockestrator.specs.values.parsers import grammar_validator

KEEP_MAX = 1000

TargetName = Annotated[
    str,
    Field(max_length=32, pattern=grammar.TARGET_NAME.json, examples=["offsite"]),
    BeforeValidator(grammar_validator(grammar.check_target_name)),
]
TARGETS_MAX = 8

# The document states the shape (a macro, or five fields of cron's characters); which
# field values are valid is croniter's to judge, which the description says in words.
Schedule = Annotated[
    str,
    Field(
        max_length=100,
        pattern=grammar.SCHEDULE_SHAPE.json,
        examples=["0 3 * * *"],
        description="Five cron fields (minute hour day month weekday, UTC) that croniter "
        "accepts, or @hourly, @daily, @midnight, @weekly, @monthly, @yearly.",
    ),
    BeforeValidator(grammar_validator(grammar.check_schedule)),
]


class KeepPolicy(BaseModel):
    """How many snapshots each rule keeps (restic's --keep-last/daily/weekly/monthly)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    last: int = Field(default=7, ge=0, le=KEEP_MAX, description="The newest so many.")
    daily: int = Field(default=7, ge=0, le=KEEP_MAX, description="The newest of each day.")
    weekly: int = Field(default=4, ge=0, le=KEEP_MAX, description="The newest of each week.")
    monthly: int = Field(default=6, ge=0, le=KEEP_MAX, description="The newest of each month.")


class ReplicationPolicy(BaseModel):
    """Continuous replication of data.db to an off-site target (Litestream's WAL shipping)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    target: TargetName = Field(description="The agent's backup target the WAL goes to.")
    sync_seconds: int = Field(
        default=1, ge=1, le=3600, description="How often new WAL frames are shipped."
    )
    retention_hours: int = Field(
        default=72,
        ge=1,
        le=24 * 366,
        description="How far back a point-in-time restore can go.",
    )


class BackupPolicy(BaseModel):
    """When to snapshot and verify (UTC cron; null: never on a schedule), what to keep."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schedule: Schedule | None = Field(
        default=None,
        description="When to take a snapshot, e.g. '0 3 * * *'; null: only on request.",
    )
    keep: KeepPolicy = Field(default_factory=KeepPolicy)
    verify: Schedule | None = Field(
        default=None,
        description="When to verify the newest snapshot (restore it, check it, boot it), "
        "e.g. '30 4 * * 0'; null: only on request.",
    )
    targets: tuple[TargetName, ...] = Field(
        default=(),
        max_length=TARGETS_MAX,
        description="Where each snapshot is copied besides the local snapshot folder: names "
        "of the agent's backup_targets (e.g. ['offsite']); each upload is verified "
        "against the manifest's SHA-256s. Empty: the local folder only.",
    )
    replication: ReplicationPolicy | None = Field(
        default=None,
        description="Continuous replication of data.db to a target, for point-in-time "
        "restores to the second; null: none.",
    )
