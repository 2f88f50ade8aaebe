"""Settings wait for a host free of boots (``agent.boot_gate``): the order of events only."""

from __future__ import annotations

import asyncio

from pockestrator.agent.boot_gate import BootGate


class Woken:
    """The names the gate queued again, in order, and an event for the next one."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.event = asyncio.Event()

    def __call__(self, name: str) -> None:
        self.names.append(name)
        self.event.set()

    async def next(self) -> list[str]:
        async with asyncio.timeout(30):  # generous: only the order is asserted
            await self.event.wait()
        self.event.clear()
        return self.names


async def test_a_host_that_never_booted_anything_is_calm_at_once() -> None:
    woken = Woken()
    gate = BootGate(woken, calm=60.0)
    assert not gate.defer("a")
    gate.end("never")  # every reconcile ends its name, started or not: no verdict
    assert not gate.defer("a")
    assert woken.names == []


async def test_settings_wait_for_another_instances_boot_and_are_queued_at_its_end() -> None:
    woken = Woken()
    gate = BootGate(woken, calm=0.0)
    gate.begin("b")
    assert gate.defer("a")
    assert woken.names == []  # b still boots
    gate.end("b")
    assert woken.names == ["a"]
    assert not gate.booting("b") and not gate.defer("a")


async def test_the_calm_after_a_verdict_is_waited_for_its_own_included() -> None:
    woken = Woken()
    gate = BootGate(woken, calm=0.05)
    gate.begin("a")
    gate.end("a")  # its own verdict: the next spec of a stream may follow
    assert gate.defer("a")
    assert woken.names == []
    assert await woken.next() == ["a"]


async def test_a_boot_that_begins_during_the_calm_is_waited_for_too() -> None:
    woken = Woken()
    gate = BootGate(woken, calm=0.05)
    gate.begin("a")
    gate.end("a")
    assert gate.defer("a")
    gate.begin("c")
    await asyncio.sleep(0.1)  # past the calm of a's verdict: c holds it now
    assert woken.names == []
    gate.end("c")
    assert await woken.next() == ["a"]


async def test_its_own_boot_does_not_hold_its_settings() -> None:
    gate = BootGate(Woken(), calm=0.0)
    gate.begin("a")
    assert gate.booting("a")
    assert not gate.defer("a")


async def test_a_boot_that_never_answers_holds_settings_only_for_its_hold() -> None:
    woken = Woken()
    gate = BootGate(woken, calm=0.0, hold=0.05)
    gate.begin("b")  # never ends
    assert gate.defer("a")
    assert await woken.next() == ["a"]
    assert gate.booting("b") and not gate.defer("a")


async def test_a_forgotten_name_is_not_queued_again() -> None:
    woken = Woken()
    gate = BootGate(woken, calm=0.0)
    gate.begin("b")
    assert gate.defer("a") and gate.defer("gone")
    gate.forget("gone")
    gate.end("b")
    assert woken.names == ["a"]


async def test_settings_applied_after_all_are_not_queued_again_later() -> None:
    woken = Woken()
    gate = BootGate(woken, calm=0.0)
    gate.begin("b")
    assert gate.defer("a") and gate.waiting("a")
    gate.forget("b")  # b is gone: the host is calm, and a's next reconcile applies them
    assert not gate.defer("a") and not gate.waiting("a")
    gate.begin("c")
    gate.end("c")
    assert woken.names == []
