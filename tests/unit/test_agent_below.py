"""``Below``: a layout's path, fixed parts below another of its paths, read like a property."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from pockestrator.agent.below import Below


@dataclass(frozen=True)
class _Layout:
    root: Path
    caddy = Below("root", "caddy")
    caddyfile = Below("caddy", "Caddyfile")
    deep = Below("root", "cache", "releases")
    same = Below("caddy")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("caddy", "/srv/box/caddy"),
        ("caddyfile", "/srv/box/caddy/Caddyfile"),  # below another Below
        ("deep", "/srv/box/cache/releases"),
        ("same", "/srv/box/caddy"),  # no parts: the base itself
    ],
)
def test_each_path_is_its_parts_below_its_base(name: str, expected: str) -> None:
    assert getattr(_Layout(Path("/srv/box")), name) == Path(expected)


def test_the_paths_follow_the_root_of_each_layout_and_are_no_dataclass_fields() -> None:
    assert _Layout(Path("/a")).caddyfile == Path("/a/caddy/Caddyfile")
    assert _Layout(Path("/b")).caddyfile == Path("/b/caddy/Caddyfile")
    assert _Layout(Path("/a")) == _Layout(Path("/a"))
    assert isinstance(_Layout.caddy, Below)
