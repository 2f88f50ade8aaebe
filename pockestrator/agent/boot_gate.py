"""Instances booting now, so that instances' settings wait for a host free of boots.

An instance's settings (the agent's superuser, made by a PocketBase process of its own,
then a sign-in and the settings calls, each a bcrypt hash or check in PocketBase) cost
more CPU than a fresh instance's boot. Deployed one after the other, each next spec
lands just after the previous instance answers, when that one's settings start: on two
cores the next boot took about 1.5 x as long beside them (``tests/benchmarks/timeline.py
--back-to-back``, settings on and off). ``BootGate`` counts the instances between their
start and the verdict on their health. A service's settings wait (``quiet``) until no
instance has booted for ``calm`` seconds, its own included: the next spec of a stream
starts its instance within that time after the previous one answered, so the settings
of a stream of deploys run after its boots rather than beside them. The wait is at most
``bound`` seconds, so a stream cannot hold settings back for ever. A lone deploy's
settings start ``calm`` later than they would. ``BootWatch.after_boots`` does the same
for a burst's watched boots.
"""

from __future__ import annotations

import asyncio

from pockestrator.waits import woken

# How long the host must have been free of boots before settings are applied.
CALM = 0.1
# The longest the settings of one service wait for other instances' boots.
QUIET_BOUND = 30.0


class BootGate:
    """The names whose instance was started and has no health verdict yet."""

    def __init__(self, calm: float = CALM, bound: float = QUIET_BOUND) -> None:
        self.calm = calm
        self.bound = bound
        self._booting: set[str] = set()
        self._last_end = float("-inf")  # loop time of the last boot's verdict
        self._changed = asyncio.Event()

    def begin(self, name: str) -> None:
        """``name``'s instance is being started (or restarted)."""
        self._booting.add(name)

    def end(self, name: str) -> None:
        """``name``'s boot has a verdict, or its reconcile is over."""
        if name in self._booting:
            self._booting.discard(name)
            self._last_end = asyncio.get_running_loop().time()
            self._changed.set()

    def booting(self, name: str) -> bool:
        return name in self._booting

    def others(self, name: str) -> bool:
        """Whether an instance other than ``name``'s is booting."""
        return any(other != name for other in self._booting)

    async def quiet(self, name: str) -> float:
        """Wait until no other instance boots and none has for ``calm`` seconds, at most
        ``bound`` seconds; how long it waited (0.0: the host was calm already)."""
        loop = asyncio.get_running_loop()
        began = loop.time()
        deadline = began + self.bound
        waited = False
        while (now := loop.time()) < deadline:
            if self.others(name):
                self._changed.clear()
                await woken(self._changed, deadline - now)
            elif (calm_at := self._last_end + self.calm) > now:
                await asyncio.sleep(min(calm_at, deadline) - now)
            else:
                break
            waited = True
        return loop.time() - began if waited else 0.0
