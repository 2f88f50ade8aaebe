"""The off-site backup targets of the configuration (``backup_targets``): where
snapshots are copied, and the files holding their keys.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class S3Target(BaseModel):
    """An S3-compatible bucket snapshots are copied to (``backup_targets`` in the config).

    The secret access key is read from ``secret_access_key_file`` (root's, mode 0600 or
    stricter) when an upload starts, never kept in the store, an answer, a log or an event.
    With ``encryption_key_file`` (32 random bytes, root-only) every object is encrypted
    before it leaves the host (``controllers.snapshots.encryption``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["s3"] = "s3"
    endpoint: str = Field(description="http(s)://host[:port] of the S3 API.")
    bucket: str = Field(pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
    prefix: str = Field(
        default="",
        pattern=r"^([A-Za-z0-9._-]+/)*$",
        description="Key prefix, '' or ending in '/': objects are <prefix><service>/<id>/...",
    )
    region: str = Field(default="us-east-1", pattern=r"^[a-z0-9-]{1,40}$")
    path_style: bool = Field(
        default=False, description="Bucket in the path (MinIO, rclone), not the host name."
    )
    access_key_id: str = Field(pattern=r"^[\x21-\x7e]{1,128}$")
    secret_access_key_file: Path
    encryption_key_file: Path | None = None
    part_size: int = Field(
        default=8 * 1024 * 1024,
        ge=5 * 1024 * 1024,
        le=512 * 1024 * 1024,
        description="Multipart upload part size in bytes (S3's minimum is 5 MiB).",
    )

    @field_validator("endpoint")
    @classmethod
    def _endpoint_is_a_url(cls, value: str) -> str:
        if not re.fullmatch(r"https?://[A-Za-z0-9.:\[\]-]+/?", value):
            raise ValueError("must be http(s)://HOST[:PORT]")
        return value.rstrip("/")

    @field_validator("secret_access_key_file", "encryption_key_file")
    @classmethod
    def _files_are_absolute(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_absolute():
            raise ValueError("must be an absolute path")
        return value
