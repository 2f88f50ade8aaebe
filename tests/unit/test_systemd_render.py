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
    instance_user,
    is_managed,
    render_environment,
    render_unit,
    unit_body_hash,
)
from pockestrator.controllers.systemd.render import app_arguments
from pockestrator.files import sha256_text
from pockestrator.specs.errors import SpecInvalid
from pockestrator.specs.grammar import GrammarError
from pockestrator.specs.model import ServiceSpec, parse_spec
from tests.unit import golden_files

GOLDEN = golden_files.GOLDEN / "systemd"
SETTINGS = UnitSettings(
    base_dir=Path("/var/lib/pockestrator/services"),
    state_root=Path("/var/lib"),
    release_dir=Path("/var/lib/pockestrator/releases"),
    environment_dir=Path("/var/lib/pockestrator/environment"),
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
        secret_env={"PB_ENCRYPTION_KEY": "k" * 32},
        resources={"memory_max": "512M", "cpu_quota": "50%"},
        flags={"origins": ["https://app.example.com"], "query_timeout": 60, "dev": False},
        extra_dirs=["pb_public", "pb_hooks"],
    )
    check_golden("full.service", render_unit(full, SETTINGS, "file:/etc/pockestrator/specs/a.yaml"))


def test_the_sandbox_settings_leave_out_the_directives_that_fail_there() -> None:
    settings = dataclasses.replace(
        SETTINGS,
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


def test_the_instance_runs_as_its_own_dynamic_user_in_its_own_state_directory() -> None:
    lines = render_unit(spec(extra_dirs=["pb_hooks"]), SETTINGS).splitlines()
    assert "DynamicUser=yes" in lines and "User=pb-my-app" in lines
    assert (
        "StateDirectory=pockestrator/services/my-app pockestrator/services/my-app/pb_hooks" in lines
    )
    assert "StateDirectoryMode=0700" in lines and "UMask=0077" in lines
    assert "WorkingDirectory=/var/lib/pockestrator/services/my-app" in lines
    [exec_start] = [line for line in lines if line.startswith("ExecStart=")]
    assert exec_start.startswith(
        "ExecStart=/var/lib/pockestrator/releases/0.29.0/pocketbase serve "
    )


def test_a_long_name_gets_a_user_name_systemd_accepts_and_no_other_service_has() -> None:
    long_name = "a" + "b" * 40
    other = "a" + "b" * 39 + "c"
    users = [instance_user(long_name), instance_user(other)]
    assert all(len(user) <= 31 and user.startswith("pb-ab") for user in users)
    assert users[0] != users[1]
    assert instance_user("short") == "pb-short"


def test_the_environment_is_in_its_root_only_file_and_only_its_hash_in_the_unit() -> None:
    secret = "s3cr3t-value-that-must-not-leak"
    service = spec(env={"PLAIN": "plain-value-shown"}, secret_env={"KEY": secret})
    text = render_unit(service, SETTINGS)
    environment = render_environment(service)
    assert environment is not None
    assert secret not in text and "plain-value-shown" not in text
    assert "EnvironmentFile=/var/lib/pockestrator/environment/my-app.env" in text.splitlines()
    assert f"X-Pockestrator-Environment={sha256_text(environment)}" in text.splitlines()
    assert environment.splitlines()[1:] == [
        'KEY="s3cr3t-value-that-must-not-leak"',
        'PLAIN="plain-value-shown"',
    ]


def test_a_spec_without_environment_has_no_environment_file() -> None:
    text = render_unit(spec(), SETTINGS)
    assert render_environment(spec()) is None
    assert "EnvironmentFile=" not in text and "X-Pockestrator-Environment=" not in text


def test_quotes_backslashes_dollars_and_backticks_are_escaped_in_the_environment_file() -> None:
    environment = render_environment(spec(env={"X": 'a"b%c\\d$e`f'}))
    assert environment is not None
    assert environment.splitlines()[1] == 'X="a\\"b%c\\\\d\\$e\\`f"'


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"env": {"X": "1\nExecStart=/bin/sh"}}, "value must not contain newlines"),
        ({"secret_env": {"Y\nUser": "root"}}, "must match"),
    ],
)
def test_an_environment_that_skipped_validation_is_refused(
    changes: dict[str, object], message: str
) -> None:
    sneaky = ServiceSpec.model_construct(**{**spec().model_dump(), **changes})
    with pytest.raises(GrammarError, match=message):
        render_environment(sneaky)


@pytest.mark.parametrize(
    "resources",
    [
        {"memory_max": "1G\nUser=root", "cpu_quota": None},
        {"memory_max": None, "cpu_quota": "50% x"},
    ],
)
def test_limits_that_skipped_validation_are_refused(resources: dict[str, object]) -> None:
    forged = spec().resources.model_copy(update=resources)
    sneaky = spec().model_copy(update={"resources": forged})
    with pytest.raises(UnsafeValue, match="cannot be written into a unit file"):
        render_unit(sneaky, SETTINGS)


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
    settings = dataclasses.replace(
        SETTINGS, base_dir=Path("/srv/my services"), state_root=Path("/srv")
    )
    with pytest.raises(UnsafeValue, match="path '/srv/my services/my-app' cannot be written"):
        render_unit(spec(), settings)


@pytest.mark.parametrize("base_dir", ["/srv/../etc", "/srv/..", "/../srv"])
def test_a_base_dir_that_climbs_out_with_dot_dot_is_refused(base_dir: str) -> None:
    # Every character is allowed in a path; only the '..' step makes it leave the folder.
    settings = dataclasses.replace(SETTINGS, base_dir=Path(base_dir), state_root=Path("/"))
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


def _exec_start(text: str) -> list[str]:
    line = next(line for line in text.splitlines() if line.startswith("ExecStart="))
    return line[len("ExecStart=") :].split(" ")


def test_a_live_release_gives_pocketbase_its_three_folders_and_no_hook_watching() -> None:
    arguments = _exec_start(
        render_unit(spec(extra_dirs=["pb_hooks"]), SETTINGS, release="0123456789abcdef")
    )
    folder = "/var/lib/pockestrator/services/my-app/.releases/0123456789abcdef"
    assert arguments[:4] == [
        "/var/lib/pockestrator/releases/0.29.0/pocketbase",
        "serve",
        "--http=127.0.0.1:8080",
        "--dir=/var/lib/pockestrator/services/my-app/pb_data",
    ]
    assert f"--hooksDir={folder}/pb_hooks" in arguments
    assert f"--migrationsDir={folder}/pb_migrations" in arguments
    assert f"--publicDir={folder}/pb_public" in arguments
    assert "--hooksDir=/var/lib/pockestrator/services/my-app/pb_hooks" not in arguments
    assert "--hooksWatch=false" in arguments


def test_pocketbases_app_flags_name_a_folders_three_parts_and_watch_no_hooks_unless_asked() -> None:
    assert app_arguments("/srv/r") == [
        "--hooksDir=/srv/r/pb_hooks",
        "--migrationsDir=/srv/r/pb_migrations",
        "--publicDir=/srv/r/pb_public",
        "--hooksWatch=false",
    ]
    assert app_arguments("/srv/r", watch=True)[3:] == ["--hooksWatch=true"]


def test_another_release_is_another_unit_so_a_switch_restarts_the_instance() -> None:
    first = render_unit(spec(), SETTINGS, release="0123456789abcdef")
    second = render_unit(spec(), SETTINGS, release="fedcba9876543210")
    assert unit_body_hash(first) != unit_body_hash(second)
    assert render_unit(spec(), SETTINGS) != first


def test_dev_mode_watches_the_hooks_of_a_live_release_only_when_the_spec_asks() -> None:
    dev = _exec_start(render_unit(spec(flags={"hooks_watch": True}), SETTINGS, release="0" * 16))
    assert "--hooksWatch=true" in dev
    assert "--hooksWatch=false" not in dev
    off = _exec_start(render_unit(spec(flags={"hooks_watch": False}), SETTINGS, release="0" * 16))
    assert off.count("--hooksWatch=false") == 1


@pytest.mark.parametrize(
    "release", ["../../etc", "0123456789ABCDEF", "0123", "x" * 16, "", "f" * 56]
)
def test_a_release_id_outside_its_grammar_never_reaches_a_unit(release: str) -> None:
    with pytest.raises(UnsafeValue) as refused:
        render_unit(spec(), SETTINGS, release=release)
    assert str(refused.value) == f"release {release[:40]!r} cannot be written into a unit file"
