"""What the event feed and the webhook operations take and answer (``api.event_routes``).

A webhook's secret appears in exactly one answer, ``WebhookCreated``; ``WebhookView`` has
no field that could carry it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from pockestrator.api.models import ClosedModel, OlderCursor
from pockestrator.api.models.requests import (
    LIST_LIMIT_MAX,
    Cursor,
    EventPageQuery,
    QueryBool,
    QueryLimit,
    follow_field,
)
from pockestrator.api.spec_shapes import STRICT
from pockestrator.specs.values.service import ProjectName
from pockestrator.specs.values.settings import EventKind, WebhookUrl

FILTER_ITEMS_MAX = 50


class FeedQuery(EventPageQuery):
    follow: QueryBool = follow_field("each new event as a server-sent event")
    cursor: Cursor | None = None


class FeedEvent(ClosedModel):
    id: int
    service: str | None = Field(description="The service's project name (None: a test event).")
    at: datetime
    kind: str
    message: str
    details: dict[str, Any]


class FeedList(ClosedModel):
    events: list[FeedEvent]
    total: int
    next_before: int | None = Field(description="Pass as `before` for the next, older page.")
    next: OlderCursor


class WebhookCreateBody(BaseModel):
    model_config = STRICT

    url: WebhookUrl = Field(examples=["https://hooks.example.com/pockestrator"])
    kinds: list[EventKind] = Field(
        default_factory=list,
        max_length=FILTER_ITEMS_MAX,
        description="Only events of these kinds (empty: every kind).",
    )
    services: list[ProjectName] = Field(
        default_factory=list,
        max_length=FILTER_ITEMS_MAX,
        description="Only events of these services (empty: every service).",
    )


class DeliveryCounts(ClosedModel):
    pending: int
    sending: int
    delivered: int
    failed: int


class WebhookView(ClosedModel):
    id: str
    url: str
    kinds: list[str]
    services: list[str]
    created_at: datetime
    created_by: str
    last_delivery_at: datetime | None
    deliveries: DeliveryCounts


class WebhookList(ClosedModel):
    webhooks: list[WebhookView]
    total: int


class WebhookCreated(ClosedModel):
    id: str
    webhook: WebhookView
    secret: str = Field(
        description="Signs every delivery (docs/observability.md): shown in this answer only."
    )
    message: str


class WebhookDeleted(ClosedModel):
    id: str
    deleted: bool
    message: str


class WebhookTestQueued(ClosedModel):
    id: str
    event_id: int = Field(description="The test event's id: its deliveries carry it as key.")
    message: str


class DeliveryView(ClosedModel):
    id: int
    event_id: int
    attempt: int
    at: datetime
    duration_ms: float
    status_code: int | None = Field(description="The receiver's HTTP status (None: no answer).")
    error: str | None
    outcome: Literal["delivered", "retry", "failed"]


class DeliveryList(ClosedModel):
    webhook_id: str
    deliveries: list[DeliveryView]
    total: int
    next: OlderCursor


class DeliveriesQuery(ClosedModel):
    limit: QueryLimit = Field(default=50, description=f"Page size, 1 to {LIST_LIMIT_MAX}.")
    cursor: Cursor | None = None
