"""What the agent gives Litestream: its configuration and its box (pure parts)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml

from pockestrator.config import S3Target
from pockestrator.controllers.snapshots.folder import SnapshotError
from pockestrator.controllers.snapshots.litestream import (
    BINARY_MOUNT,
    CONFIG_MOUNT,
    DATABASE,
    box_properties,
    endpoint_egress,
    render_config,
    restore_stamp,
)
from pockestrator.specs.backups import ReplicationPolicy

TARGET = S3Target(
    endpoint="http://10.0.0.5:9000",
    bucket="pb-backups",
    prefix="host-1/",
    path_style=True,
    access_key_id="AK",
    secret_access_key_file=Path("/etc/pockestrator/s3.secret"),
)


def test_the_configuration_replicates_the_instances_data_db_under_the_services_prefix() -> None:
    text = render_config("shop", TARGET, "se$cret", ReplicationPolicy(target="x", sync_seconds=5))
    config = yaml.safe_load(text)
    [db] = config["dbs"]
    assert db["path"] == DATABASE
    assert db["replica"]["path"] == "host-1/shop/replica/data.db"
    assert db["replica"]["secret-access-key"] == "se$cret"  # read with -no-expand-env
    assert db["replica"]["force-path-style"] is True
    assert db["replica"]["sync-interval"] == "5s"
    assert config["snapshot"]["retention"] == "72h"


@pytest.mark.parametrize(
    ("endpoint", "egress"),
    [
        ("http://10.0.0.5:9000", ("10.0.0.5/32",)),
        ("https://[2001:db8::1]", ("2001:db8::1/128",)),
        ("https://s3.example.net", ("any",)),
    ],
)
def test_the_box_reaches_the_endpoints_address_alone_when_it_is_one(
    endpoint: str, egress: tuple[str, ...]
) -> None:
    assert tuple(endpoint_egress(endpoint)) == egress


def test_the_box_has_an_empty_root_with_only_the_service_folder_writable() -> None:
    properties = dict(
        box_properties(
            binary=Path("/opt/litestream"),
            config=Path("/var/lib/pockestrator/replication/shop.yml"),
            binds=[(Path("/var/lib/private/services/shop"), "/service")],
            endpoint=TARGET.endpoint,
            hardening_disabled=frozenset({"ProtectKernelLogs"}),
            bound_to="pocketbase-shop.service",
        )
    )
    assert properties["TemporaryFileSystem"].value == [("/", "")]
    assert [tuple(b)[:2] for b in properties["BindPaths"].value] == [
        ("/var/lib/private/services/shop", "/service")
    ]
    read_only = {tuple(b)[1] for b in properties["BindReadOnlyPaths"].value}
    assert {BINARY_MOUNT, CONFIG_MOUNT} <= read_only
    assert properties["CapabilityBoundingSet"].value == 0b1011
    assert properties["BindsTo"].value == ["pocketbase-shop.service"]
    assert "ProtectKernelLogs" not in properties and properties["NoNewPrivileges"].value


def test_a_point_in_time_is_asked_for_as_a_utc_second() -> None:
    east = timezone(timedelta(hours=2))
    assert restore_stamp(datetime(2026, 12, 2, 6, 10, 14, 999, tzinfo=east)) == (
        "2026-12-02T04:10:14Z"
    )
    assert restore_stamp(datetime(2026, 12, 2, 4, 10, 14, tzinfo=UTC)) == "2026-12-02T04:10:14Z"
    with pytest.raises(SnapshotError, match="time zone"):
        restore_stamp(datetime(2026, 12, 2, 4, 10, 14))
