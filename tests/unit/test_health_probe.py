"""The health probe against a hostile instance: an answer without end is not read to its end.

An instance controls what its port answers. The probe reads at most ``HEALTH_BODY_MAX``
bytes and drops the connection, so an endless body costs neither memory nor the probe's
whole timeout. Real servers on 127.0.0.1, real time.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from pockestrator.agent.health import HEALTH_BODY_MAX, HealthProber, probe, process_age
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
        async with aiohttp.ClientSession() as session:
            started = time.monotonic()
            healthy = await probe(session, port, timeout=10.0)
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
        async with aiohttp.ClientSession() as session:
            assert await probe(session, port, timeout=5.0) is healthy
            assert await probe(session, port, timeout=5.0) is healthy  # the pool still works
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
