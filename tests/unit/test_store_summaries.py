"""The store's column reads for the metrics scrape, the alert pass, the webhook views and a
node's record, on both backends: some read JSON fields of a spec in SQL, which each
backend spells its own way (``StoreDatabase.json_text``), so both are held to the same
answers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pockestrator.clock import FakeClock
from pockestrator.specs.model import ServiceSpec, parse_spec
from pockestrator.specs.store import NodeInfo, ServiceSummary, Store
from tests.testbed.store_backends import StoreBackend


def spec(name: str, port: int, **extra: object) -> ServiceSpec:
    return parse_spec(
        {"project_name": name, "port": port, "pocketbase_version": "0.29.0", **extra},
        "example.test",
    )


def test_alert_facts_tell_a_service_s_own_backup_policy_and_schedule_and_its_certificate(
    store_backend: StoreBackend,
) -> None:
    store = Store(store_backend.open())
    store.create_service(spec("plain", 9001))
    store.create_service(spec("nightly", 9002, backups={"schedule": "0 3 * * *"}))
    store.create_service(spec("manual", 9003, backups={"schedule": None}))
    ends = datetime(2027, 3, 1, 12, 0, tzinfo=UTC)
    store.update_status("nightly", certificate_not_after=ends)
    assert store.alert_facts() == {
        "plain": (False, None, None),
        "nightly": (True, "0 3 * * *", ends),
        "manual": (True, None, None),
    }


def test_summaries_give_each_service_its_enforced_run_state_in_name_order(
    store_backend: StoreBackend,
) -> None:
    store = Store(store_backend.open())
    store.create_service(spec("shop", 9001, domain="shop.example.org"))
    store.create_service(spec("blog", 9002, desired_state="stopped"))
    store.create_service(spec("wiki", 9003))
    store.set_desired_state("wiki", "stopped")
    assert store.service_summaries() == [
        ServiceSummary("blog", "blog.example.test", "stopped"),
        ServiceSummary("shop", "shop.example.org", "running"),
        ServiceSummary("wiki", "wiki.example.test", "stopped"),
    ]
    assert store.running_ports() == {"shop": 9001}


def test_states_are_each_service_s_state_and_last_verdict(store_backend: StoreBackend) -> None:
    store = Store(store_backend.open())
    store.create_service(spec("shop", 9001))
    store.create_service(spec("blog", 9002))
    store.update_statuses({"shop": {"state": "active", "health_ok": True}})
    store.update_status("blog", state="error", health_ok=False)
    assert store.states() == {"shop": ("active", True), "blog": ("error", False)}
    assert set(store.all_statuses()) == {"shop", "blog"}


def test_webhooks_are_listed_oldest_first_and_their_deliveries_page_newest_first(
    store_backend: StoreBackend,
) -> None:
    clock = FakeClock()
    store = Store(store_backend.open(), clock=clock)
    first = store.create_webhook("http://127.0.0.1:9/a", kinds=["crash_loop"], created_by="t")
    clock.advance(1)
    second = store.create_webhook("http://127.0.0.1:9/b", services=["blog"], created_by="u")
    assert [w.id for w in store.list_webhooks()] == [first.id, second.id]
    assert store.get_webhook(second.id) == second and store.get_webhook("wh_none") is None
    assert (second.services, second.kinds, second.created_by) == (("blog",), (), "u")
    for index in range(3):
        store.add_event("blog", "reconciled", str(index))
        (claimed,) = store.claim_due(1)
        clock.advance(1)
        store.finish(
            claimed,
            "delivered",
            started=clock.now(),
            duration_ms=2.5,
            status_code=200 + index,
            error=None,
        )
    page = store.list_deliveries(second.id, limit=2)
    assert [d.status_code for d in page] == [202, 201]
    older = store.list_deliveries(second.id, limit=2, before=page[-1].id)
    assert [(d.status_code, d.attempt, d.duration_ms) for d in older] == [(200, 1, 2.5)]
    assert store.last_delivery_at(second.id) == clock.now()
    assert store.last_delivery_at(first.id) is None
    assert store.delivery_counts(second.id) == {
        "pending": 0,
        "sending": 0,
        "delivered": 3,
        "failed": 0,
    }


def test_one_node_is_read_by_name_with_its_state(store_backend: StoreBackend) -> None:
    store = Store(store_backend.open(), node="alpha")
    info = NodeInfo("alpha", "http://10.0.0.1:8091", "alpha.example.test", 8 * 1024**3, 4)
    store.register_node(info, timedelta(hours=1))
    found = store.get_node("alpha")
    assert found is not None and (found.state, found.cpus) == ("ready", 4)
    assert store.get_node("beta") is None
