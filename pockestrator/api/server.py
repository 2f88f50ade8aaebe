"""The aiohttp application: routes from the table, middlewares, start-up and shutdown.

Every request passes, outermost first:
0. disconnects: the server cancels a handler whose client has gone (``handler_cancellation``),
   which ends a log stream at once (and its journalctl); every other handler is shielded
   from that and finishes what it started, a spec written or a restart asked for;
1. errors: ``ApiError`` and aiohttp's own 404/405/413 become the JSON error body; anything
   unexpected is logged here and answered 500 without a trace (no input should get there);
2. guards: the Host check (DNS rebinding) and the Origin check (no CORS; see ``api.guards``);
3. auth: every operation under ``/api/pockestrator`` but the public ones needs a bearer
   token (an API token or a dashboard session); 401 with a JSON body otherwise. Then a
   query parameter the operation does not know is refused (400 ``UNKNOWN_FIELD``), as an
   unknown body field is: a misspelt ``?limt=5`` should not silently mean the default.

``start_api`` is what the agent calls (``agent.daemon.api_factory``); it returns the runner,
whose ``cleanup()`` stops listening, ends the log streams and lets requests in flight
finish (``SHUTDOWN_TIMEOUT`` at most). The dashboard's files, when present, are served at
``/`` from ``api/static/``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import structlog
from aiohttp import web

from pockestrator.accounts.store import SESSION_PREFIX, TOKEN_PREFIX
from pockestrator.api import (
    access_routes,
    backup_routes,
    fleet_routes,
    log_routes,
    release_routes,
    seed_routes,
    service_routes,
    system_routes,
)
from pockestrator.api.auth import PasswordChecks, Principal, bearer_token
from pockestrator.api.context import AgentContext
from pockestrator.api.errors import ApiError, Problem, field_error, validation_failed
from pockestrator.api.guards import host_allowed, origin_allowed
from pockestrator.api.openapi import build_openapi
from pockestrator.api.routing import (
    AGENT,
    JOURNAL,
    PASSWORDS,
    PREFIX,
    PRINCIPAL,
    STREAMS,
    Handler,
    Operation,
)
from pockestrator.api.streams import LogStreams
from pockestrator.api.system_routes import OPENAPI, liveness, openapi_document
from pockestrator.database import DatabaseFull
from pockestrator.journal import JournalReader
from pockestrator.specs.errors import ErrorCode

log = structlog.get_logger("pockestrator.api")

STATIC_DIR = Path(__file__).resolve().parent / "static"
SHUTDOWN_TIMEOUT = 5.0
PUBLIC_ROUTES = web.AppKey("public_routes", set[web.AbstractRoute])
STREAMING_ROUTES = web.AppKey("streaming_routes", set[web.AbstractRoute])
SHIELDED: web.AppKey[set[asyncio.Task[web.StreamResponse]]] = web.AppKey("shielded")
QUERY_NAMES = web.AppKey("query_names", dict[web.AbstractRoute, frozenset[str]])

_SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


def all_operations() -> list[Operation]:
    return [
        *system_routes.OPERATIONS,
        *service_routes.OPERATIONS,
        *log_routes.OPERATIONS,
        *access_routes.OPERATIONS,
        *backup_routes.OPERATIONS,
        *seed_routes.OPERATIONS,
        *release_routes.OPERATIONS,
        *fleet_routes.OPERATIONS,
    ]


# -- middlewares -----------------------------------------------------------------------


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


async def _end_shielded(app: web.Application) -> None:
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


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    match = request.match_info
    needs_token = (
        match.http_exception is None
        and request.path.startswith(PREFIX)
        and match.route not in request.app[PUBLIC_ROUTES]
    )
    if needs_token:
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


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    for name, value in _SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if request.path.startswith(PREFIX):
        response.headers.setdefault("Cache-Control", "no-store")


# -- the dashboard hook ----------------------------------------------------------------


async def dashboard(request: web.Request) -> web.StreamResponse:
    """``api/static/index.html`` when the dashboard is installed."""
    index = STATIC_DIR / "index.html"
    if not index.is_file():
        raise ApiError(404, ErrorCode.NOT_FOUND, "The dashboard is not installed")
    return web.FileResponse(index, headers={"Cache-Control": "no-cache"})


# -- the application -------------------------------------------------------------------


async def _end_streams(app: web.Application) -> None:
    """On shutdown: end every log stream now (its handler then returns) rather than wait."""
    app[STREAMS].stop_all()


def build_app(
    agent: AgentContext, operations: Sequence[Operation] | None = None
) -> web.Application:
    config = agent.config
    app = web.Application(
        middlewares=[disconnect_middleware, error_middleware, guard_middleware, auth_middleware],
        client_max_size=config.max_body_bytes,
    )
    operations = list(operations if operations is not None else all_operations())
    app[AGENT] = agent
    app[PASSWORDS] = PasswordChecks()
    app[JOURNAL] = JournalReader(config.journal_dir, agent.host.journal_scope)
    app[STREAMS] = LogStreams(config.max_log_streams)
    app[OPENAPI] = build_openapi(operations)
    public: set[web.AbstractRoute] = set()
    streaming: set[web.AbstractRoute] = set()
    query_names: dict[web.AbstractRoute, frozenset[str]] = {}
    for operation in operations:
        route = app.router.add_route(operation.method, operation.url, operation.handler)
        if operation.public:
            public.add(route)
        if operation.events:
            streaming.add(route)
        query = operation.query
        query_names[route] = frozenset(query.model_fields) if query is not None else frozenset()
    public.add(app.router.add_route("GET", PREFIX + "/openapi.json", openapi_document))
    app.router.add_route("GET", "/healthz", liveness)
    app.router.add_route("GET", "/", dashboard)
    if STATIC_DIR.is_dir():
        app.router.add_static("/static/", STATIC_DIR, follow_symlinks=False)
    app[PUBLIC_ROUTES] = public
    app[STREAMING_ROUTES] = streaming
    app[SHIELDED] = set()
    app[QUERY_NAMES] = query_names
    app.on_response_prepare.append(_security_headers)
    app.on_shutdown.append(_end_streams)
    app.on_cleanup.append(_end_shielded)
    return app


async def start_api(agent: AgentContext) -> web.AppRunner:
    """Serve the API on ``listen_host:listen_port``; the caller ``cleanup()``s the runner."""
    config = agent.config
    runner = web.AppRunner(
        build_app(agent),
        shutdown_timeout=SHUTDOWN_TIMEOUT,
        access_log=None,
        handler_cancellation=True,
    )
    await runner.setup()
    site = web.TCPSite(runner, config.listen_host, config.listen_port)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    log.info("api listening", url=f"http://{_url_host(config.listen_host)}:{config.listen_port}")
    return runner


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
