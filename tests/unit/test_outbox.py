"""The outbox: written with the event or not at all, claimed once, acknowledged for good.

The claim logic is what makes delivery at-least-once and never-after-acknowledgement:
these tests pin each transition of ``specs.store.outbox`` on both backends (SQLite and a
real PostgreSQL server).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from pockestrator.clock import FakeClock
from pockestrator.specs.store import Claimed, Event, Store
from pockestrator.specs.store import events as events_module
from tests.testbed.store_backends import StoreBackend


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(store_backend: StoreBackend, clock: FakeClock) -> Iterator[Store]:
    store = Store(store_backend.open(), clock=clock)
    yield store
    store.close()


def _finish(
    store: Store,
    claimed: Claimed,
    outcome: str,
    *,
    status_code: int = 200,
    retry_at: datetime | None = None,
) -> bool:
    return store.finish(
        claimed,
        outcome,
        started=datetime.now(UTC),
        duration_ms=1.0,
        status_code=status_code,
        error=None,
        retry_at=retry_at,
    )


def test_an_event_gets_a_row_for_each_webhook_whose_filter_it_passes(store: Store) -> None:
    every = store.create_webhook("http://127.0.0.1:9/all", created_by="t")
    blog = store.create_webhook("http://127.0.0.1:9/blog", services=["blog"], created_by="t")
    crashes = store.create_webhook(
        "http://127.0.0.1:9/crash", kinds=["process_restarted"], created_by="t"
    )
    event = store.add_event("blog", "reconciled", "started")
    assert store.outbox_state(every.id, event.id) == ("pending", 0)
    assert store.outbox_state(blog.id, event.id) == ("pending", 0)
    assert store.outbox_state(crashes.id, event.id) is None
    other = store.add_event("shop", "process_restarted", "exited")
    assert store.outbox_state(blog.id, other.id) is None
    assert store.outbox_state(crashes.id, other.id) == ("pending", 0)


def test_an_event_whose_outbox_write_fails_is_not_recorded_either(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.create_webhook("http://127.0.0.1:9/", created_by="t")

    def broken(*_args: object) -> int:
        raise RuntimeError("the outbox write failed")

    monkeypatch.setattr(events_module, "fan_out", broken)
    with pytest.raises(RuntimeError):
        store.add_event("blog", "reconciled", "started")
    assert store.count_events("blog") == 0


def test_listeners_hear_of_an_event_after_its_commit_with_the_rows_it_queued(
    store: Store,
) -> None:
    heard: list[tuple[int, int, int]] = []

    def listener(event: Event, queued: int) -> None:
        heard.append((event.id, queued, store.count_events("blog")))

    stop = store.listen_events(listener)
    first = store.add_event("blog", "reconciled", "no webhook yet")
    store.create_webhook("http://127.0.0.1:9/", created_by="t")
    second = store.add_event("blog", "reconciled", "one webhook")
    stop()
    store.add_event("blog", "reconciled", "not heard")
    assert heard == [(first.id, 0, 1), (second.id, 1, 2)]


def test_a_due_row_is_claimed_once_and_a_claimed_row_not_again(store: Store) -> None:
    hook = store.create_webhook("http://127.0.0.1:9/", created_by="t")
    event = store.add_event("blog", "reconciled", "x", {"a": 1})
    claimed = store.claim_due(10)
    assert [(c.webhook.id, c.event.id, c.attempt) for c in claimed] == [(hook.id, event.id, 1)]
    assert claimed[0].webhook.secret == hook.secret and claimed[0].event.details == {"a": 1}
    assert store.claim_due(10) == []
    assert store.outbox_state(hook.id, event.id) == ("sending", 1)


def test_claims_take_at_most_the_free_slots_oldest_first(store: Store, clock: FakeClock) -> None:
    store.create_webhook("http://127.0.0.1:9/", created_by="t")
    ids = []
    for index in range(5):
        ids.append(store.add_event("blog", "reconciled", str(index)).id)
        clock.advance(1)
    assert [c.event.id for c in store.claim_due(2)] == ids[:2]
    assert [c.event.id for c in store.claim_due(10)] == ids[2:]


def test_a_retry_waits_until_its_time(store: Store, clock: FakeClock) -> None:
    hook = store.create_webhook("http://127.0.0.1:9/", created_by="t")
    event = store.add_event("blog", "reconciled", "x")
    (claimed,) = store.claim_due(1)
    retry_at = clock.now() + timedelta(seconds=30)
    assert _finish(store, claimed, "retry", status_code=500, retry_at=retry_at)
    assert store.outbox_state(hook.id, event.id) == ("pending", 1)
    assert store.next_due_at() == retry_at
    clock.advance(29)
    assert store.claim_due(1) == []
    clock.advance(1)
    (again,) = store.claim_due(1)
    assert again.attempt == 2


def test_an_acknowledged_row_is_never_claimed_again_not_even_after_a_restart(
    store: Store, clock: FakeClock
) -> None:
    hook = store.create_webhook("http://127.0.0.1:9/", created_by="t")
    event = store.add_event("blog", "reconciled", "x")
    (claimed,) = store.claim_due(1)
    assert _finish(store, claimed, "delivered")
    assert store.release_claims() == 0
    clock.advance(3600)
    assert store.claim_due(10) == []
    assert store.next_due_at() is None
    assert store.outbox_state(hook.id, event.id) == ("delivered", 1)
    assert not _finish(store, claimed, "delivered"), "a row is marked only from sending"
    assert [d.status_code for d in store.list_deliveries(hook.id)] == [200]


def test_a_claim_a_killed_agent_left_is_sent_again_by_the_next(
    store_backend: StoreBackend, clock: FakeClock
) -> None:
    first = Store(store_backend.open(), clock=clock)
    hook = first.create_webhook("http://127.0.0.1:9/", created_by="t")
    event = first.add_event("blog", "reconciled", "x")
    assert len(first.claim_due(1)) == 1
    first.close()  # killed between the send and the mark: the row stays "sending"
    second = Store(store_backend.open(), clock=clock)
    try:
        assert second.outbox_state(hook.id, event.id) == ("sending", 1)
        assert second.release_claims() == 1
        (again,) = second.claim_due(1)
        assert (again.event.id, again.attempt) == (event.id, 2)
    finally:
        second.close()


def test_the_last_failure_is_final(store: Store) -> None:
    hook = store.create_webhook("http://127.0.0.1:9/", created_by="t")
    event = store.add_event("blog", "reconciled", "x")
    (claimed,) = store.claim_due(1)
    assert _finish(store, claimed, "failed", status_code=404)
    assert store.outbox_state(hook.id, event.id) == ("failed", 1)
    assert store.release_claims() == 0 and store.claim_due(1) == []
    assert store.delivery_counts(hook.id)["failed"] == 1


def test_a_retry_needs_a_time_and_only_a_retry_has_one(store: Store) -> None:
    store.create_webhook("http://127.0.0.1:9/", created_by="t")
    store.add_event("blog", "reconciled", "x")
    (claimed,) = store.claim_due(1)
    with pytest.raises(ValueError, match="time"):
        _finish(store, claimed, "retry", status_code=500)
    with pytest.raises(ValueError, match="time"):
        _finish(store, claimed, "delivered", retry_at=datetime.now(UTC))
    with pytest.raises(ValueError, match="outcome"):
        _finish(store, claimed, "lost")


def test_deleting_a_webhook_drops_its_rows_and_an_answer_in_flight_finds_none(
    store: Store,
) -> None:
    hook = store.create_webhook("http://127.0.0.1:9/", created_by="t")
    event = store.add_event("blog", "reconciled", "x")
    (claimed,) = store.claim_due(1)
    assert store.delete_webhook(hook.id)
    assert not store.delete_webhook(hook.id)
    assert store.outbox_state(hook.id, event.id) is None
    assert not _finish(store, claimed, "delivered")
    assert store.count_events("blog") == 1, "the event itself stays"


def test_a_test_event_goes_to_its_webhook_only(store: Store) -> None:
    asked = store.create_webhook("http://127.0.0.1:9/a", kinds=["crash_loop"], created_by="t")
    other = store.create_webhook("http://127.0.0.1:9/b", created_by="t")
    event = store.add_test_event(asked.id)
    assert store.outbox_state(asked.id, event.id) == ("pending", 0)
    assert store.outbox_state(other.id, event.id) is None
    assert store.list_all_events(limit=5)[0].kind == "webhook_test"


def test_events_after_an_id_come_oldest_first(store: Store) -> None:
    ids = [store.add_event(name, "reconciled", "x").id for name in ("a", "b", "a")]
    assert [e.id for e in store.events_after(ids[0])] == ids[1:]
    assert [e.id for e in store.events_after(0, service="a")] == [ids[0], ids[2]]
    assert store.last_event_id() == ids[-1]


def test_pruning_forgets_finished_rows_and_old_attempts_but_never_a_pending_one(
    store: Store, clock: FakeClock
) -> None:
    hook = store.create_webhook("http://127.0.0.1:9/", created_by="t")
    done = store.add_event("blog", "reconciled", "delivered long ago")
    (claimed,) = store.claim_due(1)
    assert _finish(store, claimed, "delivered")
    waiting = store.add_event("blog", "reconciled", "still pending")
    clock.advance(8 * 86400)
    assert store.prune_deliveries(clock.now() - timedelta(days=7)) == 1
    assert store.outbox_state(hook.id, done.id) is None
    assert store.list_deliveries(hook.id) == []
    assert store.outbox_state(hook.id, waiting.id) == ("pending", 0)


def test_a_claim_left_unfinished_is_due_again_once_it_lapses_and_its_late_answer_is_refused(
    store: Store, clock: FakeClock
) -> None:
    hook = store.create_webhook("http://127.0.0.1:9/", created_by="t")
    event = store.add_event("blog", "reconciled", "x")
    lapse = timedelta(seconds=40)
    (first,) = store.claim_due(1, clock.now() - lapse)
    assert store.next_due_at(lapse) == clock.now() + lapse
    assert store.next_due_at() is None, "without a lapse a claimed row is not due"
    clock.advance(39)
    assert store.claim_due(1, clock.now() - lapse) == [], "its sender may still be sending"
    clock.advance(2)
    (again,) = store.claim_due(1, clock.now() - lapse)
    assert (again.event.id, again.attempt) == (event.id, 2)
    assert not _finish(store, first, "delivered"), "the lapsed sender's answer is not recorded"
    assert store.outbox_state(hook.id, event.id) == ("sending", 2)
    assert _finish(store, again, "delivered")
    assert store.outbox_state(hook.id, event.id) == ("delivered", 2)
    assert [d.attempt for d in store.list_deliveries(hook.id)] == [2]


def test_two_agents_claiming_one_outbox_at_once_never_take_one_row_twice(
    store_backend: StoreBackend, clock: FakeClock
) -> None:
    writer = Store(store_backend.open(), clock=clock)
    for index in range(3):
        writer.create_webhook(f"http://127.0.0.1:9/{index}", created_by="t")
    for index in range(40):
        writer.add_event("blog", "reconciled", str(index))
    # Two agents, each with its own connections, each claiming from two threads at once.
    agents = [Store(store_backend.open(pool_size=2), clock=clock) for _ in range(2)]
    start = threading.Barrier(4)
    taken: list[list[int]] = [[] for _ in range(4)]

    def claim(slot: int) -> None:
        start.wait()
        while batch := agents[slot % 2].claim_due(3):
            taken[slot].extend(claimed.outbox_id for claimed in batch)

    threads = [threading.Thread(target=claim, args=(slot,)) for slot in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    every = [outbox_id for slot in taken for outbox_id in slot]
    assert len(every) == 120 and len(set(every)) == 120, "each row claimed once, by one"
