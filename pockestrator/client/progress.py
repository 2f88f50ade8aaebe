"""Progress of a wait, on stderr only, so that stdout stays the command's result.

On a terminal: one line redrawn in place (a spinner, how many are ready, the ones that are
not and why, the time so far), erased at the end. Anywhere else (a pipe, a CI log): one
line per state change and nothing else, so logs stay short and readable.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TextIO

from pockestrator.client.output import TABLE_WIDTH, duration, safe_text

SPINNER = "|/-\\"
LINE_MAX = 160


@dataclass(frozen=True)
class Item:
    """One thing waited for: its name, its state now, and whether that is the goal."""

    name: str
    state: str
    ready: bool
    detail: str = ""

    @property
    def shown(self) -> str:
        return f"{self.state} ({self.detail})" if self.detail else self.state


class Progress:
    def __init__(
        self,
        stream: TextIO,
        interactive: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream
        self.interactive = stream.isatty() if interactive is None else interactive
        self.clock = clock
        self.started = clock()
        self._last: dict[str, str] = {}
        self._frame = 0
        self._drawn = False

    def update(self, items: Sequence[Item]) -> None:
        if self.interactive:
            self._redraw(items)
            return
        for item in items:
            shown = safe_text(item.shown)
            if self._last.get(item.name) != shown:
                self._last[item.name] = shown
                self.stream.write(f"{safe_text(item.name)}: {shown}\n")
        self.stream.flush()

    def _redraw(self, items: Sequence[Item]) -> None:
        self._frame = (self._frame + 1) % len(SPINNER)
        ready = sum(item.ready for item in items)
        waiting = ", ".join(f"{item.name} {item.shown}" for item in items if not item.ready)
        line = f"{SPINNER[self._frame]} {ready}/{len(items)} ready"
        if waiting:
            line += f"; waiting for {waiting}"
        line += f" [{duration(self.clock() - self.started)}]"
        line = safe_text(line)
        # One terminal line at most: a wrapped line cannot be redrawn in place.
        limit = min(LINE_MAX, (TABLE_WIDTH[0] or LINE_MAX + 1) - 1)
        if len(line) > limit:
            line = line[: max(limit - 3, 0)] + "..."
        self.stream.write("\r\x1b[K" + line)
        self.stream.flush()
        self._drawn = True

    def close(self) -> None:
        """Erase the in-place line, so what follows starts on a clean line."""
        if self.interactive and self._drawn:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._drawn = False
