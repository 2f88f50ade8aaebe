"""What the access operations answer (``api.access_routes``): API tokens (never their
secrets, but once), and the dashboard's sessions."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from pockestrator.api.models import ClosedModel, NextCursor


class TokenView(ClosedModel):
    id: str
    name: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
    revoked: bool


class TokenList(ClosedModel):
    tokens: list[TokenView]
    total: int
    next: NextCursor


class TokenCreated(ClosedModel):
    id: str
    name: str
    token: str = Field(description="The token itself: shown once, stored only as a hash.")
    created_at: datetime
    message: str


class TokenRevoked(ClosedModel):
    id: str
    revoked: bool
    message: str


class AdminView(ClosedModel):
    id: str
    email: str


class LoginResponse(ClosedModel):
    token: str
    token_type: Literal["Bearer"] = "Bearer"  # noqa: S105 (the scheme name)
    expires_at: datetime
    expires_in: int
    admin: AdminView


class LogoutResponse(ClosedModel):
    revoked: bool
    message: str
