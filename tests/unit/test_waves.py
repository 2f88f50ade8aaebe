"""The wave coordinator fires each global operation once per wave of reconciles.

The coordinator takes its time from the event loop (the ``max_wait`` deadline), so these
tests run on a loop of their own with fake time (looptime): a 5 s deadline passes at once
and fires at exactly 5 s of loop time. Waits that would hang are bounded in loop time
(``NEVER``), so a broken coordinator fails in milliseconds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Mapping
from typing import TypeVar

import pytest
from looptime import LoopTimeProxy

from pockestrator.agent.waves import Barrier, WaveCoordinator

pytestmark = [pytest.mark.asyncio(loop_scope="function"), pytest.mark.looptime]

# Loop seconds after which an outcome that should have come is taken as never coming.
NEVER = 600.0

T = TypeVar("T")


async def within_never(awaitable: Awaitable[T]) -> T:
    try:
        return await asyncio.wait_for(awaitable, NEVER)
    except TimeoutError:
        pytest.fail(f"still waiting after {NEVER} s of loop time")


class Recorder:
    """A global operation that records each batch and the loop time it ran at."""

    def __init__(self, takes: float = 0.001) -> None:
        self.takes = takes
        self.calls: list[set[str]] = []
        self.times: list[float] = []

    async def __call__(self, requests: Mapping[str, str]) -> dict[str, str]:
        self.calls.append(set(requests))
        self.times.append(asyncio.get_running_loop().time())
        await asyncio.sleep(self.takes)
        return {key: f"done:{value}" for key, value in requests.items()}


def reload_wave(
    max_wait: float | None = None,
) -> tuple[WaveCoordinator, Recorder, Barrier[str, str]]:
    """A coordinator with one barrier, daemon-reload, and the recorder its firings run."""
    coordinator = WaveCoordinator() if max_wait is None else WaveCoordinator(max_wait=max_wait)
    reload = Recorder()
    return coordinator, reload, coordinator.barrier("daemon-reload", reload)


async def reconcile_parking_once(
    coordinator: WaveCoordinator, barrier: Barrier[str, str], name: str
) -> str:
    async with coordinator.participant():
        return await coordinator.park(barrier, name, "unit")


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

    results = await within_never(asyncio.gather(*(reconcile(f"s{i}") for i in range(50))))
    everyone = {f"s{i}" for i in range(50)}
    assert reload.calls == [everyone]
    assert caddy.calls == [everyone]
    assert results == [("done:unit", "done:site")] * 50
    # Each wave fired as soon as everybody had parked, long before its deadline.
    assert reload.times[0] < 0.01 and caddy.times[0] < 0.02


async def test_a_reconcile_that_needs_nothing_global_does_not_hold_the_wave(
    looptime: LoopTimeProxy,
) -> None:
    coordinator, reload, barrier = reload_wave()

    async def quiet() -> None:
        async with coordinator.participant():
            await asyncio.sleep(0.01)

    outcome, _ = await within_never(
        asyncio.gather(reconcile_parking_once(coordinator, barrier, "a"), quiet())
    )
    assert outcome == "done:unit" and reload.calls == [{"a"}]
    assert reload.times == [0.01]  # as soon as the quiet one finished, not at the deadline


async def test_ready_work_delays_the_wave_until_it_has_joined() -> None:
    pending = ["late"]
    coordinator = WaveCoordinator(ready_work=lambda: bool(pending))
    reload = Recorder()
    barrier = coordinator.barrier("daemon-reload", reload)

    early = asyncio.create_task(reconcile_parking_once(coordinator, barrier, "early"))
    await asyncio.sleep(0.02)
    assert reload.calls == [], "fired while more work was ready to start"
    pending.clear()
    late = asyncio.create_task(reconcile_parking_once(coordinator, barrier, "late"))
    await within_never(asyncio.gather(early, late))
    assert reload.calls == [{"early", "late"}]


async def test_a_failed_operation_fails_every_waiter() -> None:
    coordinator = WaveCoordinator()

    async def broken(requests: Mapping[str, str]) -> dict[str, str]:
        raise RuntimeError("reload failed")

    barrier = coordinator.barrier("daemon-reload", broken)

    results = await within_never(
        asyncio.gather(
            reconcile_parking_once(coordinator, barrier, "a"),
            reconcile_parking_once(coordinator, barrier, "b"),
            return_exceptions=True,
        )
    )
    assert [(type(r), str(r)) for r in results] == [(RuntimeError, "reload failed")] * 2
    assert coordinator.fired("daemon-reload") == 1


async def test_later_waves_fire_again() -> None:
    coordinator, reload, barrier = reload_wave()

    await within_never(reconcile_parking_once(coordinator, barrier, "first"))
    await within_never(
        asyncio.gather(
            reconcile_parking_once(coordinator, barrier, "second"),
            reconcile_parking_once(coordinator, barrier, "third"),
        )
    )
    assert reload.calls == [{"first"}, {"second", "third"}]
    assert coordinator.fired("daemon-reload") == 2


async def test_a_reconcile_that_never_parks_holds_a_wave_only_until_its_deadline(
    looptime: LoopTimeProxy,
) -> None:
    coordinator, reload, barrier = reload_wave(0.2)
    stuck = asyncio.Event()

    async def busy_elsewhere() -> None:
        async with coordinator.participant():  # e.g. waiting for an instance that never starts
            await stuck.wait()

    holder = asyncio.create_task(busy_elsewhere())
    try:
        await asyncio.sleep(0)
        assert looptime == 0
        outcome = await within_never(reconcile_parking_once(coordinator, barrier, "a"))
        assert outcome == "done:unit" and reload.calls == [{"a"}]
        assert reload.times == [0.2]  # fired by the deadline, not earlier, not later
        assert looptime == 0.201  # the operation itself took 1 ms
    finally:
        stuck.set()
        await holder


async def test_reconciles_woken_in_the_same_loop_turn_share_one_wave() -> None:
    # `early` parks while `late` has started but not parked yet: for a moment every active
    # reconcile but one is parked. The coordinator fires a loop turn later, after checking
    # again, so `late`, parking in the next turn, is in the same wave.
    coordinator, reload, barrier = reload_wave()

    async def late() -> str:
        async with coordinator.participant():
            await asyncio.sleep(0)  # one loop turn of work before it parks
            return await coordinator.park(barrier, "late", "unit")

    results = await within_never(
        asyncio.gather(reconcile_parking_once(coordinator, barrier, "early"), late())
    )
    assert results == ["done:unit", "done:unit"]
    assert reload.calls == [{"early", "late"}]


async def test_a_second_park_of_the_same_key_cancels_the_first_waiter() -> None:
    coordinator, reload, barrier = reload_wave()

    async def park_unit(request: str) -> str:
        async with coordinator.participant():
            return await coordinator.park(barrier, "a", request)

    first = asyncio.create_task(park_unit("old unit"))
    await asyncio.sleep(0)
    second = asyncio.create_task(park_unit("new unit"))
    results = await within_never(asyncio.gather(first, second, return_exceptions=True))
    assert isinstance(results[0], asyncio.CancelledError), results
    assert results[1] == "done:new unit"
    assert reload.calls == [{"a"}]


async def test_a_waiter_at_a_later_barrier_still_fires_after_the_deadline_of_the_next_wave(
    looptime: LoopTimeProxy,
) -> None:
    # `busy` never parks. `site` parks at the Caddy barrier, `unit` at the reload barrier:
    # the deadline fires the reload (the first barrier with waiters) and must be armed again
    # for `site`, still parked, which nobody else will wake.
    coordinator = WaveCoordinator(max_wait=5.0)
    reload, caddy = Recorder(takes=0.5), Recorder(takes=0.5)
    reload_barrier = coordinator.barrier("daemon-reload", reload)
    caddy_barrier = coordinator.barrier("caddy", caddy)
    stuck = asyncio.Event()

    async def busy() -> None:
        async with coordinator.participant():
            await stuck.wait()

    async def parks_at(barrier: Barrier[str, str], name: str, after: float) -> float:
        async with coordinator.participant():
            await asyncio.sleep(after)
            await coordinator.park(barrier, name, "x")
            return float(looptime)

    holder = asyncio.create_task(busy())
    site = asyncio.create_task(parks_at(caddy_barrier, "site", 0.0))
    unit = asyncio.create_task(parks_at(reload_barrier, "unit", 1.0))
    try:
        assert await within_never(unit) == 5.5  # deadline at 5 s, the reload took 0.5 s
        assert await within_never(site) == 11.0  # deadline again 5 s after that wave, + 0.5 s
        assert reload.times == [5.0] and caddy.times == [10.5]
        assert (reload.calls, caddy.calls) == ([{"unit"}], [{"site"}])
    finally:
        stuck.set()
        for task in (site, unit):
            task.cancel()
        await asyncio.gather(holder, site, unit, return_exceptions=True)


async def test_the_default_deadline_is_five_seconds(looptime: LoopTimeProxy) -> None:
    coordinator, reload, barrier = reload_wave()
    stuck = asyncio.Event()

    async def busy_elsewhere() -> None:
        async with coordinator.participant():
            await stuck.wait()

    holder = asyncio.create_task(busy_elsewhere())
    await asyncio.sleep(0)
    try:
        assert await within_never(reconcile_parking_once(coordinator, barrier, "a")) == "done:unit"
    finally:
        stuck.set()
        await holder
    assert reload.times == [5.0]


async def test_a_waiter_that_parks_while_its_barrier_runs_waits_for_the_next_run() -> None:
    coordinator = WaveCoordinator()
    running: list[str] = []
    overlapped = False

    async def slow(requests: Mapping[str, str]) -> dict[str, str]:
        nonlocal overlapped
        overlapped |= bool(running)
        running.append("run")
        await asyncio.sleep(1.0)
        running.pop()
        return {key: "done" for key in requests}

    barrier = coordinator.barrier("daemon-reload", slow)
    first = asyncio.create_task(reconcile_parking_once(coordinator, barrier, "first"))
    await asyncio.sleep(0.5)  # the first run is under way
    second = asyncio.create_task(reconcile_parking_once(coordinator, barrier, "second"))
    assert await within_never(asyncio.gather(first, second)) == ["done", "done"]
    assert not overlapped, "two runs of one global operation overlapped"
    assert coordinator.fired("daemon-reload") == 2


async def test_a_deadline_that_passes_while_a_wave_runs_starts_no_second_run(
    looptime: LoopTimeProxy,
) -> None:
    coordinator = WaveCoordinator(max_wait=1.0)
    starts: list[float] = []

    async def slow(requests: Mapping[str, str]) -> dict[str, str]:
        starts.append(asyncio.get_running_loop().time())
        await asyncio.sleep(3.0)
        return {key: "done" for key in requests}

    barrier = coordinator.barrier("daemon-reload", slow)
    stuck = asyncio.Event()

    async def busy_elsewhere() -> None:
        async with coordinator.participant():
            await stuck.wait()

    holder = asyncio.create_task(busy_elsewhere())
    await asyncio.sleep(0)
    first = asyncio.create_task(reconcile_parking_once(coordinator, barrier, "first"))
    await asyncio.sleep(1.5)  # first run started at 1.0 (deadline) and runs until 4.0
    second = asyncio.create_task(reconcile_parking_once(coordinator, barrier, "second"))
    try:
        assert await within_never(asyncio.gather(first, second)) == ["done", "done"]
    finally:
        stuck.set()
        await holder
    assert starts == [1.0, 5.0]  # the second waits out its own deadline after the first


async def test_a_parked_reconcile_that_is_cancelled_leaves_nothing_waiting() -> None:
    coordinator, reload, barrier = reload_wave()
    stuck = asyncio.Event()

    async def busy_elsewhere() -> None:
        async with coordinator.participant():
            await stuck.wait()

    holder = asyncio.create_task(busy_elsewhere())
    await asyncio.sleep(0)
    parked = asyncio.create_task(reconcile_parking_once(coordinator, barrier, "gone"))
    await asyncio.sleep(0.1)
    assert set(barrier.waiting) == {"gone"}
    parked.cancel()
    with pytest.raises(asyncio.CancelledError):
        await parked
    assert barrier.waiting == {}
    stuck.set()
    await holder
    await asyncio.sleep(10.0)  # past any deadline: nobody is left to fire for
    assert reload.calls == []


async def test_reconciles_released_by_one_wave_are_all_awaited_at_the_next_barrier() -> None:
    # Once a wave releases its waiters none of them is parked any more: the next barrier
    # fires only when all three have parked again, not when a stale count says so.
    coordinator = WaveCoordinator()
    reload, caddy = Recorder(), Recorder()
    reload_barrier = coordinator.barrier("daemon-reload", reload)
    caddy_barrier = coordinator.barrier("caddy", caddy)

    async def reconcile(name: str, work: float) -> str:
        async with coordinator.participant():
            await coordinator.park(reload_barrier, name, "unit")
            await asyncio.sleep(work)
            return await coordinator.park(caddy_barrier, name, "site")

    results = await within_never(
        asyncio.gather(reconcile("p1", 0.1), reconcile("p2", 0.2), reconcile("p3", 0.3))
    )
    assert results == ["done:site"] * 3
    assert reload.calls == [{"p1", "p2", "p3"}]
    assert caddy.calls == [{"p1", "p2", "p3"}]


async def test_a_wave_that_settles_before_its_deadline_arms_a_new_one_for_who_still_waits(
    looptime: LoopTimeProxy,
) -> None:
    # `unit` and `site` park at once: the reload fires settled, long before the deadline,
    # and `unit` then stays busy without parking. `site`, still parked at the Caddy barrier,
    # must get a deadline of its own, 5 s after that wave.
    coordinator = WaveCoordinator(max_wait=5.0)
    reload, caddy = Recorder(takes=0.5), Recorder(takes=0.5)
    reload_barrier = coordinator.barrier("daemon-reload", reload)
    caddy_barrier = coordinator.barrier("caddy", caddy)
    stuck = asyncio.Event()

    async def unit() -> None:
        async with coordinator.participant():
            await coordinator.park(reload_barrier, "unit", "x")
            await stuck.wait()

    async def site() -> float:
        async with coordinator.participant():
            await coordinator.park(caddy_barrier, "site", "x")
            return float(looptime)

    site_task = asyncio.create_task(site())
    unit_task = asyncio.create_task(unit())
    try:
        assert await within_never(site_task) == 6.0
        assert reload.times == [0.0] and caddy.times == [5.5]
        assert (reload.calls, caddy.calls) == ([{"unit"}], [{"site"}])
    finally:
        stuck.set()
        site_task.cancel()
        await asyncio.gather(unit_task, site_task, return_exceptions=True)


async def test_a_reconcile_that_stepped_aside_does_not_hold_the_next_wave(
    looptime: LoopTimeProxy,
) -> None:
    coordinator, reload, barrier = reload_wave(5.0)
    settling = asyncio.Event()

    async def waiting_for_its_boot() -> None:
        async with coordinator.participant():
            coordinator.step_aside()
            settling.set()
            await asyncio.sleep(100.0)

    slow = asyncio.create_task(waiting_for_its_boot())
    await settling.wait()
    assert await within_never(reconcile_parking_once(coordinator, barrier, "lone")) == "done:unit"
    assert reload.calls == [{"lone"}]
    assert reload.times == [pytest.approx(0.0, abs=0.01)]  # not the 5 s deadline
    slow.cancel()
    await asyncio.gather(slow, return_exceptions=True)


async def test_a_reconcile_that_parks_again_after_stepping_aside_is_waited_for_then_let_go(
    looptime: LoopTimeProxy,
) -> None:
    coordinator, reload, barrier = reload_wave(5.0)

    async def aside_then_park() -> str:
        async with coordinator.participant():
            coordinator.step_aside()
            return await coordinator.park(barrier, "deployer", "unit")

    async def parks_after_a_second() -> str:
        async with coordinator.participant():
            await asyncio.sleep(1.0)
            return await coordinator.park(barrier, "late", "unit")

    late = asyncio.create_task(parks_after_a_second())
    await asyncio.sleep(0)  # "late" is active before "deployer" parks
    assert await within_never(aside_then_park()) == "done:unit"
    assert await within_never(late) == "done:unit"
    assert reload.calls == [{"deployer", "late"}]
    assert reload.times == [pytest.approx(1.0, abs=0.01)]
    # Done, the deployer no longer counts: the next wave does not wait 5 s for it.
    assert await within_never(reconcile_parking_once(coordinator, barrier, "next")) == "done:unit"
    assert reload.times[1:] == [pytest.approx(1.0, abs=0.01)]


async def test_stepping_aside_outside_a_reconcile_changes_nothing(
    looptime: LoopTimeProxy,
) -> None:
    coordinator, reload, barrier = reload_wave(5.0)
    coordinator.step_aside()
    assert await within_never(reconcile_parking_once(coordinator, barrier, "one")) == "done:unit"
    assert reload.times == [pytest.approx(0.0, abs=0.01)]
