"""The aiohttp application: routes from the table, middlewares, start-up and shutdown.

Every request passes, outermost first:
0. disconnects: the server cancels a handler whose client has gone (``handler_cancellation``),
   which ends a log stream at once (and its journalctl); every other handler is shielded
   from that and finishes what it started, a spec written or a restart asked for;
0b. metrics: each answer counted by route and code, and timed (a stream its client ended
   is counted under 499, as proxies do, not as an error of ours);
1. errors: ``ApiError`` and aiohttp's own 404/405/413 become the JSON error body; anything
   unexpected is logged here and answered 500 without a trace (no input should get there);
2. guards: the Host check (DNS rebinding) and the Origin check (no CORS; see ``api.guards``);
3. auth: every operation under ``/api/pockestrator`` but the public ones needs a bearer
   token (an API token or a dashboard session); 401 with a JSON body otherwise. On the
   local socket the kernel's word on the peer replaces the token: root and members of
   ``api_socket_group`` are operators, anyone else is refused (403, ``api.peers``). Then a
   query parameter the operation does not know is refused (400 ``UNKNOWN_FIELD``), as an
   unknown body field is: a misspelt ``?limt=5`` should not silently mean the default.
4. habits: an operation's 201 gets its ``Location``, and a creating write sent with
   ``Idempotency-Key`` answers a retry with its first answer (``api.idempotency``).

``start_api`` is what the agent calls (``agent.daemon.api_factory``): it serves on TCP and,
when ``api_socket`` is set, on that Unix socket too (mode 0660, group ``api_socket_group``),
and returns the runner,
whose ``cleanup()`` stops listening, ends the log streams and lets requests in flight
finish (``SHUTDOWN_TIMEOUT`` at most). The dashboard's files, when present, are served at
``/`` from ``api/static/``.
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import json
import os
import socket
import stat
import time
from collections.abc import Sequence
from pathlib import Path

import structlog
from aiohttp import web

from pockestrator.accounts.store import SESSION_PREFIX, TOKEN_PREFIX
from pockestrator.api import (
    access_routes,
    backup_routes,
    event_routes,
    fleet_routes,
    history_routes,
    idempotency,
    log_routes,
    metrics_routes,
    release_routes,
    seed_routes,
    service_routes,
    system_routes,
)
from pockestrator.api.auth import PasswordChecks, Principal, bearer_token
from pockestrator.api.context import AgentContext
from pockestrator.api.errors import ApiError, Problem, field_error, validation_failed
from pockestrator.api.event_feed import EventFeed
from pockestrator.api.guards import host_allowed, origin_allowed
from pockestrator.api.metrics import ScrapeMemory
from pockestrator.api.metrics_routes import SCRAPE_MEMORY, metrics_app
from pockestrator.api.node_routes import add_fleet_calls
from pockestrator.api.openapi import DOCUMENT_VERSION, build_openapi
from pockestrator.api.peers import judge_peer, peer_credentials
from pockestrator.api.routing import (
    AGENT,
    JOURNAL,
    PASSWORDS,
    PREFIX,
    PRINCIPAL,
    STREAMS,
    WATCHES,
    Handler,
    Operation,
    location_of,
    principal_of,
)
from pockestrator.api.streams import LogStreams, WatchSlots
from pockestrator.api.system_routes import OPENAPI, liveness, openapi_document
from pockestrator.config import split_listen
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
ROUTE_OPERATIONS = web.AppKey("route_operations", dict[web.AbstractRoute, Operation])
# Every answer says which version of the API contract it keeps; the CLI compares majors.
API_VERSION_HEADER = "Pockestrator-Api-Version"
# The Unix sockets served, with their (device, inode) when bound: removed at cleanup.
SOCKETS = web.AppKey("sockets", list[tuple[Path, tuple[int, int]]])

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
        *metrics_routes.OPERATIONS,
        *history_routes.OPERATIONS,
        *event_routes.OPERATIONS,
        *fleet_routes.OPERATIONS,
    ]


# -- middlewares -----------------------------------------------------------------------


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


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    for name, value in _SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if request.path.startswith(PREFIX):
        response.headers.setdefault("Cache-Control", "no-store")
        response.headers.setdefault(API_VERSION_HEADER, DOCUMENT_VERSION)


# -- the dashboard hook ----------------------------------------------------------------


async def dashboard(request: web.Request) -> web.StreamResponse:
    """``api/static/index.html`` when the dashboard is installed."""
    index = STATIC_DIR / "index.html"
    if not index.is_file():
        raise ApiError(404, ErrorCode.NOT_FOUND, "The dashboard is not installed")
    return web.FileResponse(index, headers={"Cache-Control": "no-cache"})


# -- the application -------------------------------------------------------------------


async def _end_streams(app: web.Application) -> None:
    """On shutdown: end every log stream and watch now (its handler then returns) rather
    than wait."""
    app[STREAMS].stop_all()
    app[event_routes.EVENT_FEED].close()
    app[WATCHES].stop_all()


def build_app(
    agent: AgentContext, operations: Sequence[Operation] | None = None
) -> web.Application:
    config = agent.config
    app = web.Application(
        middlewares=[
            disconnect_middleware,
            metrics_middleware,
            error_middleware,
            guard_middleware,
            auth_middleware,
            habits_middleware,
        ],
        client_max_size=config.max_body_bytes,
    )
    operations = list(operations if operations is not None else all_operations())
    app[AGENT] = agent
    app[PASSWORDS] = PasswordChecks()
    app[JOURNAL] = JournalReader(config.journal_dir, agent.host.journal_scope)
    app[STREAMS] = LogStreams(config.max_log_streams)
    app[SCRAPE_MEMORY] = ScrapeMemory()
    app[event_routes.EVENT_FEED] = EventFeed(config.max_log_streams)
    app[event_routes.EVENT_FEED].attach(agent.store)
    app[WATCHES] = WatchSlots(config.max_watches)
    app[OPENAPI] = build_openapi(operations)
    public: set[web.AbstractRoute] = set()
    streaming: set[web.AbstractRoute] = set()
    query_names: dict[web.AbstractRoute, frozenset[str]] = {}
    route_operations: dict[web.AbstractRoute, Operation] = {}
    for operation in operations:
        route = app.router.add_route(operation.method, operation.url, operation.handler)
        route_operations[route] = operation
        if operation.public:
            public.add(route)
        if operation.events:
            streaming.add(route)
        query = operation.query
        query_names[route] = frozenset(query.model_fields) if query is not None else frozenset()
    public.add(app.router.add_route("GET", PREFIX + "/openapi.json", openapi_document))
    app.router.add_route("GET", "/healthz", liveness)
    streaming |= add_fleet_calls(app, agent)  # node-to-node calls, made and answered
    app.router.add_route("GET", "/", dashboard)
    if STATIC_DIR.is_dir():
        app.router.add_static("/static/", STATIC_DIR, follow_symlinks=False)
    app[PUBLIC_ROUTES] = public
    app[STREAMING_ROUTES] = streaming
    app[SHIELDED] = set()
    app[QUERY_NAMES] = query_names
    app[ROUTE_OPERATIONS] = route_operations
    app.on_response_prepare.append(_security_headers)
    app.on_shutdown.append(_end_streams)
    app[SOCKETS] = []
    app.on_cleanup.append(_end_shielded)
    app.on_cleanup.append(_remove_sockets)
    return app


async def start_api(agent: AgentContext) -> web.AppRunner:
    """Serve the API on ``listen_host:listen_port``, and ``/metrics`` alone on
    ``metrics_listen`` when set; the caller ``cleanup()``s the runner, which stops both."""
    config = agent.config
    app = build_app(agent)
    extra: list[web.AppRunner] = []

    async def stop_metrics(_app: web.Application) -> None:
        for other in extra:
            await other.cleanup()

    app.on_cleanup.append(stop_metrics)
    runner = web.AppRunner(
        app,
        shutdown_timeout=SHUTDOWN_TIMEOUT,
        access_log=None,
        handler_cancellation=True,
    )
    await runner.setup()
    try:
        await web.TCPSite(runner, config.listen_host, config.listen_port).start()
        log.info(
            "api listening", url=f"http://{_url_host(config.listen_host)}:{config.listen_port}"
        )
        if config.api_socket is not None:
            await _start_socket(runner, config.api_socket, config.api_socket_group)
        if config.metrics_listen is not None:
            host, port = split_listen(config.metrics_listen)
            metrics_runner = web.AppRunner(metrics_app(agent), access_log=None)
            extra.append(metrics_runner)
            await metrics_runner.setup()
            await web.TCPSite(metrics_runner, host, port).start()
            log.info("metrics listening", url=f"http://{_url_host(host)}:{port}/metrics")
    except BaseException:
        await runner.cleanup()
        raise
    return runner


class SocketInUse(OSError):
    """Another process answers on the socket's path (a second agent)."""


async def _start_socket(runner: web.AppRunner, path: Path, group: str) -> None:
    """Listen on ``path``: a stale socket file of an earlier run is replaced, a live one is
    an error. The socket is born with the umask's mode (no write bit for others, so none
    can connect) and then opened to ``group`` (0660); without that group, root only."""
    path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        if not stat.S_ISSOCK(path.lstat().st_mode):
            raise SocketInUse(f"{path} exists and is not a socket; move it away")
        if await asyncio.to_thread(_answers, path):
            raise SocketInUse(f"another process listens on {path}")
        path.unlink()
    site = web.UnixSite(runner, str(path))
    await site.start()
    try:
        gid = grp.getgrnam(group).gr_gid
    except KeyError:
        gid = -1
        log.warning("api socket group missing: root only", group=group, socket=str(path))
    os.chown(path, -1, gid)
    path.chmod(0o660 if gid != -1 else 0o600)
    bound = path.stat()
    runner.app[SOCKETS].append((path, (bound.st_dev, bound.st_ino)))
    log.info("api listening", socket=str(path), group=group if gid != -1 else None)


async def _remove_sockets(app: web.Application) -> None:
    """At cleanup: remove the socket files, unless another agent has made its own since
    (a client then finds no socket rather than a dead one)."""
    for path, identity in app[SOCKETS]:
        with contextlib.suppress(FileNotFoundError):
            now = path.lstat()
            if (now.st_dev, now.st_ino) == identity:
                path.unlink()


def _answers(path: Path) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(str(path))
    except OSError:
        return False
    finally:
        probe.close()
    return True


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
