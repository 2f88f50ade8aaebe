"""Asking the owning node: a service's live status and journal come from the host that runs
it, and its unit is acted on there, over a signed node-to-node call
(``api.node_signing``) to its agent's node-internal routes (``api.node_routes``).

Any node's API answers ``/services/{id}/status``, ``/logs`` (``follow`` too) and
``/control``; for a service of another node it relays that node's answer. When the owner
cannot be asked (no fleet secret here, the node is unknown or does not answer, or it
refuses the call, or its answer is not signed for this call: ``check_answer``) the answer
is ``502 NODE_UNREACHABLE`` naming the node and why: never this host's absent unit. A
node whose address is plain http:// to another host is not called unless
``fleet_plain_http`` says so; https:// is verified against ``fleet_ca_file`` or the system's
trust store. A log stream relayed takes a slot of this node's ``max_log_streams``
as a local one does, and this agent's shutdown ends it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import aiohttp
import structlog
from aiohttp import web
from pydantic import ValidationError
from yarl import URL

from pockestrator.api.context import AgentContext
from pockestrator.api.errors import ApiError
from pockestrator.api.models.logs import LogsResponse
from pockestrator.api.models.services import ControlResult, RuntimeStatus, ServiceStatusResponse
from pockestrator.api.node_signing import (
    ANSWER_SIGNATURE_HEADER,
    NONCE_HEADER,
    STREAM,
    CallRefused,
    FrameChain,
    body_digest,
    check_answer,
    signed_headers,
)
from pockestrator.api.routing import answer
from pockestrator.api.streams import LogStreams
from pockestrator.api.views import runtime_view
from pockestrator.clock import utc_now
from pockestrator.config.node import is_plain_remote
from pockestrator.specs.errors import ErrorCode
from pockestrator.specs.store import ServiceRecord, ServiceStatus

log = structlog.get_logger("pockestrator.api.owners")

INTERNAL_PREFIX = "/node-internal/v1"
# A node answers status in well under a second; a stream sends a keepalive every 15 s.
CALL_TIMEOUT = aiohttp.ClientTimeout(total=15, sock_connect=5)
STREAM_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=45)
ANSWER_LIMIT = 4 * 1024 * 1024
# One frame of a relayed log stream: a journal entry as an SSE event is far smaller.
FRAME_LIMIT = 1024 * 1024
# A control answers after the owner's reconcile (a minute at most), then a margin.
CONTROL_TIMEOUT = aiohttp.ClientTimeout(total=90, sock_connect=5)
# The owner's own answers about the service, passed on rather than called unreachable.
_OWNERS_REFUSALS = ("CONTROL_FAILED", "SERVICE_NOT_FOUND")
# What of the owner's log stream answer is passed on.
_STREAM_HEADERS = ("Content-Type", "Cache-Control", "X-Accel-Buffering")


def internal_path(name: str, what: str) -> str:
    """The node-internal route of service ``name``'s ``what`` (status, logs)."""
    return f"{INTERNAL_PREFIX}/services/{name}/{what}"


def unreachable(node: str, why: str) -> ApiError:
    return ApiError(
        502,
        ErrorCode.NODE_UNREACHABLE,
        f"The service runs on node {node!r}, which could not be asked: {why}",
    )


class FleetCaUnusable(Exception):
    """``fleet_ca_file`` cannot be read as PEM certificates: the API does not start."""


async def read_bounded(content: aiohttp.StreamReader, limit: int) -> bytes | None:
    """All of ``content``, or None once it passes ``limit`` bytes (the rest left unread)."""
    read = bytearray()
    while chunk := await content.read(limit + 1 - len(read)):
        read += chunk
        if len(read) > limit:
            return None
    return bytes(read)


def _trust(agent: AgentContext) -> ssl.SSLContext:
    """What an owner's https:// certificate is verified against."""
    path = agent.config.fleet_ca_file
    try:
        return ssl.create_default_context(cafile=str(path) if path is not None else None)
    except (OSError, ssl.SSLError) as exc:
        raise FleetCaUnusable(f"fleet_ca_file: {path} holds no usable CA: {exc}") from None


@dataclass(frozen=True)
class _Call:
    """A call made: the owner's answer, and what its signature must name."""

    response: aiohttp.ClientResponse
    node: str
    nonce: str
    secret: bytes


class _Relay:
    """A relayed stream as ``LogStreams`` sees a follower: shutdown stops it."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response

    def stop(self) -> None:
        self._response.close()


def unknown_runtime(reason: str) -> RuntimeStatus:
    """The runtime status of a service whose owner cannot say: ``unknown``, and why."""
    return RuntimeStatus(
        is_running=False,
        systemd_status="unknown",
        sub_state=None,
        caddy_status="unknown",
        config_match=None,
        last_checked=utc_now(),
        error_message=reason,
    )


class OwnerCalls:
    """Signed calls from this node's API to the agents of the nodes that own services."""

    def __init__(self, agent: AgentContext, secret: bytes | None, streams: LogStreams) -> None:
        self._agent = agent
        self._secret = secret
        self._streams = streams
        self._trust = _trust(agent)
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def _open(
        self,
        record: ServiceRecord,
        what: str,
        query: dict[str, str],
        headers: dict[str, str],
        timeout: aiohttp.ClientTimeout,
        body: bytes | None = None,
    ) -> _Call:
        node, secret = record.node, self._secret
        if secret is None:
            raise unreachable(node, "this node has no fleet_secret_file to sign the call with")
        owner = await asyncio.to_thread(self._agent.store.get_node, node)
        if owner is None:
            raise unreachable(node, "no such node is registered")
        if is_plain_remote(owner.api_address) and not self._agent.config.fleet_plain_http:
            raise unreachable(
                node,
                f"its address {owner.api_address} is plain http:// to another host "
                "(fleet_plain_http is off here)",
            )
        target = internal_path(record.name, what)
        if query:
            target += "?" + urlencode(query)
        this_node = self._agent.config.node
        method = "GET" if body is None else "POST"
        signed = signed_headers(secret, method, target, this_node, node, time.time(), body or b"")
        if body is not None:
            headers = {**headers, "Content-Type": "application/json"}
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self._trust), auto_decompress=False
            )
        url = URL(owner.api_address + target, encoded=True)
        try:
            response = await self._session.request(
                method,
                url,
                data=body,
                headers={**headers, **signed},
                timeout=timeout,
                allow_redirects=False,
            )
        except (aiohttp.ClientError, TimeoutError) as exc:
            lost = " (its lease has ended)" if owner.state == "lost" else ""
            raise unreachable(node, f"{type(exc).__name__} at {owner.api_address}{lost}") from None
        return _Call(response, node, signed[NONCE_HEADER], secret)

    def _check(self, call: _Call, digest: str) -> None:
        """502 unless the answer is the owner's, to this call (``check_answer``)."""
        response = call.response
        try:
            check_answer(
                call.secret,
                response.headers,
                response.status,
                call.nonce,
                call.node,
                self._agent.config.node,
                time.time(),
                digest,
            )
        except CallRefused as exc:
            raise unreachable(call.node, str(exc)) from None

    async def _json(
        self,
        record: ServiceRecord,
        what: str,
        query: dict[str, str],
        body: bytes | None = None,
        timeout: aiohttp.ClientTimeout = CALL_TIMEOUT,
    ) -> tuple[int, bytes]:
        call = await self._open(record, what, query, {}, timeout, body)
        async with call.response as response:
            try:
                answered = await read_bounded(response.content, ANSWER_LIMIT)
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise unreachable(
                    record.node, f"its answer broke off ({type(exc).__name__})"
                ) from None
            if answered is None:
                raise unreachable(record.node, f"its answer is over {ANSWER_LIMIT} bytes")
            self._check(call, body_digest(answered))
            return response.status, answered

    async def status_of(self, record: ServiceRecord) -> ServiceStatusResponse:
        """The owner's ``/status`` of ``record``, checked against the model."""
        code, body = await self._json(record, "status", {})
        if code != 200:
            raise unreachable(record.node, f"it answered {code}")
        try:
            return ServiceStatusResponse.model_validate_json(body)
        except ValidationError:
            raise unreachable(record.node, "its answer is not a status") from None

    async def status(self, record: ServiceRecord) -> web.Response:
        return answer(await self.status_of(record))

    async def runtime_status(
        self, record: ServiceRecord, status: ServiceStatus | None
    ) -> RuntimeStatus:
        """A service's runtime status as its answers carry it: this host's view of its
        unit and site when it runs here, else its owner's (``runtime_of``)."""
        if self._agent.store.runs_here(record.node):
            return runtime_view(await self._agent.host.runtime(record.name, status), status)
        return await self.runtime_of(record)

    async def runtime_of(self, record: ServiceRecord) -> RuntimeStatus:
        """The owner's runtime status of ``record`` (a service's answer carries it); when
        the owner cannot be asked, ``unknown`` with the reason, never this host's."""
        try:
            live = await self.status_of(record)
        except ApiError as exc:
            return unknown_runtime(str(exc))
        return RuntimeStatus.model_validate(
            live.model_dump(include=set(RuntimeStatus.model_fields))
        )

    async def unit_and_site(self, record: ServiceRecord) -> tuple[str, str]:
        """The owner's unit and site states of ``record``; ``unknown`` when it cannot say."""
        try:
            live = await self.status_of(record)
        except ApiError:
            return "unknown", "unknown"
        return live.systemd_status, live.caddy_status

    async def logs(self, record: ServiceRecord, query: dict[str, str]) -> web.Response:
        """The owner's journal entries of ``record``; its journal's own errors are passed
        on as they are (they are about the journal, not the call)."""
        code, body = await self._json(record, "logs", query)
        if code in (502, 503) and b"JOURNAL_UNAVAILABLE" in body:
            return web.Response(body=body, status=code, content_type="application/json")
        if code != 200:
            raise unreachable(record.node, f"it answered {code}")
        try:
            return answer(LogsResponse.model_validate_json(body))
        except ValidationError:
            raise unreachable(record.node, "its answer is not a log page") from None

    async def control(self, record: ServiceRecord, action: str) -> web.Response:
        """The owner acts (start, stop, restart) and answers as its own API would: after
        its reconcile, with its unit's state. Its refusals (404, 502 ``CONTROL_FAILED``)
        are passed on as they are."""
        body = json.dumps({"action": action}).encode()
        code, answered = await self._json(record, "control", {}, body, CONTROL_TIMEOUT)
        if code in (404, 502) and any(c.encode() in answered for c in _OWNERS_REFUSALS):
            return web.Response(body=answered, status=code, content_type="application/json")
        if code not in (200, 202):
            raise unreachable(record.node, f"it answered {code}")
        try:
            return answer(ControlResult.model_validate_json(answered), code)
        except ValidationError:
            raise unreachable(record.node, "its answer is not a control result") from None

    async def follow(
        self,
        request: web.Request,
        record: ServiceRecord,
        query: dict[str, str],
        last_event_id: str | None,
    ) -> web.StreamResponse:
        """The owner's log stream of ``record``, passed on byte for byte."""
        headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
        with self._streams.slot() as slot:
            call = await self._open(record, "logs", query, headers, STREAM_TIMEOUT)
            async with call.response as upstream:
                if upstream.status != 200:
                    raise unreachable(record.node, f"it answered {upstream.status}")
                self._check(call, STREAM)
                chain = FrameChain(
                    call.secret,
                    call.nonce,
                    call.node,
                    self._agent.config.node,
                    upstream.headers[ANSWER_SIGNATURE_HEADER],
                )
                slot.attach(_Relay(upstream))
                return await _pass_on(request, upstream, chain, record.node)


OWNER_CALLS = web.AppKey("owner_calls", OwnerCalls)


async def _pass_on(
    request: web.Request, upstream: aiohttp.ClientResponse, chain: FrameChain, node: str
) -> web.StreamResponse:
    """The owner's stream, each frame passed on once its signature holds (``FrameChain``),
    without its signature; the stream ends at the first frame that does not hold."""
    response = web.StreamResponse(
        headers={k: upstream.headers[k] for k in _STREAM_HEADERS if k in upstream.headers}
    )
    await response.prepare(request)
    # Past prepare() the stream just ends: when the client goes, the owner's stream ends,
    # a frame fails its signature, or this agent stops (the relay is closed).
    with contextlib.suppress(aiohttp.ClientError, ConnectionError, EOFError, TimeoutError):
        async for chunk in upstream.content.iter_any():
            passed = chain.check(chunk, FRAME_LIMIT)
            if passed:
                await response.write(passed)
            if chain.broken is not None:
                log.warning("relayed log stream ended", node=node, why=chain.broken)
                break
    return response


# A request key: the answering node's chain of a node call's stream (``api.node_routes``
# makes it when the answer's head is signed; ``api.log_routes`` signs each frame with it).
FRAME_CHAIN: Any = (
    web.RequestKey("node_frame_chain", FrameChain)
    if hasattr(web, "RequestKey")
    else "pockestrator.frame_chain"
)
