"""The node-internal routes: what another node of the fleet asks this one about the
services it runs (their live status and journal) or asks it to do to them (start, stop,
restart: the unit is this host's), answered from this host alone.

They sit outside ``/api/pockestrator`` and outside the OpenAPI document: they are no
client's. They take only a node's signed call (``api.node_signing``), never a token or a
session, and no other route takes a node's signature. A refused call is answered ``403
NODE_CALL_REFUSED`` and logged with the reason and the caller's address (never a header's
value). A call's headers are checked (well-formed, fresh) before its body is read, the
body only up to ``BODY_LIMIT``, and the caller's registration only once the signature
holds (an unknown name and a forgery get the same answer). The answers are those of the
public routes, computed for this host, and signed for the call that asked
(``sign_answer``).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import structlog
from aiohttp import web

from pockestrator.api.context import AgentContext
from pockestrator.api.errors import ApiError
from pockestrator.api.inputs import validate_model
from pockestrator.api.log_routes import logs_of
from pockestrator.api.models.requests import ControlBody
from pockestrator.api.node_signing import (
    ANSWER_SIGNATURE_HEADER,
    NOT_THIS_CALL,
    STREAM,
    CallRefused,
    Credential,
    FrameChain,
    ReplayGuard,
    answer_headers,
    body_digest,
    check_signature,
    credential_of,
    read_fleet_secret,
    secret_to_check,
)
from pockestrator.api.owner_calls import (
    FRAME_CHAIN,
    OWNER_CALLS,
    OwnerCalls,
    internal_path,
    read_bounded,
)
from pockestrator.api.routing import STREAMS, Handler, agent_of, answer
from pockestrator.api.service_routes.checks import find_service
from pockestrator.api.service_routes.control import control_here
from pockestrator.api.service_routes.reads import status_here
from pockestrator.specs.errors import ErrorCode

log = structlog.get_logger("pockestrator.api.nodes")

FLEET_SECRET = web.AppKey("fleet_secret", bytes)
REPLAYS = web.AppKey("node_call_replays", ReplayGuard)


# A control's body is {"action": ...}: a few dozen bytes.
BODY_LIMIT = 4096
# The verified call a request carries, for its answer's signature (typed storage where
# aiohttp has it, as ``routing.PRINCIPAL``).
_CALL: Any = (
    web.RequestKey("node_call", Credential) if hasattr(web, "RequestKey") else "pockestrator.call"
)


def _refused(request: web.Request, exc: CallRefused) -> ApiError:
    log.warning("node call refused", path=request.path, peer=request.remote, why=str(exc))
    return ApiError(
        403, ErrorCode.NODE_CALL_REFUSED, f"Not a valid call from a node of this fleet: {exc}"
    )


async def _verified(request: web.Request) -> tuple[str, bytes]:
    """The calling node and the body it sent, or a 403 once its credential fails. The
    headers are judged first (nothing of the body is read for a call they refuse), then
    the body, at most ``BODY_LIMIT`` bytes (413 past it), against the signature, and only
    a call whose signature holds is looked up in the store: a node name that is not
    registered is refused exactly as a forged signature is (same status, code and text;
    no store query for either), so that nobody without the secret learns which names
    are the fleet's."""
    agent = agent_of(request)
    now = time.time()
    try:
        secret = secret_to_check(request.app.get(FLEET_SECRET))
        credential = credential_of(request.headers, now)
    except CallRefused as exc:
        raise _refused(request, exc) from None
    body = b""
    if request.can_read_body:
        too_long = (request.content_length or 0) > BODY_LIMIT
        read = None if too_long else await read_bounded(request.content, BODY_LIMIT)
        if read is None:
            raise ApiError(
                413,
                ErrorCode.PAYLOAD_TOO_LARGE,
                f"A node call's body is at most {BODY_LIMIT} bytes",
            )
        body = read
    try:
        check_signature(
            secret,
            agent.config.node,
            request.method,
            request.raw_path,
            credential,
            now,
            request.app[REPLAYS],
            body,
        )
        if await asyncio.to_thread(agent.store.get_node, credential.caller) is None:
            # Signed with the fleet's secret by a name the fleet has not (a node deleted
            # from it): the log says so; the answer says what a forgery's says.
            log.warning("node call from an unregistered node", caller=credential.caller)
            raise CallRefused(NOT_THIS_CALL)
    except CallRefused as exc:
        raise _refused(request, exc) from None
    request[_CALL] = credential
    return credential.caller, body


async def sign_answer(request: web.Request, response: web.StreamResponse) -> None:
    """Sign the answer to a verified node call, as its headers leave: a body's hash, or
    ``STREAM`` for a stream (whose body is not known yet)."""
    credential: Credential | None = request.get(_CALL)
    secret = request.app.get(FLEET_SECRET)
    if credential is None or secret is None:
        return
    if isinstance(response, web.Response):
        body = response.body
        if not isinstance(body, bytes | bytearray):
            return  # not an answer of these routes: left unsigned, which the caller refuses
        digest = body_digest(bytes(body))
    else:
        digest = STREAM
    this_node = agent_of(request).config.node
    headers = answer_headers(
        secret, response.status, credential.nonce, this_node, credential.caller, time.time(), digest
    )
    response.headers.update(headers)
    if digest == STREAM:  # each frame signed, chained from the head (``log_routes``)
        request[FRAME_CHAIN] = FrameChain(
            secret, credential.nonce, this_node, credential.caller, headers[ANSWER_SIGNATURE_HEADER]
        )


async def node_status(request: web.Request) -> web.StreamResponse:
    await _verified(request)
    agent = agent_of(request)
    record = find_service(agent, request.match_info["name"])
    return answer(await status_here(agent, record))


async def node_logs(request: web.Request) -> web.StreamResponse:
    await _verified(request)
    record = find_service(agent_of(request), request.match_info["name"])
    return await logs_of(request, record, here=True)


async def node_control(request: web.Request) -> web.StreamResponse:
    caller, raw = await _verified(request)
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
    app.on_response_prepare.append(sign_answer)
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
