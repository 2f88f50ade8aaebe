"""``Below``: the test beds' layouts as tables, each path fixed parts below another."""

from __future__ import annotations

from pathlib import Path

import pytest

from pockestrator.agent.below import Below
from pockestrator.agent.private_systemd import PrivateSystemdPaths
from pockestrator.agent.sandbox import SandboxLayout

MANAGER = PrivateSystemdPaths(Path("/srv/box/systemd"))
SANDBOX = SandboxLayout(Path("/srv/box"))


@pytest.mark.parametrize(
    ("layout", "name", "expected"),
    [
        (MANAGER, "config_home", "/srv/box/systemd/config"),
        (MANAGER, "unit_dir", "/srv/box/systemd/config/systemd/user"),  # below another Below
        (MANAGER, "state_home", "/srv/box/systemd/config"),  # no parts: the base itself
        (MANAGER, "journal_dir", "/srv/box/systemd/journal"),
        (SANDBOX, "caddyfile", "/srv/box/caddy/Caddyfile"),
        (SANDBOX, "database", "/srv/box/state/pockestrator.db"),
        (SANDBOX, "services_dir", "/srv/box/systemd/config/services"),  # below a property
    ],
)
def test_each_path_is_its_parts_below_its_base(layout: object, name: str, expected: str) -> None:
    assert getattr(layout, name) == Path(expected)


def test_the_paths_follow_each_layout_root_and_are_not_dataclass_fields() -> None:
    assert SandboxLayout(Path("/a")).caddyfile == Path("/a/caddy/Caddyfile")
    assert SandboxLayout(Path("/a")) == SandboxLayout(Path("/a"))
    assert SandboxLayout(Path("/a")) != SandboxLayout(Path("/b"))
    assert isinstance(SandboxLayout.caddyfile, Below)
