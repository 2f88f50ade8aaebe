"""render_unit: deterministic, hardened, self-hashed, and hostile specs cannot reshape it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from pockestrator.controllers.systemd import (
    HARDENING_NAMES,
    MARKER,
    UnitSettings,
    UnsafeValue,
    describe_source,
    is_managed,
    render_unit,
    unit_body_hash,
)
from pockestrator.specs.errors import SpecInvalid
from pockestrator.specs.grammar import GrammarError
from pockestrator.specs.model import ServiceSpec, parse_spec
from tests.unit import golden_files

GOLDEN = golden_files.GOLDEN / "systemd"
SETTINGS = UnitSettings(
    base_dir=Path("/var/lib/pockestrator/services"),
    user="pocketbase",
    group="pocketbase",
    wanted_by="multi-user.target",
)


def spec(**fields: object) -> ServiceSpec:
    base: dict[str, object] = {
        "project_name": "my-app",
        "port": 8080,
        "pocketbase_version": "0.29.0",
    }
    return parse_spec({**base, **fields}, "example.com")


def check_golden(name: str, text: str) -> None:
    golden_files.check_golden(GOLDEN / name, text)


def test_the_minimal_unit_matches_its_golden_file() -> None:
    check_golden("minimal.service", render_unit(spec(), SETTINGS))


def test_a_full_unit_matches_its_golden_file() -> None:
    full = spec(
        env={"GOMEMLIMIT": "200MiB", "QUOTED": 'say "hi" 100% \\ok'},
        resources={"memory_max": "512M", "cpu_quota": "50%"},
        flags={"origins": ["https://app.example.com"], "query_timeout": 60, "dev": False},
        extra_dirs=["pb_public", "pb_hooks"],
    )
    check_golden("full.service", render_unit(full, SETTINGS, "file:/etc/pockestrator/specs/a.yaml"))


def test_the_sandbox_settings_leave_out_the_directives_that_fail_there() -> None:
    settings = UnitSettings(
        base_dir=Path("/var/lib/sandbox/services"),
        user="nobody",
        group="nogroup",
        wanted_by="default.target",
        hardening_disabled=frozenset({"ProtectHome", "ProtectKernelTunables", "ProtectKernelLogs"}),
    )
    text = render_unit(spec(), settings)
    assert "ProtectHome=" not in text and "ProtectKernelLogs=" not in text
    assert "ProtectSystem=strict" in text and "WantedBy=default.target" in text


def test_rendering_is_deterministic_and_env_order_does_not_matter() -> None:
    one = render_unit(spec(env={"A": "1", "B": "2"}), SETTINGS)
    two = render_unit(spec(env={"B": "2", "A": "1"}), SETTINGS)
    assert one == two


def test_the_unit_carries_its_marker_and_the_hash_of_its_own_body() -> None:
    text = render_unit(spec(), SETTINGS)
    assert is_managed(text) and MARKER in text
    embedded = next(line for line in text.splitlines() if line.startswith("X-Pockestrator-Hash="))
    assert embedded.split("=", 1)[1] == unit_body_hash(text)
    edited = text.replace("Restart=always", "Restart=no")
    assert unit_body_hash(edited) != unit_body_hash(text)


def test_every_hardening_directive_is_rendered_by_default() -> None:
    text = render_unit(spec(), SETTINGS)
    for name in HARDENING_NAMES:
        assert f"\n{name}=" in text, name
    assert "ReadWritePaths=/var/lib/pockestrator/services/my-app\n" in text


def test_percent_quotes_and_backslashes_in_env_values_are_escaped() -> None:
    text = render_unit(spec(env={"X": 'a"b%c\\d'}), SETTINGS)
    assert 'Environment="X=a\\"b%%c\\\\d"' in text


@pytest.mark.parametrize(
    "fields",
    [
        {"project_name": "app\nExecStartPre=/bin/rm"},
        {"project_name": "../../etc"},
        {"domain": "a.com\n[Service]"},
        {"env": {"X": "1\nExecStart=/bin/sh"}},
        {"env": {"X\nUser": "root"}},
        {"resources": {"memory_max": "1G\nUser=root"}},
        {"resources": {"cpu_quota": "50% "}},
        {"flags": {"origins": ["https://a.com --dev"]}},
        {"flags": {"encryption_env": "KEY --http=0.0.0.0:80"}},
        {"pocketbase_version": "0.29.0\nUser=root"},
        {"description": "line\nExecStart=/bin/sh"},
    ],
)
def test_hostile_values_never_reach_a_unit(fields: dict[str, object]) -> None:
    with pytest.raises(SpecInvalid):
        spec(**fields)


def test_a_spec_that_skipped_validation_is_still_refused() -> None:
    sneaky = ServiceSpec.model_construct(**{**spec().model_dump(), "project_name": "x\nUser=root"})
    with pytest.raises(GrammarError, match="project name may contain only lowercase letters"):
        render_unit(sneaky, SETTINGS)


@pytest.mark.parametrize("character", [" ", "\t", '"', "'", "\\", "%", ";"])
def test_an_argument_that_would_split_quote_or_expand_in_execstart_is_refused(
    character: str,
) -> None:
    # The model refuses such an origin; a spec that skipped validation (model_copy with
    # update= validates nothing) must still not reach ExecStart=, where a space splits an
    # argument, quotes and backslashes are systemd's own syntax and '%' is a specifier.
    valid = spec()
    origin = f"https://a.example{character}--dev"
    flags = valid.flags.model_copy(update={"origins": (origin,)})
    sneaky = valid.model_copy(update={"flags": flags})
    with pytest.raises(UnsafeValue, match="cannot be written into a unit file") as refused:
        render_unit(sneaky, SETTINGS)
    assert str(refused.value) == (
        f"argument {f'--origins={origin}'!r} cannot be written into a unit file"
    )


def test_an_unsafe_base_dir_is_refused() -> None:
    settings = UnitSettings(
        base_dir=Path("/srv/my services"), user="pocketbase", group=None, wanted_by="x.target"
    )
    with pytest.raises(UnsafeValue, match="path '/srv/my services/my-app' cannot be written"):
        render_unit(spec(), settings)


@pytest.mark.parametrize("base_dir", ["/srv/../etc", "/srv/..", "/../srv"])
def test_a_base_dir_that_climbs_out_with_dot_dot_is_refused(base_dir: str) -> None:
    # Every character is allowed in a path; only the '..' step makes it leave the folder.
    settings = dataclasses.replace(SETTINGS, base_dir=Path(base_dir))
    with pytest.raises(UnsafeValue, match=r"path '.*' cannot be written into a unit file"):
        render_unit(spec(), settings)


@pytest.mark.parametrize(
    "text",
    [
        "[Unit]\n# X-Pockestrator-Managed=yes\n",
        "[Unit]\n;X-Pockestrator-Managed=yes\n",
        "[Unit]\nX-Pockestrator-Managed=yes-but-not-ours\n",
        "[Unit]\nX-Pockestrator-Managed=yesterday\n",
        "[Unit]\nDescription=copied X-Pockestrator-Managed=yes\n",
        "[Unit]\nX-Pockestrator-Managed=no\n",
    ],
)
def test_a_commented_out_suffixed_or_embedded_marker_is_not_ours(text: str) -> None:
    assert not is_managed(text)


def test_the_marker_on_a_line_of_its_own_is_ours_whatever_the_surrounding_space() -> None:
    assert is_managed("[Unit]\nX-Pockestrator-Managed=yes\n")
    assert is_managed("[Unit]\r\n  X-Pockestrator-Managed=yes  \r\n")


def test_the_source_is_shown_only_when_it_is_a_plain_file_name() -> None:
    assert describe_source("api") == "api"
    assert describe_source("file:/etc/specs/blog.yaml") == "file:blog.yaml"
    assert describe_source("file:/etc/specs/bad\nname.yaml") == "file"
