"""The settings of off-site backups: the agent's targets, and the policy that names them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pockestrator.config import ConfigError, load_config
from pockestrator.specs.errors import ErrorCode
from pockestrator.specs.model import SpecInvalid, parse_spec
from pockestrator.specs.validation import unknown_targets

TARGET = {
    "endpoint": "https://s3.example.net",
    "bucket": "pb-backups",
    "prefix": "host-1/",
    "access_key_id": "AKIAEXAMPLE",
    "secret_access_key_file": "/etc/pockestrator/s3.secret",
}


def spec(**backups: Any) -> dict[str, Any]:
    return {
        "project_name": "app",
        "port": 8100,
        "pocketbase_version": "0.40.6",
        "backups": backups,
    }


def issues(data: dict[str, Any]) -> list[tuple[str, ErrorCode]]:
    with pytest.raises(SpecInvalid) as raised:
        parse_spec(data, "localhost")
    return [(issue.field, issue.code) for issue in raised.value.issues]


def test_a_policy_names_its_targets_and_local_is_always_one() -> None:
    parsed = parse_spec(spec(targets=["offsite", "local"]), "localhost")
    assert parsed.backups is not None and parsed.backups.targets == ("offsite", "local")
    assert unknown_targets(parsed, {"offsite"}) == []


@pytest.mark.parametrize("name", ["Offsite", "-x", "a b", "x" * 33, "s3/east", ""])
def test_a_target_name_outside_the_grammar_is_refused_on_its_own_field(name: str) -> None:
    assert issues(spec(targets=["offsite", name])) == [
        ("backups.targets.1", ErrorCode.INVALID_TARGET_NAME)
    ]


def test_a_target_the_agent_does_not_have_is_refused_naming_what_it_has() -> None:
    parsed = parse_spec(spec(targets=["local", "cold"]), "localhost")
    [issue] = unknown_targets(parsed, {"offsite"})
    assert (issue.field, issue.code) == ("backups.targets.1", ErrorCode.UNKNOWN_TARGET)
    assert "local, offsite" in issue.message


def test_targets_come_from_the_file_or_as_json_from_the_environment(tmp_path: Path) -> None:
    file = tmp_path / "config.yaml"
    file.write_text(json.dumps({"backup_targets": {"offsite": TARGET}}))
    from_file = load_config(file, {})
    assert from_file.backup_targets["offsite"].bucket == "pb-backups"
    assert from_file.backup_targets["offsite"].part_size == 8 * 1024 * 1024
    from_env = load_config(None, {"POCKESTRATOR_BACKUP_TARGETS": json.dumps({"cold": TARGET})})
    assert list(from_env.backup_targets) == ["cold"]


@pytest.mark.parametrize(
    ("targets", "key"),
    [
        ({"local": TARGET}, "backup_targets"),
        ({"Off Site": TARGET}, "backup_targets"),
        ({"offsite": {**TARGET, "endpoint": "ftp://x"}}, "backup_targets.offsite.endpoint"),
        ({"offsite": {**TARGET, "prefix": "../up"}}, "backup_targets.offsite.prefix"),
        ({"offsite": {**TARGET, "secret_access_key_file": "s3.secret"}}, "secret_access_key_file"),
        ({"offsite": {**TARGET, "part_size": 1024}}, "backup_targets.offsite.part_size"),
        ({"offsite": {**TARGET, "secret_access_key": "inline"}}, "secret_access_key"),
    ],
)
def test_a_bad_target_is_refused_naming_the_key(targets: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_config(None, {"POCKESTRATOR_BACKUP_TARGETS": json.dumps(targets)})
    assert any(key in where for where, _message in raised.value.problems), raised.value.problems


def test_replication_names_a_target_the_agent_has_and_keeps_its_bounds() -> None:
    parsed = parse_spec(spec(replication={"target": "cold"}), "localhost")
    [issue] = unknown_targets(parsed, {"offsite"})
    assert (issue.field, issue.code) == ("backups.replication.target", ErrorCode.UNKNOWN_TARGET)
    assert issues(spec(replication={"target": "offsite", "sync_seconds": 0})) == [
        ("backups.replication.sync_seconds", ErrorCode.INVALID_VALUE)
    ]
    assert issues(spec(replication={"target": "Off"})) == [
        ("backups.replication.target", ErrorCode.INVALID_TARGET_NAME)
    ]
