"""The health probe against a hostile instance: an answer without end is not read to its end.

An instance controls what its port answers. The probe reads at most ``HEALTH_BODY_MAX``
bytes and drops the connection, so an endless body costs neither memory nor the probe's
whole timeout. Real servers on 127.0.0.1, real time.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web

from pockestrator.agent.health import HealthProber, process_age
from pockestrator.agent.health_probe import (
    HEALTH_BODY_MAX,
    ProbeConnections,
    answer_verdict,
    probe,
)
from pockestrator.specs.store import ServiceStatus, Store


async def endless(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(status=200)
    await response.prepare(request)
    chunk = b"x" * 65536
    while True:  # until the client goes away
        await response.write(chunk)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def sized(size: int) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=b"{" + b" " * (size - 2) + b"}", content_type="application/json")

    return handler


async def serve(handler: Handler) -> tuple[web.AppRunner, int]:
    app = web.Application()
    app.router.add_get("/api/health", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]


@pytest.mark.asyncio(loop_scope="function")
async def test_an_endless_answer_is_unhealthy_at_once_not_read_for_the_whole_timeout() -> None:
    runner, port = await serve(endless)
    try:
        started = time.monotonic()
        healthy = await probe(port, timeout=10.0)
        took = time.monotonic() - started
    finally:
        await runner.cleanup()
    assert healthy is False
    assert took < 2.0  # the old probe read until its 10 s timeout


@pytest.mark.parametrize(
    ("size", "healthy"), [(60, True), (HEALTH_BODY_MAX, True), (HEALTH_BODY_MAX + 1, False)]
)
@pytest.mark.asyncio(loop_scope="function")
async def test_an_answer_longer_than_the_bound_is_not_healthy(size: int, healthy: bool) -> None:
    runner, port = await serve(sized(size))
    try:
        assert await probe(port, timeout=5.0) is healthy
        assert await probe(port, timeout=5.0) is healthy  # and again, on a new connection
    finally:
        await runner.cleanup()


def test_a_process_age_is_read_from_proc_and_a_gone_one_has_none() -> None:
    assert (age := process_age(os.getpid())) is not None and age > 0
    child = subprocess.Popen(["sleep", "30"])
    try:
        young = process_age(child.pid)
        assert young is not None and young < 5
    finally:
        child.kill()
        child.wait()
    assert process_age(child.pid) is None


def test_failures_of_a_process_in_its_boot_window_do_not_count(tmp_path: Path) -> None:
    store = Store(tmp_path / "store.db")
    child = subprocess.Popen(["sleep", "30"])
    try:
        patient = HealthProber(store, lambda name: None, 1.0, 1.0, 2, boot_grace=60.0)
        strict = HealthProber(store, lambda name: None, 1.0, 1.0, 2, boot_grace=0.0)
        young = ServiceStatus("app", state="active", pid=child.pid)
        assert patient._booting(young)  # just started
        assert not strict._booting(young)  # past a grace of nothing
        assert not patient._booting(ServiceStatus("app", state="active", pid=None))
    finally:
        child.kill()
        child.wait()
        store.close()
    # The recorded PID is gone: the probe reached its successor, just started.
    assert patient._booting(ServiceStatus("app", state="active", pid=child.pid))


OK_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
BODY = b'{"message":"API is healthy.","code":200,"data":{}}'


@pytest.mark.parametrize(
    ("answer", "ended", "verdict"),
    [
        # PocketBase's own answer, whole: healthy before the connection even closes.
        (OK_HEAD + b"Content-Length: %d\r\n\r\n" % len(BODY) + BODY, False, True),
        # Half of its body: wait for the rest; cut off there, unhealthy.
        (OK_HEAD + b"Content-Length: %d\r\n\r\n" % len(BODY) + BODY[:10], False, None),
        (OK_HEAD + b"Content-Length: %d\r\n\r\n" % len(BODY) + BODY[:10], True, False),
        # Headers not finished: wait; closed there, unhealthy.
        (OK_HEAD, False, None),
        (OK_HEAD, True, False),
        (b"", True, False),
        # Any other status, whatever follows.
        (b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n", False, False),
        (b"HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n", False, False),
        (b"SSH-2.0-OpenSSH_9.6\r\n\r\n", False, False),
        # A length announced beyond the bound is refused before any of it is read.
        (OK_HEAD + b"Content-Length: %d\r\n\r\n" % (HEALTH_BODY_MAX + 1), False, False),
        (OK_HEAD + b"Content-Length: -1\r\n\r\n", False, False),
        # Chunked: healthy at the last chunk, within the bound only.
        (OK_HEAD + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", False, True),
        (OK_HEAD + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n", False, None),
        (OK_HEAD + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n", True, False),
        (OK_HEAD + b"Transfer-Encoding: chunked\r\n\r\n1001\r\n", False, False),
        (OK_HEAD + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n", False, False),
        # A size is hexadecimal digits only: a negative one walked the parse backwards
        # without end, inside the event loop (found by review).
        (OK_HEAD + b"Transfer-Encoding: chunked\r\n\r\n-10\r\n", False, False),
        (OK_HEAD + b"Transfer-Encoding: chunked\r\n\r\n+3\r\nabc\r\n0\r\n\r\n", False, False),
        (OK_HEAD + b"Transfer-Encoding: chunked\r\n\r\n0x3\r\nabc\r\n0\r\n\r\n", False, False),
        (OK_HEAD + b"Transfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n0\r\n\r\n", False, True),
        # No length: the body ends with the connection, within the bound.
        (OK_HEAD + b"\r\n" + BODY, False, None),
        (OK_HEAD + b"\r\n" + BODY, True, True),
        (OK_HEAD + b"\r\n" + b"x" * (HEALTH_BODY_MAX + 1), False, False),
        # Headers without end.
        (b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 2000, False, False),
    ],
)
def test_an_answer_is_healthy_only_when_it_is_a_whole_200_within_the_bounds(
    answer: bytes, ended: bool, verdict: bool | None
) -> None:
    assert answer_verdict(answer, ended=ended) is verdict


@pytest.mark.asyncio(loop_scope="function")
async def test_a_port_nobody_listens_on_is_unhealthy_at_once() -> None:
    runner, port = await serve(sized(60))
    await runner.cleanup()
    started = time.monotonic()
    assert await probe(port, timeout=5.0) is False
    assert time.monotonic() - started < 2.0


class RawServer:
    """An HTTP server on 127.0.0.1 that counts its connections and answers each request
    as ``mode`` says: ``keep`` (sized 200s on one connection), ``drop`` (a sized 200, then
    the connection closed without a word, as an instance's idle timeout does), ``close``
    (a 200 with ``Connection: close``), ``hang_after_first`` (one 200, then silence)."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.connections = 0
        self.requests = 0
        self.server: asyncio.Server | None = None
        self.handlers: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def __aexit__(self, *exc_info: object) -> None:
        assert self.server is not None
        self.server.close()
        for handler in self.handlers:
            handler.cancel()
        await asyncio.gather(*self.handlers, return_exceptions=True)
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self.handlers.append(task)
        try:
            while await reader.readuntil(b"\r\n\r\n"):
                self.requests += 1
                if self.mode == "hang_after_first" and self.requests > 1:
                    await asyncio.sleep(30)
                extra = b"Connection: close\r\n" if self.mode == "close" else b""
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%b\r\n%b" % (len(BODY), extra, BODY)
                )
                await writer.drain()
                if self.mode in ("drop", "close"):
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()


@pytest.mark.asyncio(loop_scope="function")
async def test_the_prober_asks_again_on_the_connection_it_kept() -> None:
    async with RawServer("keep") as server_port:
        connections = ProbeConnections()
        results = [await connections.probe(server_port, timeout=5.0) for _ in range(3)]
        assert results == [True, True, True]
        assert len(connections) == 1
        connections.close()
        assert len(connections) == 0


@pytest.mark.parametrize("mode", ["drop", "close"])
@pytest.mark.asyncio(loop_scope="function")
async def test_a_connection_the_instance_closed_or_would_close_is_not_a_failure(
    mode: str,
) -> None:
    server = RawServer(mode)
    async with server as server_port:
        connections = ProbeConnections()
        first = await connections.probe(server_port, timeout=5.0)
        await asyncio.sleep(0.1)  # the instance's close arrives while the prober waits
        second = await connections.probe(server_port, timeout=5.0)
        connections.close()
    assert (first, second) == (True, True)
    assert server.connections == 2  # a new connection for the second, no failure


@pytest.mark.asyncio(loop_scope="function")
async def test_an_instance_that_hangs_on_a_kept_connection_fails_within_the_timeout() -> None:
    async with RawServer("hang_after_first") as server_port:
        connections = ProbeConnections()
        assert await connections.probe(server_port, timeout=5.0) is True
        started = time.monotonic()
        assert await connections.probe(server_port, timeout=0.5) is False
        assert time.monotonic() - started < 2.0
        assert len(connections) == 0  # the hung connection is not kept


@pytest.mark.asyncio(loop_scope="function")
async def test_connections_of_instances_not_probed_any_more_are_closed_and_bounded() -> None:
    async with RawServer("keep") as first, RawServer("keep") as second:
        connections = ProbeConnections(most=1)
        assert await connections.probe(first, timeout=5.0)
        assert await connections.probe(second, timeout=5.0)  # answered, but not kept
        assert len(connections) == 1
        connections.retain({second})
        assert len(connections) == 0


def trickle(
    ended: asyncio.Event,
) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
    """A hostile instance: a 200 head, then a chunked body one byte at a time until the
    probe drops the connection (``ended`` is set then)."""

    async def serve_one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            with contextlib.suppress(ConnectionError):
                while True:
                    for byte in b"1\r\nx\r\n":
                        writer.write(bytes([byte]))
                        await writer.drain()
                        await asyncio.sleep(0.001)
        finally:
            writer.close()
            ended.set()

    return serve_one


@pytest.mark.asyncio(loop_scope="function")
async def test_an_answer_trickled_a_byte_at_a_time_is_unhealthy_after_bounded_reads() -> None:
    ended = asyncio.Event()
    server = await asyncio.start_server(trickle(ended), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        started = time.monotonic()
        assert await probe(port, timeout=10.0) is False
        assert time.monotonic() - started < 5.0  # decided by the bound, not the timeout
        await asyncio.wait_for(ended.wait(), 10)  # the probe dropped the connection
    finally:
        server.close()
        await server.wait_closed()
