"""The host check of the database's folder: full is its own error, with where and what to do."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from pockestrator.api.context import HostFacts
from pockestrator.api.hostcheck import judge
from pockestrator.config import AgentConfig

HEALTHY = HostFacts(
    systemd_version="252",
    systemd_problem=None,
    directory_problems=dict.fromkeys(("systemd_dir", "base_dir", "caddy_sites_dir", "database")),
    caddyfile_problem=None,
    caddy_binary=True,
    caddy_running=True,
    tools={"journalctl": True},
)
CONFIG = AgentConfig(
    base_dir=Path("/var/lib/pockestrator/services"),
    database=Path("/var/lib/pockestrator/state/pockestrator.db"),
)


def test_a_full_database_folder_is_an_error_naming_the_folder() -> None:
    report = judge(dataclasses.replace(HEALTHY, database_full=True), CONFIG)
    [problem] = report.errors
    assert problem.code == "DATABASE_FULL"
    assert "/var/lib/pockestrator/state is full" in problem.message
    assert "free space" in problem.message
    assert not report.healthy and not report.database_writable and not report.permissions


def test_a_database_folder_with_room_is_no_error() -> None:
    report = judge(HEALTHY, CONFIG)
    assert report.healthy and report.database_writable
