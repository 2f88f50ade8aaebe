"""The alert rules' thresholds (``alerts``): when a rule fires, or null for off."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class AlertRules(BaseModel):
    """The thresholds of the alert rules; null turns a rule off."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    service_down_seconds: float | None = Field(
        default=60.0,
        gt=0,
        le=86400,
        description="A service meant to run that is not running or fails its health probe "
        "for this long fires service_down.",
    )
    restart_loop_count: int | None = Field(
        default=3,
        ge=1,
        le=10000,
        description="Restarts by systemd within restart_loop_minutes that fire restart_loop.",
    )
    restart_loop_minutes: float = Field(
        default=10.0, gt=0, le=1440, description="The window restart_loop_count is counted in."
    )
    backup_age_factor: float | None = Field(
        default=2.0,
        ge=1,
        le=1000,
        description="A newest snapshot older than this many schedule intervals fires "
        "backup_stale (services with a backup schedule only).",
    )
    certificate_days: float | None = Field(
        default=14.0,
        gt=0,
        le=365,
        description="A served certificate ending in fewer days fires certificate_expiring.",
    )
    disk_free_percent: float | None = Field(
        default=10.0,
        gt=0,
        lt=100,
        description="Less free space on the data filesystem (base_dir's) fires disk_low.",
    )
