"""Where desired state lives (``store``): the SQLite file of one host, or a fleet's
PostgreSQL, whose password is never in the DSN.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# libpq's sslmode values; a fleet's default checks the server's certificate and name.
SslMode = Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]
# A password in a DSN, as key=value ("password=...") or in a URI ("user:pw@host").
_DSN_PASSWORD = re.compile(r"(^|\s)password\s*=|^postgres(ql)?://[^/@]*:[^/@]*@", re.IGNORECASE)


class StoreConfig(BaseModel):
    """Where desired state lives: the SQLite file (``database``, one host) or a fleet's
    PostgreSQL (docs/fleet.md). The password is never in ``dsn``: it is read from
    ``password_file`` (root's, mode 0600 or stricter), so a DSN shown or logged reveals
    nothing."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    backend: Literal["sqlite", "postgresql"] = "sqlite"
    dsn: str | None = Field(
        default=None,
        max_length=1000,
        description="libpq connection string or postgresql:// URI, without the password.",
    )
    password_file: Path | None = None
    pool_size: int = Field(default=4, ge=1, le=64)
    sslmode: SslMode = "verify-full"

    @field_validator("dsn")
    @classmethod
    def _no_password_in_the_dsn(cls, value: str | None) -> str | None:
        if value is not None and _DSN_PASSWORD.search(value.strip()):
            # The value itself is not repeated: it holds a password.
            raise ValueError(
                "must not hold the password (it would be shown and logged with the DSN); "
                "put it in store.password_file"
            )
        if value is not None and any(ord(c) < 0x20 for c in value):
            raise ValueError("must be one line of printable characters")
        return value

    @field_validator("password_file")
    @classmethod
    def _file_is_absolute(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_absolute():
            raise ValueError("must be an absolute path")
        return value

    @model_validator(mode="after")
    def _postgresql_needs_a_dsn(self) -> StoreConfig:
        if self.backend == "postgresql" and not self.dsn:
            raise ValueError("store.backend postgresql needs store.dsn")
        return self
