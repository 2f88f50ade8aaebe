"""``async with`` over a started part: started on entry, stopped however the block ends."""

from __future__ import annotations

import asyncio

import pytest

from pockestrator.agent.lifespan import StartStop


class _Part(StartStop):
    def __init__(self) -> None:
        self.calls: list[str] = []

    async def start(self) -> None:
        self.calls.append("start")

    async def stop(self) -> None:
        self.calls.append("stop")


def test_the_block_runs_between_the_start_and_the_stop() -> None:
    async def run() -> list[str]:
        async with _Part() as part:
            part.calls.append("block")
        return part.calls

    assert asyncio.run(run()) == ["start", "block", "stop"]


def test_a_block_that_raises_still_stops_the_part_and_the_error_goes_on() -> None:
    part = _Part()

    async def run() -> None:
        async with part:
            raise LookupError("inside")

    with pytest.raises(LookupError, match="inside"):
        asyncio.run(run())
    assert part.calls == ["start", "stop"]
