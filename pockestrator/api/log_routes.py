"""Instance logs: the last entries as JSON, or a live stream as server-sent events.

``follow=true`` answers ``text/event-stream``: first the last ``lines`` entries, then each
new one as it reaches the journal, one ``log`` event per entry whose ``id`` is the journal
cursor. A browser's EventSource that reconnects sends it back in ``Last-Event-ID`` and the
stream resumes after that entry, so nothing is lost or repeated. A comment line every
``KEEPALIVE_SECONDS`` keeps proxies from closing an idle stream and tells us when the client
has gone (aiohttp does not cancel a handler on disconnect). Streams are counted and capped,
and the agent's shutdown ends them all (it stops their journalctl, so each stream closes
properly rather than being cut).
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime

from aiohttp import web

from pockestrator.api import sse
from pockestrator.api.errors import ApiError, Problem, validation_failed
from pockestrator.api.inputs import parse_query
from pockestrator.api.models.logs import LogEntryView, LogsResponse
from pockestrator.api.models.requests import LOG_LINES_MAX, SINCE, LogsQuery
from pockestrator.api.owner_calls import FRAME_CHAIN, OWNER_CALLS
from pockestrator.api.routing import JOURNAL, STREAMS, Operation, agent_of, answer
from pockestrator.api.service_routes.checks import find_service
from pockestrator.api.streams import RECONNECT_MILLISECONDS, opened_stream
from pockestrator.api.views import log_entry_view
from pockestrator.clock import utc_now
from pockestrator.journal import (
    JournalError,
    JournalQuery,
    JournalUnavailable,
    LogEntry,
    LogFollower,
    is_cursor,
)
from pockestrator.specs.errors import ErrorCode
from pockestrator.specs.store import ServiceRecord

KEEPALIVE_SECONDS = 15.0


def parse_since(text: str) -> datetime:
    """``since`` as a UTC moment; raises ``ValueError`` for text outside its grammar.

    The grammar is the one the document states (``SINCE``), so that a client is told
    exactly what is taken. A moment past the end of the calendar once converted to UTC
    (9999-12-31T23:00-05:00) is the latest one there is: it matches no entry.
    """
    match = SINCE.fullmatch(text)
    if match is None:
        raise ValueError("not a moment in the documented grammar")
    cleaned = text[:-1] + "+00:00" if text[-1] in "zZ" else text
    whole, dot, rest = cleaned.partition(".")
    if dot:  # Python reads at most microseconds; the rest of a fraction changes nothing here
        digits = len(rest) - len(rest.lstrip("0123456789"))
        cleaned = f"{whole}.{rest[: min(digits, 6)]}{rest[digits:]}"
    moment = datetime.fromisoformat(cleaned)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        return datetime.max.replace(tzinfo=UTC)


def sse_event(entry: LogEntry) -> bytes:
    """One server-sent event: ``id`` (cursor), ``event: log`` and the entry as JSON."""
    return sse.json_frame("log", log_entry_view(entry), entry.cursor or None)


def _journal_failure(exc: JournalError) -> ApiError:
    if isinstance(exc, JournalUnavailable):
        return ApiError(503, ErrorCode.JOURNAL_UNAVAILABLE, f"Logs are unavailable: {exc}")
    return ApiError(502, ErrorCode.JOURNAL_UNAVAILABLE, f"Reading the journal failed: {exc}")


def _moment(name: str, text: str | None) -> datetime | None:
    """``since`` or ``until`` as a UTC moment; 400 naming the parameter otherwise."""
    if text is None:
        return None
    try:
        return parse_since(text)
    except ValueError:
        raise validation_failed(
            [
                Problem(
                    name,
                    "must be an ISO 8601 date (from 1971) and time, e.g. 2025-07-31T19:30:00Z",
                    ErrorCode.INVALID_VALUE,
                )
            ]
        ) from None


async def service_logs(request: web.Request) -> web.StreamResponse:
    agent = agent_of(request)
    record = find_service(agent, request.match_info["id"])
    return await logs_of(request, record, here=agent.store.runs_here(record.node))


def _forwarded(query: LogsQuery) -> dict[str, str]:
    """The query as the owning node is asked it (the same values, checked here first)."""
    forwarded = {"lines": str(query.lines)}
    for name, value in (("since", query.since), ("until", query.until)):
        if value is not None:
            forwarded[name] = value
    if query.follow:
        forwarded["follow"] = "true"
    return forwarded


async def logs_of(request: web.Request, record: ServiceRecord, *, here: bool) -> web.StreamResponse:
    """The logs of ``record``: from this host's journal when ``here``, else from the
    owning node's (``api.owner_calls``), after the same checks of the query."""
    query = parse_query(request, LogsQuery)
    lines = min(query.lines, LOG_LINES_MAX)
    since = _moment("since", query.since)
    until = _moment("until", query.until)
    if since is not None and until is not None and until <= since:
        raise validation_failed([Problem("until", "must be after since", ErrorCode.INVALID_VALUE)])
    cursor = request.headers.get("Last-Event-ID") if query.follow else None
    if cursor is not None and not is_cursor(cursor):
        raise validation_failed(
            [Problem("Last-Event-ID", "not a journal cursor", ErrorCode.INVALID_VALUE)]
        )
    if not here:
        calls = request.app[OWNER_CALLS]
        if query.follow:
            return await calls.follow(request, record, _forwarded(query), cursor)
        return await calls.logs(record, _forwarded(query))
    if cursor is not None:
        lines = LOG_LINES_MAX  # resuming: everything after the cursor, not just the last few
    journal_query = JournalQuery(
        project_name=record.name, lines=lines, since=since, until=until, after_cursor=cursor
    )
    if query.follow:
        return await _stream(request, journal_query)
    try:
        entries = await request.app[JOURNAL].read(journal_query)
    except JournalError as exc:
        raise _journal_failure(exc) from None
    now = utc_now()
    views = [log_entry_view(entry) for entry in entries]
    return answer(
        LogsResponse(
            service_id=record.id,
            project_name=record.name,
            lines=lines,
            logs=views,
            log_lines=[view.line for view in views],
            total_lines=len(views),
            timestamp=now,
            retrieved_at=now,
        )
    )


async def _stream(request: web.Request, query: JournalQuery) -> web.StreamResponse:
    streams = request.app[STREAMS]
    try:
        with streams.slot() as slot:
            async with request.app[JOURNAL].follow(query) as follower:
                slot.attach(follower)
                return await _send_events(request, follower)
    except JournalError as exc:  # only journalctl's start can raise it
        raise _journal_failure(exc) from None


async def _send_events(request: web.Request, follower: LogFollower) -> web.StreamResponse:
    response = await opened_stream(request)
    # It ends when the client goes (the handler is cancelled, or a write fails) or
    # journalctl does.
    chain = request.get(FRAME_CHAIN)  # a node call's stream: each frame signed, chained

    async def write(frame: bytes) -> None:
        await response.write(frame if chain is None else chain.sign(frame))

    with contextlib.suppress(ConnectionError, EOFError):
        await write(sse.retry(RECONNECT_MILLISECONDS))
        while True:
            entry = await follower.next(KEEPALIVE_SECONDS)
            await write(sse.comment("keepalive") if entry is None else sse_event(entry))
    return response


OPERATIONS = [
    Operation(
        "GET",
        "/services/{id}/logs",
        service_logs,
        "getServiceLogs",
        "The service's logs from the journal (or a live stream with follow=true)",
        {200: LogsResponse},
        "services",
        errors=(502, 503),
        description="For a service of another node of the fleet, that node's journal, "
        "asked over a signed node-to-node call; 502 NODE_UNREACHABLE when it cannot be.",
        query=LogsQuery,
        events=(("log", LogEntryView),),
    ),
]
