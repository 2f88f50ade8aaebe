"""Watch streams: ``GET /services?watch=true`` and ``GET /services/{id}?watch=true``.

Each answers ``text/event-stream``. A ``service`` event carries the service as the list (or
the get) answers it; its ``id`` is a resource version of the store's change feed
(``specs.store.changes``), which counts every committed change to a spec *and* to a status,
so a service that starts, fails or passes a health check is sent again, not only an edited
one. A fresh list watch first sends every matching service, then ``synced`` (its id the
version the state was read at, its data the ids covered). A ``deleted`` event says a service
went (or, for a filtered list, no longer matches).

Resuming: ``Last-Event-ID`` of this run of the agent, recent enough, is answered with the
current state of every service changed since, then the live changes; any other id (from an
earlier run, too old, or none) gets the whole state again, which each event carries in
full. The stream is woken by the store's writes (no polling), sends a heartbeat comment
every ``KEEPALIVE_SECONDS``, and ends at shutdown. Open watches are capped (``max_watches``).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

from aiohttp import web

from pockestrator.api import sse
from pockestrator.api.context import AgentContext
from pockestrator.api.models.requests import ServiceListQuery
from pockestrator.api.models.services import (
    Service,
    ServiceDetail,
    WatchGone,
    WatchSynced,
)
from pockestrator.api.owner_calls import OWNER_CALLS, OwnerCalls
from pockestrator.api.routing import WATCHES, agent_of
from pockestrator.api.service_routes.checks import current_view, lost_nodes
from pockestrator.api.streams import RECONNECT_MILLISECONDS, opened_stream
from pockestrator.api.views import service_state
from pockestrator.specs.grammar import GrammarError, normalize_domain
from pockestrator.specs.store import ServiceRecord, ServiceStatus
from pockestrator.specs.store.changes import ChangeFeed, Waiter

KEEPALIVE_SECONDS = 15.0
# Past this many changed services in one wake-up, the whole list is read once instead.
READ_ALL_PAST = 16


@dataclass
class _Filter:
    """What a list watch covers (status, domain); a single watch covers one name."""

    status: str | None = None
    domain: str | None = None
    name: str | None = None

    def covers(
        self,
        record: ServiceRecord,
        status: ServiceStatus | None,
        *,
        asleep: bool = False,
        lost: bool = False,
    ) -> bool:
        """As the list filters: ``status=active`` takes sleeping services too (their
        stored state), ``sleeping`` only those, ``node_lost`` those of a lost node."""
        if self.name is not None and record.name != self.name:
            return False
        stored = service_state(status)
        if self.status == "sleeping":
            if not (asleep and stored == "active"):
                return False
        elif self.status == "node_lost":
            if not lost:
                return False
        elif self.status is not None and stored != self.status:
            return False
        return self.domain is None or record.spec.domain == self.domain


@dataclass
class _Watch:
    """One open watch: its response, what it covers, and what it has sent of each name."""

    agent: AgentContext
    response: web.StreamResponse
    scope: _Filter
    detail: bool = False  # a single watch sends the get answer (with the runtime status)
    owner: OwnerCalls | None = None  # for the runtime status of another node's service
    sent: dict[str, str] = field(default_factory=dict)  # name -> id of what was sent
    # The fleet's lost nodes, read once per batch of events (a query of the store).
    lost: frozenset[str] = frozenset()

    @property
    def feed(self) -> ChangeFeed:
        return self.agent.store.changes

    async def _send_service(
        self, record: ServiceRecord, status: ServiceStatus | None, event_id: str | None
    ) -> None:
        agent = self.agent
        view = current_view(agent, record, status, self.lost)
        data: Service | ServiceDetail = view
        if self.detail:
            assert self.owner is not None  # a single watch is given it
            data = ServiceDetail(
                id=record.id,
                message="Service retrieved successfully",
                data=view,
                service=view,
                runtime_status=await self.owner.runtime_status(record, status),
            )
        await self.response.write(sse.json_frame("service", data, event_id))
        self.sent[record.name] = record.id

    async def _send_gone(self, name: str, event_id: str | None) -> None:
        service_id = self.sent.pop(name)
        await self.response.write(
            sse.json_frame("deleted", WatchGone(id=service_id, project_name=name), event_id)
        )

    def _covers(self, record: ServiceRecord, status: ServiceStatus | None) -> bool:
        agent = self.agent
        return self.scope.covers(
            record,
            status,
            asleep=agent.sleeping(record.name),
            lost=record.node in self.lost,
        )

    async def snapshot(self) -> None:
        """Everything covered now; for a list, ended by ``synced`` (the only id sent)."""
        version = self.feed.resource_version(self.feed.version)
        store = self.agent.store
        self.lost = lost_nodes(self.agent)
        if self.scope.name is not None:
            record = store.get_service(self.scope.name)
            if record is None:
                if self.scope.name in self.sent:
                    await self._send_gone(self.scope.name, version)
                return
            await self._send_service(record, store.get_status(record.name), version)
            return
        records, _total = store.list_services()
        statuses = store.all_statuses()
        covered = [r for r in records if self._covers(r, statuses.get(r.name))]
        self.sent.clear()
        for record in covered:
            await self._send_service(record, statuses.get(record.name), None)
        await self.response.write(
            sse.json_frame(
                "synced",
                WatchSynced(resource_version=version, ids=[r.id for r in covered]),
                version,
            )
        )

    async def changes(self, changed: dict[str, int]) -> None:
        """The current state of each changed name this watch covers, oldest change first."""
        store = self.agent.store
        if self.scope.name is not None:
            changed = {n: v for n, v in changed.items() if n == self.scope.name}
        if not changed:
            return
        self.lost = lost_nodes(self.agent)
        records: dict[str, ServiceRecord | None]
        if len(changed) > READ_ALL_PAST:
            listed, _total = store.list_services()
            statuses = store.all_statuses()
            records = {r.name: r for r in listed}
        else:
            records = {name: store.get_service(name) for name in changed}
            statuses = {}
            for name, found in records.items():
                status = store.get_status(name) if found is not None else None
                if status is not None:
                    statuses[name] = status
        for name, number in changed.items():
            event_id = self.feed.resource_version(number)
            record = records.get(name)
            if record is not None and record.name != name:
                record = None  # get_service matched an id: not this name
            status = statuses.get(name)
            if record is not None and self._covers(record, status):
                await self._send_service(record, status, event_id)
            elif name in self.sent:
                await self._send_gone(name, event_id)


def _domain_filter(text: str | None) -> str | None:
    if text is None:
        return None
    try:
        return normalize_domain(text)
    except GrammarError:
        return text  # equals no stored domain: the watch covers nothing, as the list does


def list_scope(query: ServiceListQuery) -> _Filter:
    return _Filter(status=query.status, domain=_domain_filter(query.domain))


def one_scope(record: ServiceRecord) -> _Filter:
    return _Filter(name=record.name)


async def watch(
    request: web.Request, scope: _Filter, *, one: ServiceRecord | None = None
) -> web.StreamResponse:
    """The stream, from the first event to the client's going (or the agent's shutdown);
    ``one`` is the service of a single watch (found already: a 404 comes before)."""
    agent = agent_of(request)
    feed = agent.store.changes
    slots = request.app[WATCHES]
    with feed.subscribe() as waiter, slots.slot(waiter):
        return await _serve(request, agent, scope, waiter, one)


async def _serve(
    request: web.Request,
    agent: AgentContext,
    scope: _Filter,
    waiter: Waiter,
    one: ServiceRecord | None,
) -> web.StreamResponse:
    feed = agent.store.changes
    # Subscribed before anything is read: a change from here on wakes the loop below.
    resumed = feed.parse(request.headers.get("Last-Event-ID"))
    if resumed is not None and feed.since(resumed) is None:
        resumed = None
    response = await opened_stream(request)
    stream = _Watch(agent, response, scope, detail=one is not None, owner=request.app[OWNER_CALLS])
    if one is not None:
        stream.sent[one.name] = one.id
    slots = request.app[WATCHES]
    with contextlib.suppress(ConnectionError, EOFError):
        await response.write(sse.retry(RECONNECT_MILLISECONDS))
        if resumed is None:
            seen = feed.version
            await stream.snapshot()
        else:
            seen = await _send_since(stream, feed, resumed)
        while not slots.closing and (one is None or one.name in stream.sent):
            if not await waiter.wait(KEEPALIVE_SECONDS):
                await response.write(sse.comment("heartbeat"))
                continue
            if not slots.closing:
                seen = await _send_since(stream, feed, seen)
    return response


async def _send_since(stream: _Watch, feed: ChangeFeed, seen: int) -> int:
    """Send what changed after ``seen``; a log that no longer reaches back resends all.
    Returns the version sent up to (a later change has woken the waiter meanwhile)."""
    now = feed.version
    changed = feed.since(seen)
    if changed is None:
        await stream.snapshot()
        return now
    await stream.changes(changed)
    return max([seen, *changed.values()])
