"""``async with`` for the parts that are started and stopped: the agent, its test beds."""

from __future__ import annotations

from typing import Self


class StartStop:
    """``async with part:`` starts the part, and stops it however the block ends."""

    async def start(self) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()
