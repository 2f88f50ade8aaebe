"""What the agent's configuration makes of every unit, and what a unit file says back.

``UnitSettings.from_config`` is the one place where the configuration's folders and the
manager kind become unit text; ``unit_version`` and ``unit_environment_hash`` read a unit's
own ``X-Pockestrator-*`` lines back (the drift check compares them with the spec).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pockestrator.config import AgentConfig
from pockestrator.controllers.systemd import UnitSettings, unit_environment_hash, unit_version


def test_the_system_manager_defaults_become_the_settings_of_every_unit() -> None:
    config = AgentConfig(
        base_dir=Path("/var/lib/pockestrator/services"),
        database=Path("/var/lib/pockestrator/state.db"),
    )
    assert UnitSettings.from_config(config) == UnitSettings(
        base_dir=Path("/var/lib/pockestrator/services"),
        state_root=Path("/var/lib"),
        release_dir=Path("/var/lib/pockestrator/releases"),
        environment_dir=Path("/var/lib/pockestrator/environment"),
        wanted_by="multi-user.target",
        hardening_disabled=frozenset(),
    )


def test_a_user_manager_with_its_own_folders_and_hardening_choices_is_followed() -> None:
    config = AgentConfig(
        systemd_manager="user",
        base_dir=Path("/srv/pb/services"),
        state_directory_root=Path("/srv/pb"),
        release_cache_dir=Path("/srv/releases"),
        environment_dir=Path("/srv/env"),
        hardening_disabled=("ProtectHome", "PrivateDevices", "ProtectHome"),
    )
    assert UnitSettings.from_config(config) == UnitSettings(
        base_dir=Path("/srv/pb/services"),
        state_root=Path("/srv/pb"),
        release_dir=Path("/srv/releases"),
        environment_dir=Path("/srv/env"),
        wanted_by="default.target",
        hardening_disabled=frozenset({"ProtectHome", "PrivateDevices"}),
    )


UNIT = (
    "[Unit]\n"
    "X-Pockestrator-Managed=yes\n"
    "X-Pockestrator-Version=0.29.0\n"
    "X-Pockestrator-Environment=abc123\n"
    "[Service]\n"
)


@pytest.mark.parametrize(
    ("text", "version", "environment"),
    [
        (UNIT, "0.29.0", "abc123"),
        ("X-Pockestrator-Version= 0.23.0-rc1 \n", "0.23.0-rc1", None),
        ("X-Pockestrator-Version=\nX-Pockestrator-Environment=  \n", None, None),
        ("[Unit]\nDescription=x\n", None, None),
        ("", None, None),
        (
            "X-Pockestrator-Version=1.0.0\nX-Pockestrator-Version=2.0.0\n"
            "X-Pockestrator-Environment=first\nX-Pockestrator-Environment=second\n",
            "1.0.0",
            "first",
        ),
        ("# X-Pockestrator-Version=9.9.9\n", None, None),
    ],
    ids=["both", "padded", "empty", "absent", "nothing", "first-wins", "commented"],
)
def test_a_unit_says_which_version_and_environment_it_was_rendered_with(
    text: str, version: str | None, environment: str | None
) -> None:
    assert (unit_version(text), unit_environment_hash(text)) == (version, environment)
