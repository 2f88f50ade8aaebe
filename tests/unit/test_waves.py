"""The wave coordinator fires each global operation once per wave of reconciles."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from pockestrator.agent.waves import WaveCoordinator


class Recorder:
    def __init__(self) -> None:
        self.calls: list[set[str]] = []

    async def __call__(self, requests: Mapping[str, str]) -> dict[str, str]:
        self.calls.append(set(requests))
        await asyncio.sleep(0.001)
        return {key: f"done:{value}" for key, value in requests.items()}


async def test_fifty_reconciles_share_one_reload_and_one_caddy_wave() -> None:
    coordinator = WaveCoordinator()
    reload, caddy = Recorder(), Recorder()
    reload_barrier = coordinator.barrier("daemon-reload", reload)
    caddy_barrier = coordinator.barrier("caddy", caddy)

    async def reconcile(name: str) -> tuple[str, str]:
        async with coordinator.participant():
            await asyncio.sleep(0.001 * (hash(name) % 5))  # uneven work before parking
            first = await coordinator.park(reload_barrier, name, "unit")
            await asyncio.sleep(0.001 * (hash(name) % 3))
            second = await coordinator.park(caddy_barrier, name, "site")
            return first, second

    results = await asyncio.gather(*(reconcile(f"s{i}") for i in range(50)))
    assert len(reload.calls) == 1 and len(reload.calls[0]) == 50
    assert len(caddy.calls) == 1 and len(caddy.calls[0]) == 50
    assert set(results) == {("done:unit", "done:site")}


async def test_a_reconcile_that_needs_nothing_global_does_not_hold_the_wave() -> None:
    coordinator = WaveCoordinator()
    reload = Recorder()
    barrier = coordinator.barrier("daemon-reload", reload)

    async def quiet() -> None:
        async with coordinator.participant():
            await asyncio.sleep(0.01)

    async def needs_reload() -> str:
        async with coordinator.participant():
            return await coordinator.park(barrier, "a", "unit")

    outcome, _ = await asyncio.wait_for(asyncio.gather(needs_reload(), quiet()), 2)
    assert outcome == "done:unit" and reload.calls == [{"a"}]


async def test_ready_work_delays_the_wave_until_it_has_joined() -> None:
    pending = ["late"]
    coordinator = WaveCoordinator(ready_work=lambda: bool(pending))
    reload = Recorder()
    barrier = coordinator.barrier("daemon-reload", reload)

    async def reconcile(name: str) -> str:
        async with coordinator.participant():
            return await coordinator.park(barrier, name, "unit")

    early = asyncio.create_task(reconcile("early"))
    await asyncio.sleep(0.02)
    assert reload.calls == [], "fired while more work was ready to start"
    pending.clear()
    late = asyncio.create_task(reconcile("late"))
    await asyncio.wait_for(asyncio.gather(early, late), 2)
    assert reload.calls == [{"early", "late"}]


async def test_a_failed_operation_fails_every_waiter() -> None:
    coordinator = WaveCoordinator()

    async def broken(requests: Mapping[str, str]) -> dict[str, str]:
        raise RuntimeError("reload failed")

    barrier = coordinator.barrier("daemon-reload", broken)

    async def reconcile(name: str) -> str:
        async with coordinator.participant():
            return await coordinator.park(barrier, name, "unit")

    results = await asyncio.gather(reconcile("a"), reconcile("b"), return_exceptions=True)
    assert [str(r) for r in results] == ["reload failed", "reload failed"]
    assert coordinator.fired("daemon-reload") == 1


async def test_later_waves_fire_again() -> None:
    coordinator = WaveCoordinator()
    reload = Recorder()
    barrier = coordinator.barrier("daemon-reload", reload)

    async def reconcile(name: str) -> str:
        async with coordinator.participant():
            return await coordinator.park(barrier, name, "unit")

    await reconcile("first")
    await asyncio.gather(reconcile("second"), reconcile("third"))
    assert reload.calls == [{"first"}, {"second", "third"}]
    assert coordinator.fired("daemon-reload") == 2


async def test_a_reconcile_that_never_parks_holds_a_wave_only_until_its_deadline() -> None:
    coordinator = WaveCoordinator(max_wait=0.2)
    reload = Recorder()
    barrier = coordinator.barrier("daemon-reload", reload)
    stuck = asyncio.Event()

    async def busy_elsewhere() -> None:
        async with coordinator.participant():  # e.g. waiting for an instance that never starts
            await stuck.wait()

    async def needs_reload() -> str:
        async with coordinator.participant():
            return await coordinator.park(barrier, "a", "unit")

    holder = asyncio.create_task(busy_elsewhere())
    await asyncio.sleep(0)
    loop = asyncio.get_running_loop()
    started = loop.time()
    outcome = await asyncio.wait_for(needs_reload(), 2)
    waited = loop.time() - started
    stuck.set()
    await holder
    assert outcome == "done:unit" and reload.calls == [{"a"}]
    assert 0.15 <= waited < 1.0, waited
