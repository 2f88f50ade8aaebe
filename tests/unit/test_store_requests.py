"""The store's receipts and hand-offs on both backends: operations asked of a service, the
seed a new service starts from, a spec file's issues, the superuser password handed to the
first boot, and what the spec-directory sync and the alert pass read back. Each is SQL the
agent runs on a fleet's PostgreSQL as on one host's SQLite file."""

from __future__ import annotations

from pockestrator.specs.errors import ErrorCode, FieldIssue
from pockestrator.specs.model import ServiceSpec, parse_spec
from pockestrator.specs.store import Store, file_owner
from pockestrator.specs.store.seeds import SeedSource
from tests.testbed.store_backends import StoreBackend


def spec(name: str, port: int) -> ServiceSpec:
    return parse_spec(
        {"project_name": name, "port": port, "pocketbase_version": "0.29.0"}, "example.test"
    )


def test_operations_wait_oldest_first_and_are_finished_once(store_backend: StoreBackend) -> None:
    store = Store(store_backend.open())
    first = store.request_operation("blog", "snapshot", None, "alice")
    second = store.request_operation("blog", "restore", "snap-1", "bob")
    store.request_operation("shop", "verify", None, "alice")
    assert first.pending and (first.kind, first.requested_by) == ("snapshot", "alice")
    assert [o.id for o in store.pending_operations("blog")] == [first.id, second.id]
    done = store.finish_operation(first.id, "done", {"snapshot": "snap-2", "bytes": 10})
    assert done is not None and (done.outcome, done.result) == (
        "done",
        {"bytes": 10, "snapshot": "snap-2"},
    )
    again = store.finish_operation(first.id, "failed", {"error": "late"})
    assert again is not None and again.outcome == "done", "a finished operation stays finished"
    assert [o.id for o in store.pending_operations("blog")] == [second.id]
    assert [o.id for o in store.list_operations("blog", limit=1)] == [second.id]
    assert store.get_operation(second.id + 100) is None


def test_a_live_seed_waits_for_its_snapshot_and_records_its_end_once(
    store_backend: StoreBackend,
) -> None:
    store = Store(store_backend.open())
    snapshot = store.request_operation("source", "snapshot", None, "alice")
    source = SeedSource(kind="live", service="source", operation=snapshot.id)
    store.create_service(spec("copy", 9001), seed=source, by="alice")
    store.create_service(spec("plain", 9002))
    assert store.seeds_waiting_for(snapshot.id) == ["copy"]
    assert store.seeds_waiting_for(snapshot.id + 1) == []
    assert store.get_seed("plain") is None
    store.finish_seed("copy", "failed", {"error": "the snapshot failed"})
    store.finish_seed("copy", "done", {})
    seed = store.get_seed("copy")
    assert seed is not None and seed.source == source and seed.requested_by == "alice"
    assert (seed.outcome, seed.result) == ("failed", {"error": "the snapshot failed"})
    assert store.seeds_waiting_for(snapshot.id) == []


def test_a_spec_file_s_issues_are_replaced_and_cleared(store_backend: StoreBackend) -> None:
    store = Store(store_backend.open())
    issue = FieldIssue("port", "port 80 is reserved", ErrorCode.INVALID_VALUE, "a.yaml", 3)
    store.set_file_issues("/specs/a.yaml", [issue])
    store.set_file_issues("/specs/b.yaml", [issue])
    later = FieldIssue("domain", "taken", ErrorCode.DOMAIN_IN_USE)
    store.set_file_issues("/specs/a.yaml", [later])
    assert store.file_issues() == {"/specs/a.yaml": [later], "/specs/b.yaml": [issue]}
    store.set_file_issues("/specs/b.yaml", [])
    assert list(store.file_issues()) == ["/specs/a.yaml"]


def test_a_superuser_password_is_replaced_and_taken_once(store_backend: StoreBackend) -> None:
    store = Store(store_backend.open())
    store.put_superuser_password("blog", "first")
    store.put_superuser_password("blog", "second")
    assert store.peek_superuser_password("blog") == "second"
    assert store.take_superuser_password("blog") == "second"
    assert store.take_superuser_password("blog") is None
    assert store.peek_superuser_password("blog") is None


def test_the_files_owning_services_and_their_generations_are_read_back(
    store_backend: StoreBackend,
) -> None:
    store = Store(store_backend.open())
    owner = file_owner("/specs/site.yaml")
    assert store.sync_file("/specs/site.yaml", [spec("one", 9001), spec("two", 9002)]) == {}
    store.create_service(spec("api-owned", 9003))
    assert store.source_files() == {"/specs/site.yaml"}
    assert store.owned_generations(owner) == {"one": 1, "two": 1}
    assert store.service_names() == ["api-owned", "one", "two"]


def test_alert_events_are_read_back_oldest_first_among_all_events(
    store_backend: StoreBackend,
) -> None:
    store = Store(store_backend.open())
    fired = store.add_event("shop", "alert_firing", "down", {"rule": "service_down"})
    store.add_event("shop", "reconciled", "started")
    resolved = store.add_event("shop", "alert_resolved", "up", {"rule": "service_down"})
    assert [(e.id, e.details) for e in store.alert_events()] == [
        (fired.id, {"rule": "service_down"}),
        (resolved.id, {"rule": "service_down"}),
    ]
    assert store.count_all_events() == 3
