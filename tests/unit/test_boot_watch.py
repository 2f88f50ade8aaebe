"""The boot watch: a started instance that does not answer yet is watched off the worker.

The reconcile probes once and returns; the watch keeps probing, and when the instance
answers (or the deadline passes) it keeps the verdict and queues the service, whose next
reconcile takes the verdict. Real servers on 127.0.0.1, real time.
"""

from __future__ import annotations

import asyncio
import socket

import aiohttp
import pytest
from aiohttp import web

from pockestrator.agent.health import BootWatch


async def health(request: web.Request) -> web.Response:
    return web.json_response({"code": 200, "message": "API is healthy."})


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def serve_on(port: int) -> web.AppRunner:
    app = web.Application()
    app.router.add_get("/api/health", health)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


@pytest.mark.asyncio(loop_scope="function")
async def test_an_instance_that_answers_later_is_queued_once_with_a_healthy_verdict() -> None:
    port = unused_port()
    woken: list[str] = []
    async with aiohttp.ClientSession() as session:
        watch = BootWatch(session, woken.append, timeout=1.0)
        healthy, _seen = await watch.look("late", port, 10.0, started=True)
        assert healthy is False and watch.watching("late") and woken == []
        # A reconcile in between (a unit signal) does not probe or start a second watch.
        assert (await watch.look("late", port, 10.0, started=False))[0] is False
        runner = await serve_on(port)
        try:
            for _ in range(200):
                if woken:
                    break
                await asyncio.sleep(0.01)
            assert woken == ["late"] and not watch.watching("late")
            assert (await watch.look("late", port, 10.0, started=False))[0] is True
        finally:
            await runner.cleanup()
        await watch.close()


@pytest.mark.asyncio(loop_scope="function")
async def test_an_instance_that_answers_at_once_needs_no_watch() -> None:
    port = unused_port()
    runner = await serve_on(port)
    woken: list[str] = []
    try:
        async with aiohttp.ClientSession() as session:
            watch = BootWatch(session, woken.append)
            assert (await watch.look("quick", port, 10.0, started=True))[0] is True
            assert not watch.watching("quick") and woken == []
    finally:
        await runner.cleanup()


@pytest.mark.asyncio(loop_scope="function")
async def test_a_watch_past_its_deadline_queues_the_service_with_an_unhealthy_verdict() -> None:
    port = unused_port()
    woken: list[str] = []
    async with aiohttp.ClientSession() as session:
        watch = BootWatch(session, woken.append, timeout=0.2)
        await watch.look("hung", port, 0.3, started=True)
        for _ in range(200):
            if woken:
                break
            await asyncio.sleep(0.01)
        assert woken == ["hung"]
        healthy, _seen = await watch.look("hung", port, 0.3, started=False)
        assert healthy is False and not watch.watching("hung")
        # That verdict was taken: looking again probes again and starts a new watch.
        assert (await watch.look("hung", port, 0.3, started=False))[0] is False
        assert watch.watching("hung")
        await watch.close()
        assert not watch.watching("hung")


@pytest.mark.asyncio(loop_scope="function")
async def test_a_new_start_drops_the_old_watch_and_its_verdict_is_never_delivered() -> None:
    port = unused_port()
    woken: list[str] = []
    async with aiohttp.ClientSession() as session:
        watch = BootWatch(session, woken.append, timeout=0.2)
        await watch.look("again", port, 0.2, started=True)
        watch.forget("again")
        await asyncio.sleep(0.5)
        assert woken == [] and not watch.watching("again")


@pytest.mark.asyncio(loop_scope="function")
async def test_work_left_until_the_boots_are_over_is_queued_when_the_last_one_ends() -> None:
    port = unused_port()
    woken: list[str] = []
    async with aiohttp.ClientSession() as session:
        watch = BootWatch(session, woken.append, timeout=1.0)
        assert watch.after_boots("alone") is False  # nothing boots: no reason to wait
        assert (await watch.look("booting", port, 10.0, started=True))[0] is False
        assert watch.after_boots("booting") is False  # its own watch does not count
        assert watch.after_boots("ready") is True
        assert woken == []
        runner = await serve_on(port)
        try:
            for _ in range(200):
                if len(woken) == 2:
                    break
                await asyncio.sleep(0.01)
            assert woken == ["booting", "ready"]
        finally:
            await runner.cleanup()
        await watch.close()


@pytest.mark.asyncio(loop_scope="function")
async def test_work_left_for_a_boot_that_is_forgotten_is_queued_at_once() -> None:
    woken: list[str] = []
    async with aiohttp.ClientSession() as session:
        watch = BootWatch(session, woken.append, timeout=1.0)
        assert (await watch.look("removed", unused_port(), 10.0, started=True))[0] is False
        assert watch.after_boots("ready") is True
        watch.forget("removed")  # the service was deleted while it booted
        assert woken == ["ready"]
        await watch.close()
