"""The node-internal routes: what another node of the fleet asks this one about the
services it runs (their live status and journal) or asks it to do to them (start, stop,
restart: the unit is this host's), answered from this host alone.

They sit outside ``/api/pockestrator`` and outside the OpenAPI document: they are no
client's. They take only a node's signed call (``api.node_signing``), never a token or a
session, and no other route takes a node's signature. A refused call is answered ``403
NODE_CALL_REFUSED`` and logged with the reason and the caller's address (never a header's
value). The answers are those of the public routes, computed for this host.
"""

from __future__ import annotations

import json
import time

import structlog
from aiohttp import web

from pockestrator.api.context import AgentContext
from pockestrator.api.errors import ApiError
from pockestrator.api.inputs import validate_model
from pockestrator.api.log_routes import logs_of
from pockestrator.api.models.requests import ControlBody
from pockestrator.api.node_signing import CallRefused, ReplayGuard, read_fleet_secret, verify
from pockestrator.api.owner_calls import OWNER_CALLS, OwnerCalls, internal_path
from pockestrator.api.routing import STREAMS, Handler, agent_of, answer
from pockestrator.api.service_routes.checks import find_service
from pockestrator.api.service_routes.control import control_here
from pockestrator.api.service_routes.reads import status_here
from pockestrator.specs.errors import ErrorCode

log = structlog.get_logger("pockestrator.api.nodes")

FLEET_SECRET = web.AppKey("fleet_secret", bytes)
REPLAYS = web.AppKey("node_call_replays", ReplayGuard)


def _verified(request: web.Request, body: bytes = b"") -> str:
    """The calling node, or a 403 once its credential fails (``body``: what it sent)."""
    secret = request.app.get(FLEET_SECRET)
    agent = agent_of(request)
    try:
        return verify(
            secret,
            agent.config.node,
            request.method,
            request.raw_path,
            request.headers,
            time.time(),
            request.app[REPLAYS],
            body,
        )
    except CallRefused as exc:
        log.warning("node call refused", path=request.path, peer=request.remote, why=str(exc))
        raise ApiError(
            403, ErrorCode.NODE_CALL_REFUSED, f"Not a valid call from a node of this fleet: {exc}"
        ) from None


async def node_status(request: web.Request) -> web.StreamResponse:
    _verified(request)
    agent = agent_of(request)
    record = find_service(agent, request.match_info["name"])
    return answer(await status_here(agent, record))


async def node_logs(request: web.Request) -> web.StreamResponse:
    _verified(request)
    record = find_service(agent_of(request), request.match_info["name"])
    return await logs_of(request, record, here=True)


async def node_control(request: web.Request) -> web.StreamResponse:
    # Read before the check: the signature covers the body (bounded by client_max_size).
    raw = await request.read()
    caller = _verified(request, raw)
    record = find_service(agent_of(request), request.match_info["name"])
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    action = validate_model(ControlBody, body).action
    return await control_here(request, record, action, f"node {caller}")


def add_fleet_calls(app: web.Application, agent: AgentContext) -> set[web.AbstractRoute]:
    """Give ``app`` the calls to owning nodes (``OWNER_CALLS``, closed at cleanup) and the
    node-internal routes that answer them; the streaming routes are returned. An unusable
    ``fleet_secret_file`` raises ``FleetSecretUnusable``: the API does not start."""
    path = agent.config.fleet_secret_file
    secret = read_fleet_secret(path) if path is not None else None
    app[OWNER_CALLS] = OwnerCalls(agent, secret, app[STREAMS])

    async def close(app: web.Application) -> None:
        await app[OWNER_CALLS].close()

    app.on_cleanup.append(close)
    if secret is not None:
        app[FLEET_SECRET] = secret
    app[REPLAYS] = ReplayGuard()
    routes: list[tuple[str, str, Handler]] = [
        ("GET", "status", node_status),
        ("GET", "logs", node_logs),
        ("POST", "control", node_control),
    ]
    streaming: set[web.AbstractRoute] = set()
    for method, what, handler in routes:
        route = app.router.add_route(method, internal_path("{name}", what), handler)
        if what == "logs":
            streaming.add(route)
    return streaming
