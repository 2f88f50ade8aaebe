"""The API's middlewares, outermost first: disconnects, metrics, errors, guards, auth,
habits (``api.server`` says what each does and builds the application around them).

They read what ``build_app`` put on the application: the public and streaming routes, the
query parameters each route knows, and each route's ``Operation``.
"""

from __future__ import annotations

import asyncio
import json
import time

import structlog
from aiohttp import web

from pockestrator.accounts.store import SESSION_PREFIX, TOKEN_PREFIX
from pockestrator.api import idempotency
from pockestrator.api.auth import Principal, bearer_token
from pockestrator.api.context import AgentContext
from pockestrator.api.errors import ApiError, Problem, field_error, validation_failed
from pockestrator.api.guards import host_allowed, origin_allowed
from pockestrator.api.openapi import DOCUMENT_VERSION
from pockestrator.api.peers import judge_peer, peer_credentials
from pockestrator.api.routing import (
    AGENT,
    PREFIX,
    PRINCIPAL,
    Handler,
    Operation,
    location_of,
    principal_of,
)
from pockestrator.database import DatabaseFull
from pockestrator.specs.errors import ErrorCode

log = structlog.get_logger("pockestrator.api")

PUBLIC_ROUTES = web.AppKey("public_routes", set[web.AbstractRoute])
STREAMING_ROUTES = web.AppKey("streaming_routes", set[web.AbstractRoute])
SHIELDED: web.AppKey[set[asyncio.Task[web.StreamResponse]]] = web.AppKey("shielded")
QUERY_NAMES = web.AppKey("query_names", dict[web.AbstractRoute, frozenset[str]])
ROUTE_OPERATIONS = web.AppKey("route_operations", dict[web.AbstractRoute, Operation])
# Every answer says which version of the API contract it keeps; the CLI compares majors.
API_VERSION_HEADER = "Pockestrator-Api-Version"

_SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


def route_label(request: web.Request) -> str:
    """The route's template (``/api/pockestrator/services/{id}``), never the path asked
    for: a label per path would let any client grow the metrics without bound."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count each answer by route and code, and time it (outermost: the code sent)."""
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:  # a redirect raised past the error middleware
        status = exc.status
        raise
    except asyncio.CancelledError:  # the client went away (a log stream it closed)
        status = 499
        raise
    finally:
        metrics = request.app[AGENT].metrics
        route = route_label(request)
        metrics.api_requests.labels(request.method, route, str(status)).inc()
        metrics.api_seconds.labels(request.method, route).observe(time.perf_counter() - started)


def _http_error(exc: web.HTTPException) -> web.Response:
    headers = {}
    if exc.status == 404:
        code, message = ErrorCode.NOT_FOUND, "No such endpoint"
    elif exc.status == 405:
        allowed = exc.headers.get("Allow", "")
        code, message = (
            ErrorCode.METHOD_NOT_ALLOWED,
            f"Method not allowed; use {allowed or 'another'}",
        )
        headers["Allow"] = allowed
    elif exc.status == 413:
        code, message = ErrorCode.PAYLOAD_TOO_LARGE, "The body is too large"
    else:
        code, message = ErrorCode.HTTP_ERROR, exc.reason
    return ApiError(exc.status, code, message, headers=headers).response()


def _retrieve(task: asyncio.Task[web.StreamResponse]) -> None:
    if not task.cancelled():
        task.exception()  # a shielded handler whose client went: nobody else will look


@web.middleware
async def disconnect_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A stream ends with its client; any other handler runs to its end regardless, as
    though the server never cancelled handlers (it does, for the streams' sake)."""
    if request.match_info.route in request.app[STREAMING_ROUTES]:
        return await handler(request)
    task = asyncio.ensure_future(handler(request))
    running = request.app[SHIELDED]
    running.add(task)
    task.add_done_callback(running.discard)
    task.add_done_callback(_retrieve)
    return await asyncio.shield(task)


async def end_shielded(app: web.Application) -> None:
    """At cleanup, after the server's grace for requests in flight: cancel the handlers whose
    clients went away and that still run (a wait for a reconcile), and let them end."""
    shielded: set[asyncio.Task[web.StreamResponse]] = app[SHIELDED]
    running = list(shielded)
    for task in running:
        task.cancel()
    await asyncio.gather(*running, return_exceptions=True)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return exc.response()
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _http_error(exc)
    except asyncio.CancelledError:
        raise
    except DatabaseFull as exc:
        log.error("request refused: the database is full", path=request.path, error=str(exc))
        return ApiError(
            507,
            ErrorCode.DATABASE_FULL,
            f"{exc}; nothing was changed. Free space there and try again",
        ).response()
    except Exception:
        log.exception("request failed", method=request.method, path=request.path)
        return ApiError(
            500, ErrorCode.INTERNAL_ERROR, "Internal error; the agent's log has the details"
        ).response()


@web.middleware
async def guard_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    config = request.app[AGENT].config
    host = request.headers.get("Host")
    if not host_allowed(host, config.listen_host, config.allowed_hosts):
        raise field_error(
            400,
            ErrorCode.HOST_NOT_ALLOWED,
            "Host",
            "This Host is not served here; add it to allowed_hosts if it should be",
        )
    origin = request.headers.get("Origin")
    cross_site = request.headers.get("Sec-Fetch-Site") == "cross-site"
    if (origin is not None and not origin_allowed(origin, host)) or (
        cross_site and request.path.startswith(PREFIX)
    ):
        raise field_error(
            403, ErrorCode.ORIGIN_NOT_ALLOWED, "Origin", "Cross-origin requests are not accepted"
        )
    return await handler(request)


def _unauthorized(message: str, *, offered: bool) -> ApiError:
    challenge = 'Bearer realm="pockestrator"'
    if offered:
        challenge += ', error="invalid_token"'
    return field_error(
        401,
        ErrorCode.UNAUTHORIZED,
        "Authorization",
        message,
        summary="Unauthorized",
        headers={"WWW-Authenticate": challenge},
    )


def authenticate(agent: AgentContext, header: str | None) -> Principal:
    """The caller behind an Authorization header, or a 401 ``ApiError``."""
    token = bearer_token(header)
    if token is None:
        raise _unauthorized(
            "Send an API token as 'Authorization: Bearer <token>'", offered=header is not None
        )
    if token.startswith(SESSION_PREFIX):
        admin = agent.accounts.authenticate_session(token)
        if admin is not None:
            return Principal("session", admin.id, admin.email, token)
    elif token.startswith(TOKEN_PREFIX):
        record = agent.accounts.authenticate_token(token)
        if record is not None:
            return Principal("token", record.id, record.name, token)
    raise _unauthorized("The token is invalid, expired or revoked", offered=True)


def local_operator(request: web.Request, group: str) -> Principal | None:
    """The operator on the local socket behind ``request``; None when it came over TCP.
    A peer that is not one is refused here (403), whatever it asked for."""
    transport = request.transport
    peer = peer_credentials(transport.get_extra_info("socket") if transport else None)
    if peer is None:
        return None
    verdict = judge_peer(peer.uid, group)
    if not verdict.allowed:
        log.warning("local socket peer refused", uid=peer.uid, pid=peer.pid, why=verdict.reason)
        raise field_error(
            403,
            ErrorCode.PEER_NOT_ALLOWED,
            "peer",
            f"Refused on the local socket: {verdict.reason}; use a token over TCP, or ask "
            f"for membership of group {group!r}",
            summary="Forbidden",
        )
    return Principal("local", f"uid:{peer.uid}", f"{verdict.name} (local socket)", "")


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    match = request.match_info
    local = local_operator(request, request.app[AGENT].config.api_socket_group)
    needs_token = (
        match.http_exception is None
        and request.path.startswith(PREFIX)
        and match.route not in request.app[PUBLIC_ROUTES]
    )
    if local is not None:
        request[PRINCIPAL] = local
    elif needs_token:
        request[PRINCIPAL] = authenticate(request.app[AGENT], request.headers.get("Authorization"))
    known = request.app[QUERY_NAMES].get(match.route)
    if known is not None:
        unknown = sorted(set(request.query) - known)
        if unknown:
            raise validation_failed(
                [
                    Problem(name[:100], "unknown query parameter", ErrorCode.UNKNOWN_FIELD)
                    for name in unknown[:20]
                ]
            )
    return await handler(request)


def _with_location(operation: Operation, response: web.StreamResponse) -> web.StreamResponse:
    if (
        operation.location is None
        or response.status != 201
        or not isinstance(response, web.Response)
        or "Location" in response.headers
    ):
        return response
    body = response.body
    try:
        data = json.loads(body) if isinstance(body, bytes | bytearray) else None
    except ValueError:
        data = None
    where = location_of(operation.location, data)
    if where is not None:
        response.headers["Location"] = where
    return response


async def _idempotent(
    request: web.Request, operation: Operation, key: str, handler: Handler
) -> web.StreamResponse:
    agent = request.app[AGENT]
    principal = principal_of(request)
    call = idempotency.Call(
        agent.store, agent.config.idempotency_window, key, f"{principal.kind}:{principal.id}"
    )
    call.lookup = idempotency.lookup_of(call.caller, request.method, request.path, key)
    if operation.body_types == ("application/json",):
        limit = agent.config.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            return await handler(request)  # the handler answers 413
        raw = await request.read() if request.can_read_body else b""
        replayed = call.claim(
            idempotency.body_hash(request.query_string, request.content_type, raw)
        )
        if replayed is not None:
            return replayed
    else:
        # An upload is streamed, not held: its handler claims once it has the body's hash.
        request[idempotency.CALL] = call
    try:
        response = _with_location(operation, await handler(request))
    except BaseException:
        call.settle(None)
        raise
    call.settle(response)
    return response


@web.middleware
async def habits_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """``Location`` on 201, and ``Idempotency-Key`` on the operations declared idempotent."""
    operation = request.app[ROUTE_OPERATIONS].get(request.match_info.route)
    if operation is None:
        return await handler(request)
    if operation.idempotent:
        key = idempotency.check_key(request.headers.get(idempotency.HEADER))
        if key is not None:
            return await _idempotent(request, operation, key, handler)
    return _with_location(operation, await handler(request))


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    for name, value in _SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if request.path.startswith(PREFIX):
        response.headers.setdefault("Cache-Control", "no-store")
        response.headers.setdefault(API_VERSION_HEADER, DOCUMENT_VERSION)
