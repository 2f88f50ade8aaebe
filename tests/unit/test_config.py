"""Agent configuration: YAML plus POCKESTRATOR_* variables, validated with clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from pockestrator.config import AgentConfig, ConfigError, load_config


def test_defaults_bind_the_api_to_loopback_on_8091() -> None:
    config = load_config(None, environ={})
    assert (config.listen_host, config.listen_port) == ("127.0.0.1", 8091)
    assert config.systemd_manager == "system"


def test_a_file_is_read_and_the_environment_wins(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(
        "default_domain: example.com\nworkers: 8\nbase_dir: /srv/pb\nstate_directory_root: /srv\n"
    )
    config = load_config(path, environ={"POCKESTRATOR_WORKERS": "16"})
    assert config.default_domain == "example.com"
    assert config.workers == 16
    assert config.base_dir == Path("/srv/pb")


def test_list_settings_come_from_comma_separated_variables() -> None:
    config = load_config(None, environ={"POCKESTRATOR_ALLOWED_HOSTS": "a.example, b.example,"})
    assert config.allowed_hosts == ("a.example", "b.example")


def test_every_bad_key_is_named_at_once(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("workers: many\nlisten_host: localhost\nbase_dir: relative/dir\ncolour: red\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    keys = {key for key, _message in caught.value.problems}
    assert keys == {"workers", "listen_host", "base_dir", "colour"}
    assert "config.yaml" in str(caught.value)


def test_broken_yaml_and_a_missing_file_are_clear_errors(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("workers: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(broken, environ={})
    with pytest.raises(ConfigError, match="No such file"):
        load_config(tmp_path / "missing.yaml", environ={})
    listed = tmp_path / "list.yaml"
    listed.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(listed, environ={})


def test_an_environment_value_is_validated_like_the_file() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(None, environ={"POCKESTRATOR_LISTEN_PORT": "99999"})
    assert caught.value.problems[0][0] == "listen_port"
    assert "environment" in caught.value.source


def test_the_archive_defaults_to_a_folder_of_the_base_dir() -> None:
    config = AgentConfig(base_dir=Path("/srv/pb"), state_directory_root=Path("/srv"))
    assert config.archive_path == Path("/srv/pb/.archive")


@pytest.mark.parametrize("key", ["base_dir", "systemd_dir", "caddy_sites_dir"])
@pytest.mark.parametrize("value", ["/srv/my services", "/srv/%i", "/srv/a\nb", '/srv/"x"'])
def test_paths_written_into_rendered_files_must_be_plain(key: str, value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(None, environ={f"POCKESTRATOR_{key.upper()}": value})
    assert caught.value.problems[0][0] == key


def test_base_dir_must_lie_under_the_state_directory_root() -> None:
    with pytest.raises(ValidationError, match="must be inside state_directory_root /var/lib"):
        AgentConfig(base_dir=Path("/srv/pb"))
    with pytest.raises(ValidationError, match="not it or its private/ folder"):
        AgentConfig(base_dir=Path("/var/lib/private/pb"))
    with pytest.raises(ValidationError, match="not it or its private/ folder"):
        AgentConfig(base_dir=Path("/var/lib"))


def test_the_environment_files_default_to_a_folder_beside_the_database() -> None:
    config = AgentConfig(database=Path("/var/lib/pockestrator/p.db"))
    assert config.environment_path == Path("/var/lib/pockestrator/environment")
    other = AgentConfig(environment_dir=Path("/etc/pockestrator/environment"))
    assert other.environment_path == Path("/etc/pockestrator/environment")


@pytest.mark.parametrize(
    ("given", "mode"),
    [
        ("auto", "auto"),
        ("internal", "internal"),
        ("off", "off"),
        (True, "auto"),
        (False, "off"),
        ("true", "auto"),
        ("false", "off"),
    ],
)
def test_tls_is_a_mode_and_the_booleans_of_earlier_versions_still_load(
    given: object, mode: str
) -> None:
    assert AgentConfig.model_validate({"caddy_tls": given}).caddy_tls == mode


def test_tls_defaults_to_acme_and_a_bad_mode_is_named() -> None:
    assert AgentConfig().caddy_tls == "auto"
    with pytest.raises(ConfigError, match="caddy_tls"):
        load_config(None, {"POCKESTRATOR_CADDY_TLS": "sometimes"})
    assert load_config(None, {"POCKESTRATOR_CADDY_TLS": "false"}).caddy_tls == "off"


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("acme_email", "ops@example.com\n}"),
        ("acme_email", "not an address"),
        ("acme_ca", "http://acme.example.com/directory"),
        ("acme_ca", "https://acme.example.com/{$DIR}"),
        ("acme_ca", "https://acme.example.com/dir ory"),
    ],
)
def test_acme_settings_that_would_bend_a_site_block_are_refused(key: str, value: str) -> None:
    with pytest.raises(ValidationError, match=key):
        AgentConfig.model_validate({key: value})


def test_acme_settings_of_a_real_ca_are_accepted() -> None:
    config = AgentConfig.model_validate(
        {
            "acme_email": "ops@example.com",
            "acme_ca": "https://acme-staging-v02.api.letsencrypt.org/directory",
        }
    )
    assert (config.acme_email, config.acme_ca) == (
        "ops@example.com",
        "https://acme-staging-v02.api.letsencrypt.org/directory",
    )
