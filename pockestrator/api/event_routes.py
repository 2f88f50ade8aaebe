"""The event feed (every service's events, or a live stream of them) and the webhooks
that deliver them: create (the secret is in that answer only), list, delete, send a test
event, and the last deliveries with the receiver's answers.

Delivery itself is the agent's (``agent.webhooks``): these handlers write the store, and
the store's commit wakes the delivery worker and the open streams.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from functools import partial

import structlog
from aiohttp import web

from pockestrator.api import sse
from pockestrator.api.errors import Problem, not_found, validation_failed
from pockestrator.api.event_feed import EventFeed
from pockestrator.api.inputs import parse_query, read_json, validate_model
from pockestrator.api.models.events import (
    DeliveriesQuery,
    DeliveryCounts,
    DeliveryList,
    DeliveryView,
    FeedEvent,
    FeedList,
    FeedQuery,
    WebhookCreateBody,
    WebhookCreated,
    WebhookDeleted,
    WebhookList,
    WebhookTestQueued,
    WebhookView,
)
from pockestrator.api.paging import older_page, with_next
from pockestrator.api.routing import Link, Operation, agent_of, answer, principal_of
from pockestrator.api.streams import RECONNECT_MILLISECONDS, opened_stream
from pockestrator.specs.copying import copied
from pockestrator.specs.errors import ErrorCode
from pockestrator.specs.grammar import WEBHOOK_ID
from pockestrator.specs.store import NO_SERVICE, Event, Store, Webhook
from pockestrator.waits import woken

log = structlog.get_logger("pockestrator.api")

EVENT_FEED = web.AppKey("event_feed", EventFeed)
KEEPALIVE_SECONDS = 15.0
# Events read from the store per round of a stream (a resume far back takes several).
STREAM_BATCH = 200
LAST_EVENT_ID_DIGITS = 18


def feed_event(event: Event) -> FeedEvent:
    return FeedEvent(
        id=event.id,
        service=event.service if event.service != NO_SERVICE else None,
        at=event.at,
        kind=event.kind,
        message=event.message,
        details=event.details,
    )


def _last_event_id(request: web.Request, store: Store) -> int:
    """Where a stream starts: after the client's Last-Event-ID, else after the newest."""
    header = request.headers.get("Last-Event-ID")
    if header is None:
        return store.last_event_id()
    if not (header.isascii() and header.isdigit() and len(header) <= LAST_EVENT_ID_DIGITS):
        raise validation_failed(
            [Problem("Last-Event-ID", "must be an event id (digits)", ErrorCode.INVALID_VALUE)]
        )
    return int(header)


async def follow_events(request: web.Request, service: str | None) -> web.StreamResponse:
    """``text/event-stream`` of the events after the start point, as they are recorded."""
    store = agent_of(request).store
    after = _last_event_id(request, store)
    feed = request.app[EVENT_FEED]
    with feed.subscription() as wakeup:
        return await _send_events(request, feed, wakeup, service, after)


async def _send_events(
    request: web.Request,
    feed: EventFeed,
    wakeup: asyncio.Event,
    service: str | None,
    after: int,
) -> web.StreamResponse:
    store = agent_of(request).store
    response = await opened_stream(request)
    with contextlib.suppress(ConnectionError, EOFError):
        await response.write(sse.retry(RECONNECT_MILLISECONDS))
        while not feed.closing:
            wakeup.clear()  # before the read: an event committed after it wakes us again
            events = store.events_after(after, service=service, limit=STREAM_BATCH)
            for event in events:
                data = json.dumps(feed_event(event).model_dump(mode="json"), separators=(",", ":"))
                await response.write(sse.frame(data, event="event", event_id=str(event.id)))
                after = event.id
            if len(events) == STREAM_BATCH:
                continue
            if not await woken(wakeup, KEEPALIVE_SECONDS):
                await response.write(sse.comment("keepalive"))
    return response


async def list_events(request: web.Request) -> web.StreamResponse:
    query = parse_query(request, FeedQuery)
    if query.follow:
        return await follow_events(request, None)
    store = agent_of(request).store
    page = older_page(store.list_all_events, query.limit, query.cursor, query.before)
    body = FeedList(
        events=[feed_event(event) for event in page.rows],
        total=store.count_all_events(),
        next_before=page.older,
        next=page.cursor,
    )
    return with_next(answer(body), request, page.cursor)


# -- webhooks ----------------------------------------------------------------------------


def webhook_view(store: Store, webhook: Webhook) -> WebhookView:
    return WebhookView(
        id=webhook.id,
        url=webhook.url,
        kinds=list(webhook.kinds),
        services=list(webhook.services),
        created_at=webhook.created_at,
        created_by=webhook.created_by,
        last_delivery_at=store.last_delivery_at(webhook.id),
        deliveries=DeliveryCounts(**store.delivery_counts(webhook.id)),
    )


def _find_webhook(request: web.Request) -> Webhook:
    webhook_id = request.match_info["webhook_id"]
    found = (
        agent_of(request).store.get_webhook(webhook_id)
        if WEBHOOK_ID.fullmatch(webhook_id)
        else None
    )
    if found is None:
        raise not_found("Webhook", webhook_id, ErrorCode.WEBHOOK_NOT_FOUND)
    return found


async def list_webhooks(request: web.Request) -> web.StreamResponse:
    store = agent_of(request).store
    hooks = store.list_webhooks()
    return answer(WebhookList(webhooks=[webhook_view(store, h) for h in hooks], total=len(hooks)))


async def create_webhook(request: web.Request) -> web.StreamResponse:
    agent = agent_of(request)
    body = validate_model(
        WebhookCreateBody, await read_json(request, limit=agent.config.max_body_bytes)
    )
    principal = principal_of(request)
    webhook = agent.store.create_webhook(
        body.url,
        kinds=sorted(set(body.kinds)),
        services=sorted(set(body.services)),
        created_by=principal.name,
    )
    log.info("webhook created", webhook_id=webhook.id, url=webhook.url, by=principal.name)
    return answer(
        WebhookCreated(
            id=webhook.id,
            webhook=webhook_view(agent.store, webhook),
            secret=webhook.secret,
            message="Webhook created; its secret is shown only this once",
        ),
        201,
    )


async def get_webhook(request: web.Request) -> web.StreamResponse:
    return answer(webhook_view(agent_of(request).store, _find_webhook(request)))


async def delete_webhook(request: web.Request) -> web.StreamResponse:
    webhook = _find_webhook(request)
    agent_of(request).store.delete_webhook(webhook.id)
    log.info("webhook deleted", webhook_id=webhook.id, by=principal_of(request).name)
    return answer(WebhookDeleted(id=webhook.id, deleted=True, message="Webhook deleted"))


async def test_webhook(request: web.Request) -> web.StreamResponse:
    webhook = _find_webhook(request)
    event = agent_of(request).store.add_test_event(webhook.id)
    return answer(
        WebhookTestQueued(
            id=webhook.id,
            event_id=event.id,
            message="A test event is queued; its delivery shows in the webhook's deliveries",
        ),
        202,
    )


async def webhook_deliveries(request: web.Request) -> web.StreamResponse:
    webhook = _find_webhook(request)
    query = parse_query(request, DeliveriesQuery)
    fetch = partial(agent_of(request).store.list_deliveries, webhook.id)
    page = older_page(fetch, query.limit, query.cursor)
    body = DeliveryList(
        webhook_id=webhook.id,
        deliveries=[copied(DeliveryView, delivery) for delivery in page.rows],
        total=len(page.rows),
        next=page.cursor,
    )
    return with_next(answer(body), request, page.cursor)


OPERATIONS = [
    Operation(
        "GET",
        "/events",
        list_events,
        "listEvents",
        "Every service's events, newest first (or a live stream with follow=true)",
        {200: FeedList},
        "events",
        errors=(503,),
        query=FeedQuery,
        events=(("event", FeedEvent),),
    ),
    Operation(
        "GET",
        "/webhooks",
        list_webhooks,
        "listWebhooks",
        "List webhooks (never their secrets)",
        {200: WebhookList},
        "events",
    ),
    Operation(
        "POST",
        "/webhooks",
        create_webhook,
        "createWebhook",
        "Create a webhook; its signing secret is in this answer only",
        {201: WebhookCreated},
        "events",
        body=WebhookCreateBody,
        links=(Link("GetTheWebhook", "getWebhook", {"webhook_id": "id"}, status=201),),
    ),
    Operation(
        "GET",
        "/webhooks/{webhook_id}",
        get_webhook,
        "getWebhook",
        "A webhook, with its deliveries by state",
        {200: WebhookView},
        "events",
    ),
    Operation(
        "DELETE",
        "/webhooks/{webhook_id}",
        delete_webhook,
        "deleteWebhook",
        "Delete a webhook and the deliveries it has not made",
        {200: WebhookDeleted},
        "events",
    ),
    Operation(
        "POST",
        "/webhooks/{webhook_id}/test",
        test_webhook,
        "testWebhook",
        "Queue a test event for this webhook only",
        {202: WebhookTestQueued},
        "events",
    ),
    Operation(
        "GET",
        "/webhooks/{webhook_id}/deliveries",
        webhook_deliveries,
        "listWebhookDeliveries",
        "The webhook's last delivery attempts, newest first, with the answers",
        {200: DeliveryList},
        "events",
        query=DeliveriesQuery,
    ),
]
