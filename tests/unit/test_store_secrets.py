"""Secret values given through the API: in a root-only file beside the database, never in a row.

The store turns each ``value`` into a ``stored`` tag before the row is written; the value
sits in ``secrets/<service>/<path>.<tag>`` (0600 in 0700 folders). A new value is a new
tag (the spec changes, so it is applied again), a write that fails leaves no file, files
no spec names any more go, and a deleted service's secrets go with it.
"""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pytest

from pockestrator.specs.model import ServiceSpec, parse_spec
from pockestrator.specs.store import Conflict, SecretMissing, Store
from tests.testbed.store_backends import StoreBackend

PASSWORD = "smtp-password-that-must-not-be-in-a-row"


def spec(name: str = "shop", port: int = 9001, password: Any = None, **extra: Any) -> ServiceSpec:
    smtp: dict[str, Any] = {"host": "smtp.example.com"}
    if password is not None:
        smtp["password"] = password
    return parse_spec(
        {
            "project_name": name,
            "port": port,
            "pocketbase_version": "0.40.6",
            "settings": {"smtp": smtp},
            **extra,
        },
        "example.test",
    )


@pytest.fixture
def store(store_backend: StoreBackend) -> Store:
    return Store(store_backend.open())


def secrets_folder(store: Store, name: str = "shop") -> Path:
    return store.path.parent / "secrets" / name


def stored_tag(store: Store, name: str = "shop") -> str:
    record = store.get_service(name)
    assert record is not None and record.spec.settings.smtp is not None
    secret = record.spec.settings.smtp.password
    assert secret is not None and secret.value is None and secret.stored is not None
    return secret.stored


def test_a_value_is_kept_in_a_root_only_file_and_the_row_holds_a_tag(
    store: Store, store_backend: StoreBackend
) -> None:
    store.create_service(spec(password={"value": PASSWORD}))
    tag = stored_tag(store)
    assert PASSWORD not in store_backend.every_row()
    if store_backend.name == "sqlite":  # nor in any page of the file
        assert PASSWORD.encode() not in store.path.read_bytes()
    kept = secrets_folder(store) / f"smtp.password.{tag}"
    assert kept.read_text() == PASSWORD
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert stat.S_IMODE(kept.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(kept.parent.parent.stat().st_mode) == 0o700
    assert store.read_secret("shop", "smtp.password", tag) == PASSWORD


def test_a_new_value_is_a_new_tag_and_the_old_file_goes(store: Store) -> None:
    store.create_service(spec(password={"value": PASSWORD}))
    first = stored_tag(store)
    record = store.replace_spec("shop", spec(password={"value": "another"}), owner="api")
    second = stored_tag(store)
    assert second != first and record.generation == 2
    assert [p.name for p in secrets_folder(store).iterdir()] == [f"smtp.password.{second}"]


def test_the_same_spec_again_keeps_its_tag_and_its_generation(store: Store) -> None:
    store.create_service(spec(password={"value": PASSWORD}))
    tag = stored_tag(store)
    record = store.replace_spec("shop", spec(password={"stored": tag}), owner="api")
    assert record.generation == 1 and stored_tag(store) == tag
    assert store.read_secret("shop", "smtp.password", tag) == PASSWORD


def test_a_write_that_fails_leaves_no_file_behind(store: Store) -> None:
    store.create_service(spec("first", 9001))
    with pytest.raises(Conflict):
        store.create_service(spec("shop", 9001, password={"value": PASSWORD}))
    folder = secrets_folder(store)
    assert not folder.exists() or list(folder.iterdir()) == []


def test_a_password_taken_out_of_the_spec_takes_its_file_with_it(store: Store) -> None:
    store.create_service(spec(password={"value": PASSWORD}))
    store.replace_spec("shop", spec(), owner="api")
    assert list(secrets_folder(store).iterdir()) == []


def test_a_deleted_services_secrets_go_once_the_host_is_clean(store: Store) -> None:
    store.create_service(spec(password={"value": PASSWORD}))
    store.delete_service("shop")
    assert secrets_folder(store).exists()  # the reconciler has not removed it yet
    store.finish_deletion("shop")
    assert not secrets_folder(store).exists()


def test_a_stored_value_removed_by_hand_is_reported_without_a_crash(store: Store) -> None:
    store.create_service(spec(password={"value": PASSWORD}))
    tag = stored_tag(store)
    for path in secrets_folder(store).iterdir():
        path.unlink()
    with pytest.raises(SecretMissing, match=r"settings\.smtp\.password"):
        store.read_secret("shop", "smtp.password", tag)


def test_a_spec_file_can_never_bring_a_value_into_a_row(
    store: Store, store_backend: StoreBackend
) -> None:
    with pytest.raises(ValueError, match="must be kept"):
        store.sync_file("/specs/shop.yaml", [spec(password={"value": PASSWORD})])
    assert PASSWORD not in store_backend.every_row()
