"""render_unit at its edges: the ports it takes, each app folder's flag, the egress a spec
opens, folders with capitals, and the box of a throwaway copy.

A spec changed with ``model_copy(update=...)`` skips validation, so the renderer's own checks are
driven with forged specs here; the model's refusals are tested with the model.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from pockestrator.controllers.systemd import UnitSettings, UnsafeValue, render_unit
from pockestrator.specs.model import ServiceSpec, parse_spec

SETTINGS = UnitSettings(
    base_dir=Path("/var/lib/pockestrator/services"),
    state_root=Path("/var/lib"),
    release_dir=Path("/var/lib/pockestrator/releases"),
    environment_dir=Path("/var/lib/pockestrator/environment"),
    wanted_by="multi-user.target",
)
FOLDER = "/var/lib/pockestrator/services/my-app"


def spec(**fields: object) -> ServiceSpec:
    base: dict[str, object] = {
        "project_name": "my-app",
        "port": 8080,
        "pocketbase_version": "0.29.0",
    }
    return parse_spec({**base, **fields}, "example.com")


def line_of(unit: str, key: str) -> str:
    [line] = [line for line in unit.splitlines() if line.startswith(f"{key}=")]
    return line


def with_port(port: object) -> ServiceSpec:
    return spec().model_copy(update={"port": port})  # model_copy validates nothing


@pytest.mark.parametrize("port", [1024, 8080, 65535])
def test_every_port_from_1024_to_65535_reaches_execstart(port: int) -> None:
    unit = render_unit(with_port(port), SETTINGS)
    assert f" --http=127.0.0.1:{port} " in line_of(unit, "ExecStart")


@pytest.mark.parametrize("port", [1023, 65536, 0, -1, True, "8080", 8080.0, None])
def test_a_port_that_skipped_validation_is_refused_by_the_renderer(port: object) -> None:
    with pytest.raises(UnsafeValue) as refused:
        render_unit(with_port(port), SETTINGS)
    assert str(refused.value) == f"port {port!r} cannot be written into a unit file"


@pytest.mark.parametrize(
    ("folder", "flag"),
    [
        ("pb_hooks", "--hooksDir"),
        ("pb_migrations", "--migrationsDir"),
        ("pb_public", "--publicDir"),
    ],
)
def test_each_app_folder_is_passed_to_pocketbase_with_its_own_flag(folder: str, flag: str) -> None:
    unit = render_unit(spec(extra_dirs=[folder]), SETTINGS)
    assert line_of(unit, "ExecStart") == (
        "ExecStart=/var/lib/pockestrator/releases/0.29.0/pocketbase serve "
        f"--http=127.0.0.1:8080 --dir={FOLDER}/pb_data {flag}={FOLDER}/{folder}"
    )
    assert line_of(unit, "StateDirectory") == (
        f"StateDirectory=pockestrator/services/my-app pockestrator/services/my-app/{folder}"
    )


def test_the_egress_a_spec_opens_is_allowed_beside_loopback() -> None:
    unit = render_unit(spec(egress=["192.0.2.10", "10.0.0.0/8"]), SETTINGS)
    assert line_of(unit, "IPAddressDeny") == "IPAddressDeny=any"
    assert line_of(unit, "IPAddressAllow") == "IPAddressAllow=localhost 192.0.2.10 10.0.0.0/8"
    assert line_of(render_unit(spec(), SETTINGS), "IPAddressAllow") == "IPAddressAllow=localhost"


def test_folders_with_capitals_and_the_other_path_characters_are_written_as_they_are() -> None:
    settings = dataclasses.replace(
        SETTINGS,
        base_dir=Path("/srv/X-Data_1.v2+@/services"),
        state_root=Path("/srv"),
        release_dir=Path("/opt/PB/Releases"),
    )
    unit = render_unit(spec(), settings)
    assert line_of(unit, "ExecStart") == (
        "ExecStart=/opt/PB/Releases/0.29.0/pocketbase serve --http=127.0.0.1:8080 "
        "--dir=/srv/X-Data_1.v2+@/services/my-app/pb_data"
    )
    assert (
        line_of(unit, "WorkingDirectory") == "WorkingDirectory=/srv/X-Data_1.v2+@/services/my-app"
    )


def test_a_throwaway_copy_gets_a_folder_beside_the_services_and_a_user_of_its_own() -> None:
    relative, box = SETTINGS.scratch_box("tok1")
    assert relative == "pockestrator/services/.scratch-tok1"
    lines = [directive.line for directive in box]
    assert lines[:4] == [
        "DynamicUser=yes",
        "User=pb_scratch-80b3ad2d438b",
        "StateDirectory=pockestrator/services/.scratch-tok1",
        "StateDirectoryMode=0700",
    ]
    assert lines[-2:] == ["IPAddressDeny=any", "IPAddressAllow=localhost"]
    assert "ProtectHome=yes" in lines


def test_a_throwaway_copy_leaves_out_the_hardening_the_host_cannot_run() -> None:
    settings = dataclasses.replace(SETTINGS, hardening_disabled=frozenset({"ProtectHome"}))
    _relative, box = settings.scratch_box("tok1")
    keys = [directive.key for directive in box]
    assert "ProtectHome" not in keys and "ProtectSystem" in keys
