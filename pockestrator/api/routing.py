"""The route table's shape: each operation declares its models once, and both the aiohttp
router and the OpenAPI document are built from that declaration (so they cannot disagree).

Also the typed application keys, and the small helpers every handler uses to reach the
agent, the caller and to answer with a model.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any
from urllib.parse import quote

from aiohttp import web
from pydantic import BaseModel

from pockestrator.api.auth import PasswordChecks, Principal
from pockestrator.api.context import AgentContext
from pockestrator.api.models.backups import OperationAnswer
from pockestrator.api.models.problems import ErrorResponse
from pockestrator.api.models.services import ServiceWritten
from pockestrator.api.streams import LogStreams, WatchSlots
from pockestrator.journal import JournalReader

PREFIX = "/api/pockestrator"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# One model, or several a body may match (documented as anyOf).
ResponseModels = type[BaseModel] | tuple[type[BaseModel], ...]

AGENT = web.AppKey("agent", AgentContext)
PASSWORDS = web.AppKey("passwords", PasswordChecks)
JOURNAL = web.AppKey("journal", JournalReader)
STREAMS = web.AppKey("streams", LogStreams)
WATCHES = web.AppKey("watches", WatchSlots)
# Typed request storage where aiohttp has it (3.13+), a plain key before.
PRINCIPAL: Any = (
    web.RequestKey("principal", Principal)
    if hasattr(web, "RequestKey")
    else "pockestrator.principal"
)


@dataclass(frozen=True)
class Link:
    """From a 2xx answer to the operation ``operation_id``, whose path parameters come
    from the answer's fields: ``{"id": "id"}`` puts the answer's ``id`` in ``{id}``."""

    name: str
    operation_id: str
    parameters: dict[str, str]
    status: int = 200

    def document(self) -> dict[str, Any]:
        return {
            "operationId": self.operation_id,
            "parameters": {
                name: f"$response.body#/{source}" for name, source in self.parameters.items()
            },
        }


@dataclass(frozen=True)
class Operation:
    """One method on one path, with what it takes and what it answers per status code.

    ``responses`` maps a status code to the model of its JSON body, and ``errors`` lists
    the statuses the handler answers with the error body (409, 502, ...); ``answers`` adds
    what the server answers around every handler, and the 404 of a path with parameters.
    ``events`` marks a 200 that may be a ``text/event-stream`` instead: each event's name
    with the model of its JSON ``data``. ``links`` say which operation a 2xx answer leads
    to, and with which of its fields (OpenAPI links: a client, or a fuzzer, follows them).
    ``public`` operations need no token; ``sessions_only`` ones take a dashboard session,
    not an API token. ``binary`` statuses answer a file of the given media type, not JSON.
    """

    method: str
    path: str
    handler: Handler
    operation_id: str
    summary: str
    responses: dict[int, ResponseModels]
    tag: str
    description: str = ""
    query: type[BaseModel] | None = None
    body: type[BaseModel] | None = None
    body_types: tuple[str, ...] = ("application/json",)
    public: bool = False
    sessions_only: bool = False
    events: tuple[tuple[str, type[BaseModel]], ...] = ()
    response_headers: dict[int, dict[str, str]] = field(default_factory=dict)
    errors: tuple[int, ...] = ()
    # Statuses whose body is not JSON but a file of this media type (a backup's tar).
    binary: dict[int, str] = field(default_factory=dict)
    links: tuple[Link, ...] = ()
    # A creating write that honours Idempotency-Key (``api.idempotency``).
    idempotent: bool = False
    # Where a 201 answer's resource lives, from its body: "/services/{id}" takes the
    # answer's ``id``, "{operation.id}" a nested field (``location_of``).
    location: str | None = None
    # Conditional on If-Match (a 412 when stale): the service's ETag is its generation.
    conditional: bool = False

    @property
    def url(self) -> str:
        return PREFIX + self.path

    def answers(self) -> dict[int, ResponseModels]:
        """Every status this operation can answer, with the model of its body.

        Its own ``responses`` and ``errors``, and the errors the server answers around the
        handler, from the same facts the server acts on: 400 and 403 for any request (the
        Host and Origin guards, a query parameter the operation does not know), 401 unless
        ``public`` (no valid token), 413 and 415 when it reads a ``body`` (too large, not
        JSON), 404 when its path has parameters (what they name may not be there). A status
        in ``responses`` keeps its own model (a 400 that is also a result).
        """
        statuses = [400, 403, *self.errors]
        if "{" in self.path:
            statuses.append(404)
        if self.idempotent:
            statuses += [409, 422]
        if self.conditional:
            statuses.append(412)
        if not self.public:
            statuses.append(401)
        if self.body is not None or self.body_types != ("application/json",):
            statuses += [413, 415]
        return {**dict.fromkeys(sorted(set(statuses)), ErrorResponse), **self.responses}


def operation_answers(done: int) -> dict[int, ResponseModels]:
    """What asking a service for an operation answers: ``done`` (200 or 201) with how it
    ended when it ends within the wait, else 202 while it runs."""
    return {done: OperationAnswer, 202: OperationAnswer}


def creating(
    path: str,
    handler: Handler,
    operation_id: str,
    summary: str,
    tag: str,
    *,
    responses: dict[int, ResponseModels],
    location: str,
    **more: Any,
) -> Operation:
    """A POST that makes what its answer's fields locate (``location_of``), safe to retry
    with an Idempotency-Key."""
    return Operation(
        "POST",
        path,
        handler,
        operation_id,
        summary,
        responses,
        tag,
        idempotent=True,
        location=location,
        **more,
    )


# A new service (create, clone, import, an archive restored): 201 with it as written.
creating_a_service = partial(creating, responses={201: ServiceWritten}, location="/services/{id}")
# An operation started on a service (a backup, a deploy), found at its own URL.
starting_an_operation = partial(
    creating,
    responses=operation_answers(201),
    location="/services/{service_id}/operations/{operation.id}",
)


def agent_of(request: web.Request) -> AgentContext:
    return request.app[AGENT]


def principal_of(request: web.Request) -> Principal:
    principal = request.get(PRINCIPAL)
    if not isinstance(principal, Principal):
        raise RuntimeError("no principal on an authenticated route")
    return principal


def answer(model: BaseModel, status: int = 200, *, drop_none: tuple[str, ...] = ()) -> web.Response:
    """A JSON response of ``model`` (which has already validated itself)."""
    body = model.model_dump(mode="json")
    for key in drop_none:
        if body.get(key) is None:
            body.pop(key, None)
    return web.json_response(body, status=status)


_LOCATION_FIELD = re.compile(r"\{([a-z_.]+)\}")


def location_of(template: str, body: Any) -> str | None:
    """``template`` with each ``{field}`` (dotted for nested ones) taken from ``body``;
    None when a field is missing (then no Location is sent rather than a wrong one)."""
    missing = False

    def value(match: re.Match[str]) -> str:
        nonlocal missing
        found: Any = body
        for part in match.group(1).split("."):
            found = found.get(part) if isinstance(found, dict) else None
        if found is None or isinstance(found, dict | list):
            missing = True
            return ""
        return quote(str(found), safe="")

    path = _LOCATION_FIELD.sub(value, template)
    return None if missing else PREFIX + path


def etag_of(generation: int) -> str:
    """A service's entity tag: its generation, which every spec change raises."""
    return f'"{generation}"'


def if_match_holds(header: str | None, generation: int) -> bool:
    """RFC 9110 If-Match: absent or ``*`` holds; else one of the listed tags must be the
    current one (weak tags never match: the comparison is strong)."""
    if header is None:
        return True
    tags = [tag.strip() for tag in header.split(",")]
    return "*" in tags or etag_of(generation) in tags
