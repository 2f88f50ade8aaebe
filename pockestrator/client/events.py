"""``pockestrator events`` and ``pockestrator webhooks``: the event feed and its webhooks.

``events -f`` follows ``GET /events?follow=true`` and resumes after the last event it
printed when the stream breaks (an agent restart), so nothing is missed or printed twice.
A webhook's secret is printed once, by ``webhooks add``, alone on stdout (so that
``SECRET=$(pockestrator webhooks add URL)`` works); notes go to stderr.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from pockestrator.client.http import (
    AgentUnreachable,
    ApiClient,
    ClientError,
    decoded_events,
    service_path,
)
from pockestrator.client.output import safe_text, short_time, table

RECONNECT_SECONDS = 3.0


def _event_line(event: dict[str, Any]) -> str:
    service = event.get("service") or "-"
    return safe_text(
        f"{short_time(event.get('at'))}  {event.get('id')}  {service}  {event.get('kind')}"
        f"  {event.get('message')}"
    )


def events(client: ApiClient, console: Any, service: str | None, limit: int, follow: bool) -> int:
    path = service_path(service, "events") if service else "/events"
    if not follow:
        answer = client.call("GET", path, query={"limit": limit}).body
        found = answer["events"]
        if service:
            found = [{**event, "service": service} for event in found]
        console.show(found, lambda: "\n".join(_event_line(e) for e in reversed(found)))
        return 0
    last: str | None = None
    while True:
        stream = client.events(path, {"follow": True}, last_event_id=last)
        try:
            for event, data in decoded_events(stream, "event"):
                if service:
                    data.setdefault("service", service)
                console.streamed(data, _event_line)
                last = event.id or last
        except KeyboardInterrupt:
            stream.close()
            return 0  # Ctrl-C is how a follow is meant to end
        except (AgentUnreachable, ClientError) as exc:
            if last is None:
                raise
            console.note(f"the event stream broke ({exc}); resuming after event {last}")
        else:
            console.note("the agent ended the event stream; resuming")
        try:
            time.sleep(RECONNECT_SECONDS)
        except KeyboardInterrupt:
            return 0


def webhooks_list(client: ApiClient, console: Any) -> int:
    hooks = client.call("GET", "/webhooks").body["webhooks"]
    rows = [
        [
            h.get("id"),
            h.get("url"),
            ",".join(h.get("kinds") or []) or "*",
            ",".join(h.get("services") or []) or "*",
            h["deliveries"]["delivered"],
            h["deliveries"]["pending"] + h["deliveries"]["sending"],
            h["deliveries"]["failed"],
            short_time(h.get("last_delivery_at")),
        ]
        for h in hooks
    ]
    headers = ("ID", "URL", "KINDS", "SERVICES", "DELIVERED", "PENDING", "FAILED", "LAST")
    console.show(hooks, lambda: table(headers, rows))
    return 0


def webhooks_add(
    client: ApiClient, console: Any, url: str, kinds: Sequence[str], services: Sequence[str]
) -> int:
    body = {"url": url, "kinds": list(kinds), "services": list(services)}
    answer = client.call("POST", "/webhooks", body=body).body
    secret = str(answer["secret"])
    console.show(answer, lambda: secret)
    console.note(
        f"created webhook {answer.get('id')} for {url}; the secret above signs every delivery"
        " and is shown only this once"
    )
    return 0


def webhooks_delete(client: ApiClient, console: Any, webhook_id: str) -> int:
    answer = client.call("DELETE", f"/webhooks/{webhook_id}").body
    console.show(answer, lambda: f"{answer.get('message')} (id {webhook_id})")
    return 0


def webhooks_test(client: ApiClient, console: Any, webhook_id: str, wait: float) -> int:
    """Queue a test event; with ``wait``, follow its deliveries until one ends it."""
    answer = client.call("POST", f"/webhooks/{webhook_id}/test").body
    event_id = answer["event_id"]
    if wait <= 0:
        console.show(answer, lambda: f"test event {event_id} queued")
        return 0
    deadline = time.monotonic() + wait
    while True:
        found = client.call("GET", f"/webhooks/{webhook_id}/deliveries").body["deliveries"]
        mine = [d for d in found if d["event_id"] == event_id]
        final = [d for d in mine if d["outcome"] in ("delivered", "failed")]
        if final or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    console.show(mine, lambda: _deliveries_table(mine))
    if final and final[0]["outcome"] == "delivered":
        return 0
    raise ClientError(
        f"test event {event_id} was not delivered"
        + (f": the receiver answered {mine[0]['status_code']}" if mine else " yet")
    )


def _deliveries_table(found: Sequence[dict[str, Any]]) -> str:
    rows = [
        [
            short_time(d.get("at")),
            d.get("event_id"),
            d.get("attempt"),
            d.get("status_code") if d.get("status_code") is not None else "-",
            f"{d.get('duration_ms', 0):.0f} ms",
            d.get("outcome"),
            (d.get("error") or "")[:60],
        ]
        for d in found
    ]
    return table(("AT", "EVENT", "ATTEMPT", "STATUS", "TIME", "OUTCOME", "ERROR"), rows)


def webhooks_deliveries(client: ApiClient, console: Any, webhook_id: str, limit: int) -> int:
    found = client.call("GET", f"/webhooks/{webhook_id}/deliveries", query={"limit": limit}).body[
        "deliveries"
    ]
    console.show(found, lambda: _deliveries_table(found))
    return 0
