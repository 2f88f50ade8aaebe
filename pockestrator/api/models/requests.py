"""What clients send: query parameters and request bodies (``api.models`` has the overview).

Query parameters are strings on the wire and are parsed strictly here (``QueryInt``,
``QueryBool``): ``?limit=5`` is a number, ``?limit=5.0`` is refused. The bodies are strict
(JSON types as documented, no unknown fields); the service bodies are derived from
``ServiceSpec`` (``api.spec_shapes.request_body``). ``api.inputs`` reads the request into
these models and turns what they refuse into the API's 400.

Every constraint a handler enforces on a parameter is stated in its schema (a fuzzer holds
the server to the document, both ways): the bound of a number, the grammar of ``since``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, Field
from pydantic_core import PydanticCustomError

from pockestrator.api.models import ClosedModel, ServiceState
from pockestrator.api.spec_shapes import STRICT, request_body
from pockestrator.specs.errors import ErrorCode
from pockestrator.specs.grammar import NO_ASCII_CONTROLS, Pattern
from pockestrator.specs.model import ServiceSpec
from pockestrator.specs.values.service import PORT_MAX, PORT_MIN

LIST_LIMIT_MAX = 500
LOG_LINES_MAX = 10_000
# A query number has at most ten digits: enough for any count or id, and never past
# SQLite's 64-bit integers (an OFFSET beyond them would be an error, not an empty page).
QUERY_INT_DIGITS = 10
QUERY_INT_MAX = 10**QUERY_INT_DIGITS - 1


def _since_pattern() -> Pattern:
    """ISO 8601 as ``since`` takes it: a real calendar date from 1971 (the journal's time),
    then optionally a time to the minute, second or fraction, with ``Z`` or an offset.

    Each month has its days, and 29 February its leap years, so that every text the
    pattern admits is a moment (a fuzzer sends what the document admits).
    """
    year = r"(?:197[1-9]|19[89][0-9]|[2-9][0-9]{3})"
    leap_year = (
        r"(?:19(?:7[26]|8[048]|9[26])"  # 1972 to 1996
        r"|[2-9][0-9](?:0[48]|[2468][048]|[13579][26])"  # a year divisible by 4 ...
        r"|(?:[2468][048]|[3579][26])00)"  # ... or by 400 (2000, 2400, ...)
    )
    month_day = (
        r"(?:(?:0[1-9]|1[0-2])-(?:0[1-9]|1[0-9]|2[0-8])"
        r"|(?:0[13-9]|1[0-2])-(?:29|30)"
        r"|(?:0[13578]|1[02])-31)"
    )
    date = rf"(?:{year}-{month_day}|{leap_year}-02-29)"
    time = r"[Tt ](?:[01][0-9]|2[0-3]):[0-5][0-9](?::[0-5][0-9](?:\.[0-9]{1,9})?)?"
    zone = r"(?:[Zz]|[+-](?:[01][0-9]|2[0-3]):?[0-5][0-9])"
    return Pattern(rf"{date}(?:{time}{zone}?)?")


SINCE = _since_pattern()


# -- query parameters: strings on the wire, parsed strictly ------------------------------


def _query_int(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if (
        isinstance(value, str)
        and value.isascii()
        and value.isdigit()
        and len(value) <= QUERY_INT_DIGITS
    ):
        return int(value)
    raise PydanticCustomError(
        str(ErrorCode.INVALID_TYPE), f"must be a whole number of at most {QUERY_INT_DIGITS} digits"
    )


def _query_bool(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise PydanticCustomError(str(ErrorCode.INVALID_TYPE), "must be true or false")


QueryInt = Annotated[int, Field(le=QUERY_INT_MAX), BeforeValidator(_query_int)]
# An id in a query (events have ids from 1); its bounds sit before the parser, as the
# JSON schema states only those (a bound after it would be written out as an unknown key).
QueryId = Annotated[int, Field(ge=1, le=QUERY_INT_MAX), BeforeValidator(_query_int)]
QueryBool = Annotated[bool, BeforeValidator(_query_bool)]
# A page size: its bounds sit before the parser too (a bound given beside ``QueryInt``
# would lose to the one inside it). Over the maximum is a 400, not a smaller page.
QueryLimit = Annotated[int, Field(ge=1, le=LIST_LIMIT_MAX), BeforeValidator(_query_int)]
# A service's port in a query (an import's), bounded as a spec's port is.
QueryPort = Annotated[int, Field(ge=PORT_MIN, le=PORT_MAX), BeforeValidator(_query_int)]


CURSOR_PATTERN = "^[0-9]{1,10}$"
Cursor = Annotated[
    str,
    Field(
        pattern=CURSOR_PATTERN,
        description="Where the page starts: the `next` of the page before (opaque; the"
        " Link header's rel=next carries it too).",
    ),
]


class PageQuery(ClosedModel):
    """One pagination style for every list: ``limit`` and the ``cursor`` the page before
    gave as ``next`` (also in its ``Link: <...>; rel="next"`` header)."""

    limit: QueryLimit = Field(default=50, description=f"Page size, 1 to {LIST_LIMIT_MAX}.")
    cursor: Cursor | None = None


class WholePageQuery(PageQuery):
    """``PageQuery`` for lists that had no pages before (backups, app releases, the
    archive): by default the largest page, so a client that never pages sees what it saw."""

    limit: QueryLimit = Field(
        default=LIST_LIMIT_MAX, description=f"Page size, 1 to {LIST_LIMIT_MAX} (the default)."
    )


class ServiceListQuery(ClosedModel):
    status: ServiceState | None = Field(
        default=None,
        description="Only services in this state; active includes the sleeping ones.",
    )
    domain: str | None = Field(
        default=None,
        description="Only the service with this domain (compared as the agent stores it:"
        " lowercase, ASCII); a value that is no domain matches no service.",
    )
    limit: QueryLimit = Field(default=50, description=f"Page size, 1 to {LIST_LIMIT_MAX}.")
    offset: QueryInt = Field(default=0, ge=0, description="Services to skip (pagination).")
    cursor: Cursor | None = None
    watch: QueryBool = Field(
        default=False,
        description="Stream the services as server-sent events instead (text/event-stream):"
        " every matching service, a `synced` event, then each change as it is committed;"
        " limit and offset do not apply. Each event's id is a resource version, honoured in"
        " Last-Event-ID.",
    )


class ServiceQuery(ClosedModel):
    watch: QueryBool = Field(
        default=False,
        description="Stream the service as server-sent events instead (text/event-stream):"
        " its answer now, then again at each change of its spec or status. Each event's id"
        " is a resource version, honoured in Last-Event-ID.",
    )


class CreateQuery(ClosedModel):
    wait: QueryBool = Field(
        default=False,
        description="Answer after the first reconcile of the new service (bounded).",
    )


class PatchQuery(CreateQuery):
    pass


class DeleteQuery(ClosedModel):
    purge: QueryBool = Field(
        default=False, description="Remove the data instead of archiving it (the default)."
    )
    wait: QueryBool = Field(
        default=True, description="Answer after the host has been cleaned up (bounded)."
    )


class LogsQuery(ClosedModel):
    lines: QueryInt = Field(
        default=100,
        ge=1,
        description=f"How many of the latest entries; values above {LOG_LINES_MAX} count as that.",
    )
    since: str | None = Field(
        default=None,
        description="Only entries at or after this moment: ISO 8601, a date from 1971 and"
        " optionally a time (to the minute, second or fraction) with Z or an offset, e.g."
        " 2025-07-31T19:30:00Z; without a zone, UTC.",
        examples=["2025-07-31T19:30:00Z"],
        # Stated, not checked here: the handler checks it with its own message.
        json_schema_extra={"pattern": SINCE.json},
    )
    until: str | None = Field(
        default=None,
        description="Only entries before this moment; the same grammar as since, and after"
        " since when both are given.",
        examples=["2025-07-31T20:30:00Z"],
        json_schema_extra={"pattern": SINCE.json},
    )
    follow: QueryBool = Field(
        default=False,
        description="Keep the response open and stream new entries as server-sent events"
        " (text/event-stream); each event's id is a journal cursor, honoured in Last-Event-ID.",
    )


class EventPageQuery(ClosedModel):
    """A page of events back from ``before``: the service's and the feed's alike."""

    limit: QueryLimit = Field(default=50, description=f"Page size, 1 to {LIST_LIMIT_MAX}.")
    before: QueryId | None = Field(
        default=None, description="Only events older than this event id (paging back)."
    )


def follow_field(stream: str) -> Any:
    """The ``follow`` parameter of an event list: ``stream`` says what it streams."""
    return Field(
        default=False,
        description=f"Keep the response open and stream {stream} (text/event-stream) whose"
        " id is the event's; a reconnect's Last-Event-ID resumes after that event.",
    )


def wait_field(what: str) -> Any:
    """The ``wait`` parameter of an operation asked of a service (``what`` names it)."""
    return Field(
        default=True,
        description=f"Answer when the {what} has finished (bounded; 202 while it runs).",
    )


class EventsQuery(EventPageQuery):
    follow: QueryBool = follow_field("the service's new events as server-sent events")
    cursor: Cursor | None = None


# -- request bodies ----------------------------------------------------------------------

ServiceCreateBody = request_body(
    ServiceSpec,
    "create",
    "ServiceCreateBody",
    "A new service. ``domain`` defaults to ``<project_name>.<default_domain>``; "
    "``created_by`` to the caller (token name or admin e-mail).",
)
ServicePatchBody = request_body(
    ServiceSpec,
    "patch",
    "ServicePatchBody",
    "A JSON merge patch (RFC 7396) of a service: only the fields given change, ``null``"
    " resets a field to its default (and removes an ``env`` entry); ``port`` and"
    " ``pocketbase_version`` have none and cannot be null. ``project_name`` may be given,"
    " but must not change; ``created_by`` cannot be changed.",
)


class ControlBody(BaseModel):
    model_config = STRICT

    action: Literal["start", "stop", "restart"]


class TokenCreateBody(BaseModel):
    model_config = STRICT

    name: str = Field(min_length=1, max_length=100, pattern=NO_ASCII_CONTROLS.json, examples=["ci"])


class LoginBody(BaseModel):
    model_config = STRICT

    email: str = Field(min_length=1, max_length=254)
    password: str = Field(min_length=1, max_length=1024)
