"""Reading services: the list (filtered, paged), one service with its runtime status, the
status alone (systemd, memory, CPU, Caddy, health), and the service's event log. The list
and one service also stream with ``watch=true`` (``service_routes.watch``).

The spec and status come from the store; what the host shows now comes from the agent's
host view (``api.context.HostView``), the same observations the reconciler makes.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from aiohttp import web

from pockestrator.api.context import AgentContext
from pockestrator.api.event_routes import follow_events
from pockestrator.api.formatting import human_bytes, human_percent
from pockestrator.api.inputs import parse_query
from pockestrator.api.models.events import FeedEvent
from pockestrator.api.models.requests import EventsQuery, ServiceListQuery, ServiceQuery
from pockestrator.api.models.services import (
    EventList,
    Service,
    ServiceDetail,
    ServiceList,
    ServiceStatusResponse,
    WatchGone,
    WatchSynced,
)
from pockestrator.api.owner_calls import OWNER_CALLS, unknown_runtime
from pockestrator.api.paging import older_page, with_next
from pockestrator.api.routing import Operation, agent_of, answer, etag_of
from pockestrator.api.service_routes.checks import current_view, find_service, lost_nodes
from pockestrator.api.service_routes.watch import list_scope, one_scope, watch
from pockestrator.api.views import (
    certificate_view,
    event_view,
    runtime_view,
    service_state,
    service_view,
)
from pockestrator.specs.grammar import GrammarError, normalize_domain
from pockestrator.specs.store import ServiceRecord, ServiceStatus


def stored_domain(text: str) -> str:
    """``text`` as the store keeps domains (``Blog.Example.COM.`` is ``blog.example.com``).

    Text that is no domain stays as it is: it then equals no stored domain (each is one,
    normalised), so the filter matches nothing, as a filter by a value nobody has should.
    """
    try:
        return normalize_domain(text)
    except GrammarError:
        return text


async def list_services(request: web.Request) -> web.StreamResponse:
    agent = agent_of(request)
    query = parse_query(request, ServiceListQuery)
    if query.watch:
        return await watch(request, list_scope(query))
    limit = query.limit
    offset = int(query.cursor) if query.cursor is not None else query.offset
    domain = stored_domain(query.domain) if query.domain is not None else None
    lost = lost_nodes(agent)
    if query.status == "node_lost":
        every, _ = agent.store.list_services(domain=domain)
        stranded = [record for record in every if record.node in lost]
        records, total = stranded[offset : offset + limit], len(stranded)
    elif query.status == "sleeping":
        # The store records a sleeping service as active; which of them sleep, the agent knows.
        active, _ = agent.store.list_services(state="active", domain=domain)
        asleep = [record for record in active if agent.sleeping(record.name)]
        records, total = asleep[offset : offset + limit], len(asleep)
    else:
        records, total = agent.store.list_services(
            state=query.status, domain=domain, limit=limit, offset=offset
        )
    statuses = agent.store.all_statuses()
    ports = agent.host.public_ports()
    services = [
        service_view(
            r, statuses.get(r.name), agent.config, ports, agent.sleeping(r.name), r.node in lost
        )
        for r in records
    ]
    after = offset + len(records)
    cursor = str(after) if records and after < total else None
    body = ServiceList(services=services, total=total, limit=limit, offset=offset, next=cursor)
    return with_next(answer(body), request, cursor)


async def get_service(request: web.Request) -> web.StreamResponse:
    agent = agent_of(request)
    query = parse_query(request, ServiceQuery)
    record = find_service(agent, request.match_info["id"])
    if query.watch:
        return await watch(request, one_scope(record), one=record)
    status = agent.store.get_status(record.name)
    view = current_view(agent, record, status)
    # This host's view, or the owning node's, asked of it.
    runtime = await request.app[OWNER_CALLS].runtime_status(record, status)
    response = answer(
        ServiceDetail(
            id=record.id,
            message="Service retrieved successfully",
            data=view,
            service=view,
            runtime_status=runtime,
        )
    )
    response.headers["ETag"] = etag_of(record.generation)
    return response


async def service_status(request: web.Request) -> web.StreamResponse:
    agent = agent_of(request)
    record = find_service(agent, request.match_info["id"])
    if not agent.store.runs_here(record.node):
        if record.node in lost_nodes(agent):
            return answer(lost_node_status(agent, record))
        # Live fields are the owning host's: asked of its agent, never this host's (absent)
        # unit (``api.owner_calls``).
        return await request.app[OWNER_CALLS].status(record)
    return answer(await status_here(agent, record))


def recorded_fields(record: ServiceRecord, status: ServiceStatus | None) -> dict[str, Any]:
    """The fields of a service's ``/status`` that the store holds, wherever it runs."""
    return {
        "service_id": record.id,
        "project_name": record.name,
        "desired_state": record.desired_state,
        "health_ok": status.health_ok if status else None,
        "last_health_check": status.last_health_check if status else None,
        "deployed_version": status.deployed_version if status else None,
        "certificate": certificate_view(status),
    }


# What only the unit's own host can say (the rest is the store's): unknown of a lost node.
LIVE_FIELDS = (
    "pid",
    "memory_usage",
    "memory_bytes",
    "cpu_usage",
    "cpu_percent",
    "restarts",
    "active_since",
)


def lost_node_status(agent: AgentContext, record: ServiceRecord) -> ServiceStatusResponse:
    """A service of a node whose lease has ended: ``node_lost`` and what the store last
    knew; nobody to ask for the live fields, so they are unknown (docs/fleet.md)."""
    status = agent.store.get_status(record.name)
    runtime = unknown_runtime(f"node {record.node} is lost: its lease has ended")
    return ServiceStatusResponse(
        **recorded_fields(record, status),
        **runtime.model_dump(),
        **dict.fromkeys(LIVE_FIELDS),
        state=service_state(status, node_lost=True),
    )


async def status_here(agent: AgentContext, record: ServiceRecord) -> ServiceStatusResponse:
    """The status of a service this host runs: its live unit and the stored status."""
    status = agent.store.get_status(record.name)
    runtime = await agent.host.runtime(record.name, status)
    unit = runtime.unit
    memory = unit.memory_bytes if unit is not None and unit.is_running else None
    cpu = status.cpu_percent if status is not None and runtime.is_running else None
    return ServiceStatusResponse(
        **recorded_fields(record, status),
        # The runtime status a service's answer carries, here flattened.
        **runtime_view(runtime, status).model_dump(),
        pid=unit.main_pid if unit is not None and unit.is_running else None,
        memory_usage=human_bytes(memory),
        memory_bytes=memory,
        cpu_usage=human_percent(cpu),
        cpu_percent=cpu,
        restarts=unit.restarts if unit else None,
        active_since=runtime.active_since,
        state=service_state(status, agent.sleeping(record.name), record.node in lost_nodes(agent)),
    )


async def service_events(request: web.Request) -> web.StreamResponse:
    agent = agent_of(request)
    record = find_service(agent, request.match_info["id"])
    query = parse_query(request, EventsQuery)
    if query.follow:
        return await follow_events(request, record.name)
    fetch = partial(agent.store.list_events, record.name)
    page = older_page(fetch, query.limit, query.cursor, query.before)
    body = EventList(
        service_id=record.id,
        project_name=record.name,
        events=[event_view(event) for event in page.rows],
        total=agent.store.count_events(record.name),
        next_before=page.older,
        next=page.cursor,
    )
    return with_next(answer(body), request, page.cursor)


OPERATIONS = [
    Operation(
        "GET",
        "/services",
        list_services,
        "listServices",
        "List managed services",
        {200: ServiceList},
        "services",
        query=ServiceListQuery,
        errors=(503,),
        events=(("service", Service), ("synced", WatchSynced), ("deleted", WatchGone)),
    ),
    Operation(
        "GET",
        "/services/{id}",
        get_service,
        "getService",
        "A service, by id or project name, with its runtime status",
        {200: ServiceDetail},
        "services",
        errors=(503,),
        query=ServiceQuery,
        events=(("service", ServiceDetail), ("deleted", WatchGone)),
        response_headers={
            200: {"ETag": "The service's generation: send it as If-Match to PATCH or DELETE."}
        },
    ),
    Operation(
        "GET",
        "/services/{id}/status",
        service_status,
        "getServiceStatus",
        "Real-time status: systemd state, PID, memory, CPU, config match, Caddy",
        {200: ServiceStatusResponse},
        "services",
        errors=(502,),
        description="The live fields are the owning node's: for a service of another node "
        "of the fleet, asked of it over a signed node-to-node call; 502 NODE_UNREACHABLE "
        "when it cannot be.",
    ),
    Operation(
        "GET",
        "/services/{id}/events",
        service_events,
        "listServiceEvents",
        "The service's event log, newest first",
        {200: EventList},
        "services",
        errors=(503,),
        query=EventsQuery,
        events=(("event", FeedEvent),),
    ),
]
