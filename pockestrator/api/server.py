"""The aiohttp application: routes from the table, middlewares (``api.middlewares``),
start-up and shutdown.

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
import os
import socket
import stat
from collections.abc import Sequence
from pathlib import Path

import structlog
from aiohttp import web

from pockestrator.api import (
    access_routes,
    backup_routes,
    event_routes,
    fleet_routes,
    history_routes,
    log_routes,
    metrics_routes,
    move_routes,
    release_routes,
    seed_routes,
    service_routes,
    system_routes,
)
from pockestrator.api.auth import PasswordChecks
from pockestrator.api.context import AgentContext
from pockestrator.api.errors import ApiError
from pockestrator.api.event_feed import EventFeed
from pockestrator.api.metrics import ScrapeMemory
from pockestrator.api.metrics_routes import SCRAPE_MEMORY, metrics_app
from pockestrator.api.middlewares import (
    PUBLIC_ROUTES,
    QUERY_NAMES,
    ROUTE_OPERATIONS,
    SHIELDED,
    STREAMING_ROUTES,
    auth_middleware,
    disconnect_middleware,
    end_shielded,
    error_middleware,
    guard_middleware,
    habits_middleware,
    metrics_middleware,
    security_headers,
)
from pockestrator.api.node_routes import add_fleet_calls
from pockestrator.api.openapi import build_openapi
from pockestrator.api.routing import (
    AGENT,
    JOURNAL,
    PASSWORDS,
    PREFIX,
    STREAMS,
    WATCHES,
    Operation,
)
from pockestrator.api.streams import LogStreams, WatchSlots
from pockestrator.api.system_routes import OPENAPI, liveness, openapi_document
from pockestrator.config import split_listen
from pockestrator.journal import JournalReader
from pockestrator.specs.errors import ErrorCode

log = structlog.get_logger("pockestrator.api")

STATIC_DIR = Path(__file__).resolve().parent / "static"
SHUTDOWN_TIMEOUT = 5.0
# The Unix sockets served, with their (device, inode) when bound: removed at cleanup.
SOCKETS = web.AppKey("sockets", list[tuple[Path, tuple[int, int]]])


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
        *move_routes.OPERATIONS,
        *fleet_routes.OPERATIONS,
    ]


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
    app[PASSWORDS] = PasswordChecks(hashing=config.password_hashing)
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
    app.on_response_prepare.append(security_headers)
    app.on_shutdown.append(_end_streams)
    app[SOCKETS] = []
    app.on_cleanup.append(end_shielded)
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
