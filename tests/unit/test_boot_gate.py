"""Settings wait for a host free of boots (``agent.boot_gate``): the order of events only."""

from __future__ import annotations

import asyncio

from pockestrator.agent.boot_gate import BootGate


async def turns(count: int = 5) -> None:
    for _ in range(count):
        await asyncio.sleep(0)


async def test_a_host_that_never_booted_anything_is_calm_at_once() -> None:
    assert await BootGate(calm=60.0).quiet("a") == 0.0


async def test_settings_wait_for_another_instances_boot_then_for_the_calm_after_it() -> None:
    gate = BootGate(calm=0.05, bound=60.0)
    gate.begin("b")
    waiting = asyncio.create_task(gate.quiet("a"))
    await turns()
    assert not waiting.done()  # b still boots
    gate.end("b")
    assert await waiting >= 0.05  # and then the calm after b's verdict
    assert not gate.booting("b")


async def test_a_boot_that_begins_during_the_calm_is_waited_for_too() -> None:
    gate = BootGate(calm=0.05, bound=60.0)
    gate.begin("a")
    gate.end("a")  # its own verdict: the next spec of a stream may follow
    waiting = asyncio.create_task(gate.quiet("a"))
    await turns()
    gate.begin("c")
    await asyncio.sleep(0.1)  # past the calm of a's verdict: c holds it now
    assert not waiting.done()
    gate.end("c")
    await waiting


async def test_its_own_boot_does_not_hold_its_settings() -> None:
    gate = BootGate(calm=0.0, bound=60.0)
    gate.begin("a")
    assert gate.booting("a") and not gate.others("a")
    await gate.quiet("a")


async def test_a_stream_of_boots_holds_settings_at_most_the_bound() -> None:
    gate = BootGate(calm=0.0, bound=0.05)
    gate.begin("b")  # never ends
    assert await gate.quiet("a") >= 0.05
    assert gate.booting("b")


async def test_the_end_of_a_name_that_never_booted_changes_nothing() -> None:
    gate = BootGate(calm=60.0, bound=60.0)
    gate.end("never")  # every reconcile ends its name, started or not
    assert await gate.quiet("a") == 0.0
