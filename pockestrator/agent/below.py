"""``Below``: a folder layout's paths as a table, each a fixed part below another of them."""

from __future__ import annotations

from pathlib import Path
from typing import overload


class Below:
    """A layout's path ``parts`` below its attribute ``base``; declared in one line, read
    like a property (so a layout is a table of where things are, not a method each)."""

    def __init__(self, base: str, *parts: str) -> None:
        self.base = base
        self.parts = parts

    @overload
    def __get__(self, layout: None, owner: type) -> Below: ...

    @overload
    def __get__(self, layout: object, owner: type) -> Path: ...

    def __get__(self, layout: object | None, owner: type) -> Path | Below:
        if layout is None:
            return self
        return Path(getattr(layout, self.base)).joinpath(*self.parts)
