"""Instances booting now, so that instances' settings wait for a host free of boots.

An instance's settings (the agent's superuser, made by a PocketBase process of its own,
then a sign-in and the settings calls, each a bcrypt hash or check in PocketBase) cost
more CPU than a fresh instance's boot. Deployed one after the other, each next spec
lands just after the previous instance answers, when that one's settings start: on two
cores the next boot took about 1.5 x as long beside them (``tests/benchmarks/timeline.py
--back-to-back``, settings on and off). ``BootGate`` counts the instances between their
start and the verdict on their health. A service whose settings are due while the host
is not calm (an instance boots, or one had its verdict less than ``calm`` seconds ago,
its own included: the next spec of a stream starts its instance within that time) leaves
them (``defer``) and is queued again once the host is calm; its status is recorded
meanwhile and no worker waits. A boot counts for at most ``hold`` seconds (a unit that
never answers holds nobody's settings for its whole health deadline).
``BootWatch.after_boots`` does the same for a burst's watched boots.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

# How long the host must have been free of boots before settings are applied.
CALM = 0.1
# The longest one boot holds other instances' settings back (PocketBase boots in 0.1 s
# alone, in seconds among a burst's).
BOOT_HOLD = 5.0


class BootGate:
    """The names whose instance was started and has no health verdict yet, and the names
    whose settings wait for a calm host."""

    def __init__(
        self,
        wake: Callable[[str], None] = lambda _name: None,
        calm: float = CALM,
        hold: float = BOOT_HOLD,
    ) -> None:
        self.wake = wake
        self.calm = calm
        self.hold = hold
        self._booting: dict[str, float] = {}  # name -> loop time of its start
        self._last_end = float("-inf")  # loop time of the last boot's verdict
        self._after: set[str] = set()
        self._timer: asyncio.TimerHandle | None = None

    def begin(self, name: str) -> None:
        """``name``'s instance is being started (or restarted)."""
        self._booting[name] = asyncio.get_running_loop().time()

    def end(self, name: str) -> None:
        """``name``'s boot has a verdict, or its reconcile is over."""
        if self._booting.pop(name, None) is not None:
            self._last_end = asyncio.get_running_loop().time()
            self._check()

    def booting(self, name: str) -> bool:
        return name in self._booting

    def defer(self, name: str) -> bool:
        """True when the host is not calm: ``name`` is queued again once it is, and its
        caller leaves its settings until then."""
        if self._until_calm(name) <= 0:
            self._after.discard(name)  # applied now: no later wake for them
            return False
        self._after.add(name)
        self._check()
        return True

    def waiting(self, name: str) -> bool:
        """Whether ``name``'s settings wait for a calm host."""
        return name in self._after

    def forget(self, name: str) -> None:
        """``name`` is gone: neither booting nor waiting."""
        self._booting.pop(name, None)
        self._after.discard(name)

    def _until_calm(self, name: str | None = None) -> float:
        """Seconds until the host is calm for ``name``'s settings as far as is known now
        (0: calm); a boot under way counts until its hold ends."""
        now = asyncio.get_running_loop().time()
        holds = [began + self.hold for other, began in self._booting.items() if other != name]
        return max(0.0, self._last_end + self.calm - now, *(held - now for held in holds))

    def _check(self) -> None:
        """Wake the waiting names once the host is calm; else look again when it may be."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._after:
            return
        later = self._until_calm()
        if later > 0:
            self._timer = asyncio.get_running_loop().call_later(later, self._check)
            return
        waiting, self._after = sorted(self._after), set()
        for name in waiting:
            self.wake(name)
